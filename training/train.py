"""Train the single-view SDF predictor.

Usage::

    python -m training.train --config configs/smoke.json [--resume] [--run-dir DIR] [--data-dir DIR]

stdout carries only the JSON-lines progress protocol (see ``training.progress``); logs go to stderr.
Exit status: 0 on success (also after a clean stop on SIGTERM/SIGINT, with a checkpoint written),
1 on a training error (an ``error`` event is emitted), 2 on a bad command line or config.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from training import checkpoint
from training.config import TrainConfig, load_config
from training.data import ResumableSampler, SDFViews, mean_sdf_grid
from training.dataset_settings import ConfigError
from training.devices import peak_memory_mb, select_device
from training.model import ModelArgs, SDFNet
from training.progress import Emitter
from training.util import atomic_write_json, log


def sdf_loss(pred: torch.Tensor, target: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """L2 loss on the SDF grid; optional truncation and extra weight near the surface (both off by default).

    Args:
        pred: ``(B, R, R, R)`` predicted SDF.
        target: ``(B, R, R, R)`` ground truth.
        cfg: ``truncation``, ``near_surface_weight`` and ``near_surface_band``.
    """
    pred, target = pred.float(), target.float()
    if cfg.truncation > 0:
        pred = pred.clamp(-cfg.truncation, cfg.truncation)
        target = target.clamp(-cfg.truncation, cfg.truncation)
    err = (pred - target) ** 2
    if cfg.near_surface_weight > 0:
        weight = 1.0 + cfg.near_surface_weight * (target.abs() < cfg.near_surface_band).float()
        return (err * weight).sum() / weight.sum()
    return err.mean()


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimisation step ``step`` (0-based)."""
    if cfg.warmup_iters and step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / cfg.warmup_iters
    if cfg.lr_schedule == "cosine":
        t = (step - cfg.warmup_iters) / max(1, cfg.iters - cfg.warmup_iters)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t))))
    return cfg.lr


@torch.no_grad()
def validate(
    model: SDFNet, loader: DataLoader, device: torch.device, batches: int, band: float
) -> dict[str, float]:
    """Mean absolute SDF error over (up to ``batches`` batches of) a split, overall and near the surface."""
    model.eval()
    abs_sum = near_sum = 0.0
    count = near_count = 0
    for i, (image, sdf) in enumerate(loader):
        if batches and i >= batches:
            break
        pred = model(image.to(device)).float()
        err = (pred - sdf.to(device)).abs()
        near = sdf.to(device).abs() < band
        abs_sum += float(err.sum())
        count += err.numel()
        near_sum += float(err[near].sum())
        near_count += int(near.sum())
    model.train()
    return {"val_sdf_mae": abs_sum / max(1, count), "val_sdf_mae_near_surface": near_sum / max(1, near_count)}


class _StopFlag:
    """First SIGTERM/SIGINT: finish the step, checkpoint, exit 0. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested:
            raise SystemExit(128 + signum)
        self.requested = True
        log(f"signal {signum}: stopping after this step (again to stop now)")


def train(cfg: TrainConfig, resume: bool, emitter: Emitter) -> dict[str, Any]:
    """Run (or resume) training as configured; returns the final ``end`` event.

    Raises:
        ConfigError: unusable data_dir/run_dir/device, or a run folder that would be overwritten.
    """
    run_dir, data_dir = Path(cfg.run_dir), Path(cfg.data_dir)
    if not cfg.run_dir or not cfg.data_dir:
        raise ConfigError("config needs data_dir and run_dir (or --data-dir/--run-dir)")
    if not (data_dir / "train" / "images.npy").exists():
        raise ConfigError(
            f"{data_dir} is not a built dataset (no train/images.npy); run training.build_dataset"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / checkpoint.CKPT_NAME
    ckpt = None
    if ckpt_path.exists():
        if not resume:
            raise ConfigError(f"{run_dir} already holds a checkpoint; pass --resume or use another run_dir")
        ckpt = checkpoint.load(ckpt_path)
        saved = TrainConfig(**ckpt["config"])
        # The checkpoint's config wins (same model, data order, loss); only the step budget may grow.
        saved.iters = cfg.iters
        cfg = saved
    elif resume:
        log(f"--resume: no checkpoint in {run_dir}, starting a new run")
    try:
        device = select_device(cfg.device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    emitter.run_id = cfg.run_id or run_dir.name
    emitter.attach(run_dir / "events.jsonl")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)

    train_set = SDFViews(data_dir, "train", augment=cfg.augment)
    val_set = SDFViews(data_dir, "val") if (data_dir / "val" / "images.npy").exists() else None
    grid = int(train_set.sdf.shape[-1])
    margs = ModelArgs(**{**cfg.model, "grid": cfg.model.get("grid") or grid})
    if margs.grid != grid:
        raise ConfigError(f"model grid {margs.grid} does not match the dataset's grid {grid}")
    model = SDFNet(margs).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = device.type == "cuda" and cfg.amp in ("auto", "on")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step = 0
    if ckpt is None:
        model.set_prior(mean_sdf_grid(data_dir, "train").to(device))
    else:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        checkpoint.set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
    atomic_write_json(run_dir / "config.json", cfg.to_dict())

    pin = cfg.pin_memory and device.type == "cuda"
    sampler = ResumableSampler(len(train_set), cfg.seed, start=step * cfg.batch_size)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=pin, drop_last=True, persistent_workers=False)
    val_loader = (DataLoader(val_set, batch_size=cfg.batch_size, num_workers=cfg.num_workers, pin_memory=pin)
                  if val_set is not None and len(val_set) else None)
    writer = None
    if cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=step or None)

    mem_peak, mem_kind = peak_memory_mb(device)
    emitter.emit("start", iter=step, batch_size=cfg.batch_size, lr=lr_at(step, cfg), iters=cfg.iters,
                 device=str(device), amp=use_amp, resumed=ckpt is not None, train_images=len(train_set),
                 val_images=len(val_set) if val_set is not None else 0, grid=grid,
                 params=sum(p.numel() for p in model.parameters()))
    stop = _StopFlag()
    model.train()
    window_loss, window_n, window_t0 = 0.0, 0, time.monotonic()
    last_loss = float("nan")
    last_eval: dict[str, float] = {}

    def do_checkpoint() -> None:
        payload = {"model_args": model.construction_args(), "model": model.state_dict(),
                   "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "step": step,
                   "rng": checkpoint.rng_state(),
                   "sampler": {"seed": cfg.seed, "position": step * cfg.batch_size},
                   "config": cfg.to_dict()}
        path = checkpoint.save(run_dir, payload, {"step": step, "loss": last_loss, "run_id": emitter.run_id})
        emitter.emit("checkpoint", iter=step, path=str(path), loss=last_loss)

    def do_eval() -> None:
        nonlocal last_eval
        if val_loader is None:
            return
        last_eval = validate(model, val_loader, device, cfg.eval_batches, cfg.near_surface_band)
        emitter.emit("eval", iter=step, **last_eval)
        if writer is not None:
            for k, v in last_eval.items():
                writer.add_scalar(f"val/{k}", v, step)
        from training.plots import write_plots

        write_plots(run_dir)

    batches = iter(loader)
    while step < cfg.iters and not stop.requested:
        image, sdf = next(batches)  # (B, 3, H, W), (B, R, R, R)
        image, sdf = image.to(device, non_blocking=pin), sdf.to(device, non_blocking=pin)
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            pred = model(image)
        loss = sdf_loss(pred, sdf, cfg)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {float(loss)} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
        last_loss = float(loss.detach())
        window_loss += last_loss
        window_n += 1
        if writer is not None:
            writer.add_scalar("train/loss", last_loss, step)
            writer.add_scalar("train/lr", lr, step)
        if step % cfg.log_every == 0 or step == cfg.iters:
            elapsed = time.monotonic() - window_t0
            mem_peak, mem_kind = peak_memory_mb(device)
            emitter.emit("progress", iter=step, loss=last_loss, loss_avg=window_loss / window_n, lr=lr,
                         batch_size=cfg.batch_size, vram_peak_mb=mem_peak if mem_kind == "cuda" else None,
                         mem_peak_mb=round(mem_peak, 1), mem_kind=mem_kind,
                         samples_per_s=window_n * cfg.batch_size / max(elapsed, 1e-9))
            if writer is not None:
                writer.add_scalar("train/mem_peak_mb", mem_peak, step)
            window_loss, window_n, window_t0 = 0.0, 0, time.monotonic()
        if step % cfg.checkpoint_every == 0 or step == cfg.iters or stop.requested:
            do_checkpoint()
        if cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.iters:
            do_eval()
    if step == cfg.iters:
        do_eval()
    from training.plots import write_plots

    write_plots(run_dir)
    if writer is not None:
        writer.close()
    mem_peak, mem_kind = peak_memory_mb(device)
    return emitter.emit("end", iter=step, loss=last_loss, status="stopped" if stop.requested else "completed",
                        vram_peak_mb=mem_peak if mem_kind == "cuda" else None, mem_peak_mb=round(mem_peak, 1),
                        mem_kind=mem_kind, **last_eval)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description="Train the SDF predictor.")
    p.add_argument("--config", required=True, type=Path, help="run config (JSON)")
    p.add_argument("--resume", action="store_true", help="continue from run_dir/ckpt.pt")
    p.add_argument("--run-dir", dest="run_dir", help="override the config's run_dir")
    p.add_argument("--data-dir", dest="data_dir", help="override the config's data_dir")
    p.add_argument("--iters", type=int, help="override the config's iters")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override the config's device")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; see the module docstring for exit statuses."""
    real_stdout = Emitter.claim_stdout()
    emitter = Emitter(run_id="", stream=real_stdout)
    args = _parser().parse_args(argv)
    try:
        overrides = {k: getattr(args, k) for k in ("run_dir", "data_dir", "iters", "device")}
        cfg = load_config(args.config, overrides)
        emitter.run_id = cfg.run_id or Path(cfg.run_dir).name
        train(cfg, args.resume, emitter)
    except ConfigError as exc:
        emitter.emit("error", message=str(exc), kind="config")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the run boundary: report on the protocol, then fail
        import traceback

        traceback.print_exc(file=sys.stderr)
        emitter.emit("error", message=f"{type(exc).__name__}: {exc}", kind="runtime")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
