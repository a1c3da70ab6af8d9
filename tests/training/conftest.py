"""Fixtures for the training tests: tiny mesh trees written on the fly and one tiny built dataset.

Everything here imports the train extra lazily, so a checkout without it collects these tests and skips them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Tiny on purpose: CI has 2 cores and the whole suite must stay well under 10 minutes.
TINY_DATASET = {
    "source": "procedural", "meshes": 12, "views": 2, "resolution_px": 24, "grid": 16,
    "val_fraction": 0.25, "test_fraction": 0.25, "workers": 1, "seed": 3, "timeout_s": 120.0,
}


def cube_off(header_glued: bool) -> str:
    """A unit cube as OFF text, with ModelNet's malformed header (``OFF8 6 0``) when asked; quad faces."""
    verts = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    head = "OFF8 6 0" if header_glued else "OFF\n8 6 0"
    lines = [head, *(f"{x} {y} {z}" for x, y, z in verts), *(f"4 {a} {b} {c} {d}" for a, b, c, d in quads)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def write_mesh():
    """Factory: write a trimesh mesh to ``path`` in the format its suffix names."""

    def _write(mesh, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        mesh.export(path)
        return path

    return _write


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A procedural dataset built once per session through the real CLI (12 meshes x 2 views, 24 px, 16^3)."""
    pytest.importorskip("torch")
    pytest.importorskip("pyrender")
    out = tmp_path_factory.mktemp("tiny") / "data"
    cfg = out.parent / "build.json"
    cfg.write_text(json.dumps({"dataset": TINY_DATASET}))
    proc = subprocess.run(
        [sys.executable, "-m", "training.build_dataset", "--config", str(cfg), "--out", str(out),
         "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def tiny_train_config(tmp: Path, data_dir: Path, **overrides) -> Path:
    """Write a tiny run config (few steps, small model) and return its path."""
    cfg = {
        "data_dir": str(data_dir), "run_dir": str(tmp / "run"), "iters": 4, "batch_size": 4,
        "checkpoint_every": 2, "eval_every": 2, "eval_batches": 1, "log_every": 1, "num_workers": 0,
        "threads": 1, "tensorboard": False, "model": {"base_channels": 16}, "seed": 5,
    }
    cfg.update(overrides)
    path = tmp / "run.json"
    path.write_text(json.dumps(cfg))
    return path


def run_module(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` from the repository root and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        check=False,
    )
