"""The run configuration: a dataclass loaded from JSON and validated (``configs/*.json``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.dataset_settings import BuildSettings, ConfigError, from_dict
from training.model import ModelArgs
from training.util import read_json_config


@dataclass
class TrainConfig:
    """Everything a training run needs; saved in each checkpoint and in the run folder.

    Attributes:
        run_id: name of the run (default: the run folder's name).
        data_dir: dataset folder built by ``training.build_dataset``.
        run_dir: output folder: checkpoints, events.jsonl, plots, TensorBoard logs.
        iters: optimisation steps in total.
        batch_size: images per step.
        lr: Adam learning rate (the plan: 1e-4).
        lr_schedule: ``constant`` or ``cosine`` (to 10 % of ``lr`` at ``iters``), after ``warmup_iters``.
        warmup_iters: linear warm-up steps.
        weight_decay: Adam weight decay.
        truncation: if > 0, clamp prediction and target to ``[-truncation, truncation]`` in the loss.
        near_surface_weight: extra loss weight on voxels with ``|sdf| < near_surface_band`` (0: off).
        near_surface_band: the band for ``near_surface_weight`` and the near-surface metrics.
        amp: mixed precision: ``auto`` (on for CUDA), ``on`` or ``off``. Never used on CPU.
        device: ``auto``, ``cpu`` or ``cuda``.
        checkpoint_every: steps between checkpoints (the plan: 50).
        eval_every: steps between validation passes (0: only at the end).
        eval_batches: validation batches per pass (0: the whole split).
        log_every: steps between progress events.
        seed: seeds initialisation, data order and augmentation.
        num_workers: DataLoader worker processes.
        pin_memory: pin host memory (only has an effect on CUDA).
        augment: colour augmentation of training images.
        threads: torch CPU threads (0: torch's default).
        tensorboard: write TensorBoard logs under ``run_dir/tb``.
        model: :class:`training.model.ModelArgs` fields; ``grid`` 0 takes the dataset's grid.
        dataset: :class:`training.dataset_settings.BuildSettings` fields, for ``build_dataset --config``
            and ``training.smoke``; the trainer itself only reads ``data_dir``.
    """

    data_dir: str = ""
    run_dir: str = ""
    run_id: str = ""
    iters: int = 1000
    batch_size: int = 32
    lr: float = 1e-4
    lr_schedule: str = "constant"
    warmup_iters: int = 0
    weight_decay: float = 0.0
    truncation: float = 0.0
    near_surface_weight: float = 0.0
    near_surface_band: float = 0.1
    amp: str = "auto"
    device: str = "auto"
    checkpoint_every: int = 50
    eval_every: int = 200
    eval_batches: int = 0
    log_every: int = 10
    seed: int = 0
    num_workers: int = 2
    pin_memory: bool = True
    augment: bool = False
    threads: int = 0
    tensorboard: bool = True
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate; raise :class:`ConfigError` with one readable message."""
        checks = [
            (self.iters >= 1, "iters must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.lr_schedule in ("constant", "cosine"), "lr_schedule must be 'constant' or 'cosine'"),
            (self.warmup_iters >= 0, "warmup_iters must be >= 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.truncation >= 0, "truncation must be >= 0 (0 turns it off)"),
            (self.near_surface_weight >= 0, "near_surface_weight must be >= 0"),
            (self.near_surface_band > 0, "near_surface_band must be > 0"),
            (self.amp in ("auto", "on", "off"), "amp must be 'auto', 'on' or 'off'"),
            (self.device in ("auto", "cpu", "cuda"), "device must be 'auto', 'cpu' or 'cuda'"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.eval_every >= 0, "eval_every must be >= 0"),
            (self.eval_batches >= 0, "eval_batches must be >= 0"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
            (self.threads >= 0, "threads must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        model = from_dict(ModelArgs, self.model, "model") if self.model.get("grid", 0) else None
        if model is None:
            from_dict(ModelArgs, {**self.model, "grid": 32}, "model")  # validate the other keys
        if self.dataset:
            from_dict(BuildSettings, self.dataset, "dataset")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return dataclasses.asdict(self)


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load and validate a run config from JSON, applying ``overrides`` (CLI values) on top.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or invalid value.
    """
    data = read_json_config(path)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(TrainConfig, data, "config")
