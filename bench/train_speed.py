"""Training-step speed and peak memory of the SDF model vs a plain torchvision ResNet50 classifier.

Both take the same batch size, image resolution, device and precision (AMP on CUDA), on synthetic data, so
the ratio isolates the cost of the 3D head. Each measurement runs in its own process so that the CPU's peak
RSS (monotonic within a process) belongs to that model alone.

    python bench/train_speed.py [--config configs/default.json] [--device auto|cpu|cuda] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(
    kind: str,
    batch: int,
    px: int,
    grid: int,
    base_channels: int,
    device_name: str,
    steps: int,
    warmup: int,
    threads: int,
) -> dict:
    """Time ``steps`` optimisation steps after ``warmup`` of model ``kind`` (``sdf`` or ``resnet50``)."""
    import torch
    import torchvision

    sys.path.insert(0, str(REPO))
    from training.devices import peak_memory_mb, select_device
    from training.model import ModelArgs, SDFNet

    if threads:
        torch.set_num_threads(threads)
    device = select_device(device_name)
    amp = device.type == "cuda"
    torch.manual_seed(0)
    if kind == "sdf":
        model = SDFNet(ModelArgs(grid=grid, base_channels=base_channels)).to(device)
        target = torch.randn(batch, grid, grid, grid, device=device) * 0.1

        def loss_fn(out):
            return ((out.float() - target) ** 2).mean()
    else:
        model = torchvision.models.resnet50(weights=None).to(device)
        labels = torch.randint(0, 1000, (batch,), device=device)

        def loss_fn(out):
            return torch.nn.functional.cross_entropy(out.float(), labels)

    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    images = torch.randn(batch, 3, px, px, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            out = model(images)
        loss = loss_fn(out)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    mem, mem_kind = peak_memory_mb(device)
    return {
        "model": kind,
        "device": str(device),
        "amp": amp,
        "batch_size": batch,
        "resolution_px": px,
        "samples_per_s": steps * batch / elapsed,
        "step_s": elapsed / steps,
        "peak_mem_mb": mem,
        "mem_kind": mem_kind,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "threads": torch.get_num_threads(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "default.json")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, help="default: the config's")
    p.add_argument("--resolution-px", type=int, help="default: the config's dataset resolution")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--one", choices=["sdf", "resnet50"], help=argparse.SUPPRESS)  # child-process mode
    args = p.parse_args()
    try:
        cfg = json.loads(args.config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: cannot read config {args.config}: {exc}", file=sys.stderr)
        return 2
    batch = args.batch_size or cfg.get("batch_size", 32)
    px = args.resolution_px or cfg.get("dataset", {}).get("resolution_px", 128)
    grid = cfg.get("model", {}).get("grid") or cfg.get("dataset", {}).get("grid", 32)
    base = cfg.get("model", {}).get("base_channels", 128)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda but no CUDA GPU is available", file=sys.stderr)
            return 2
    if args.one:
        print(
            json.dumps(
                measure(args.one, batch, px, grid, base, args.device, args.steps, args.warmup, args.threads)
            )
        )
        return 0
    results = {}
    for kind in ("sdf", "resnet50"):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            kind,
            "--config",
            str(args.config),
            "--device",
            args.device,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--batch-size",
            str(batch),
            "--resolution-px",
            str(px),
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    s, r = results["sdf"], results["resnet50"]
    print(
        f"device {s['device']}  amp {s['amp']}  batch {batch}  {px}x{px} px  SDF grid {grid}^3  "
        f"threads {s['threads']}"
    )
    for row in (s, r):
        print(
            f"  {row['model']:9s} {row['params_m']:6.1f} M params  {row['samples_per_s']:8.2f} samples/s  "
            f"{row['step_s']:7.3f} s/step  peak {row['peak_mem_mb']:8.1f} MB ({row['mem_kind']})"
        )
    print(
        f"  ratio SDF/ResNet50: speed {s['samples_per_s'] / r['samples_per_s']:.3f}x  "
        f"memory {s['peak_mem_mb'] / r['peak_mem_mb']:.3f}x"
    )
    print(
        json.dumps(
            {
                "sdf": s,
                "resnet50": r,
                "speed_ratio": s["samples_per_s"] / r["samples_per_s"],
                "memory_ratio": s["peak_mem_mb"] / r["peak_mem_mb"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
