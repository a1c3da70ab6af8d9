"""Checkpoints: everything needed to resume exactly, written atomically, with a JSON sidecar.

A checkpoint holds the model's construction arguments and weights, the optimizer, the AMP scaler, the step,
the sampler position, every RNG state and the run config. ``ckpt.pt`` is replaced atomically (temporary file,
fsync, ``os.replace``), so a kill at any moment leaves the previous checkpoint intact; ``ckpt.json`` beside it
is a human- and supervisor-readable summary.
"""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.model import ModelArgs, SDFNet
from training.util import atomic_write_bytes, atomic_write_json

CKPT_NAME = "ckpt.pt"


def rng_state() -> dict[str, Any]:
    """Every RNG the run touches."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, payload: dict[str, Any], summary: dict[str, Any]) -> Path:
    """Write ``payload`` to ``run_dir/ckpt.pt`` and ``summary`` to ``ckpt.json``, both atomically."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    path = run_dir / CKPT_NAME
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(run_dir / "ckpt.json", {**summary, "saved_at": datetime.now(UTC).isoformat()})
    return path


def load(path: Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU (RNG states and numpy objects need the full unpickler)."""
    return torch.load(path, map_location="cpu", weights_only=False)  # our own files only


def load_model(path: Path, device: torch.device) -> SDFNet:
    """Rebuild the model from a checkpoint's construction arguments and weights, in eval mode."""
    ckpt = load(path)
    args = dict(ckpt["model_args"])
    args["pretrained_path"] = ""  # the weights come from the checkpoint
    model = SDFNet(ModelArgs(**args))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
