"""The whole pipeline on a small procedural set: build, train, evaluate.

Usage::

    python -m training.smoke --out DIR [--config configs/smoke.json]

``DIR/data`` holds the dataset, ``DIR/run`` the run; ``DIR/metrics.json`` is the evaluation (also in
``DIR/run``) and ``DIR/smoke.json`` records the wall time of each stage. stdout carries the trainer's JSON
lines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from training.config import load_config
from training.dataset_settings import BuildSettings, ConfigError, from_dict
from training.util import atomic_write_json, die, log

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "smoke.json"


def run_smoke(out: Path, config: Path) -> dict[str, float]:
    """Build, train and evaluate into ``out``; returns the metrics.

    Raises:
        ConfigError: bad config. RuntimeError: the training subprocess failed.
    """
    from training.build_dataset import build
    from training.evaluate import evaluate

    cfg = load_config(config)
    if not cfg.dataset:
        raise ConfigError(f"{config} has no 'dataset' section to build from")
    settings = from_dict(BuildSettings, dict(cfg.dataset), "dataset")
    data_dir, run_dir = out / "data", out / "run"
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t0 = time.monotonic()
    manifest = build(settings, data_dir, progress=False)
    times["build_s"] = time.monotonic() - t0

    t1 = time.monotonic()
    resume = ["--resume"] if (run_dir / "ckpt.pt").exists() else []
    cmd = [sys.executable, "-m", "training.train", "--config", str(config), "--data-dir", str(data_dir),
           "--run-dir", str(run_dir), *resume]
    # The trainer's stdout is our stdout: the JSON-lines protocol passes straight through.
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"training exited with status {proc.returncode}")
    times["train_s"] = time.monotonic() - t1

    t2 = time.monotonic()
    metrics = evaluate(run_dir, data_dir)
    times["evaluate_s"] = time.monotonic() - t2
    times["total_s"] = time.monotonic() - t0
    shutil.copyfile(run_dir / "metrics.json", out / "metrics.json")
    atomic_write_json(out / "smoke.json", {**{k: round(v, 1) for k, v in times.items()},
                                           "images": manifest["images"], "config": str(config)})
    log("smoke: " + json.dumps({k: round(v, 1) for k, v in times.items()}))
    return metrics


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    sys.stdout.flush()
    p = argparse.ArgumentParser(prog="python -m training.smoke", description="Build, train and evaluate.")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="run config with a 'dataset' section")
    args = p.parse_args(argv)
    try:
        run_smoke(args.out, args.config)
    except ConfigError as exc:
        die(str(exc))
    except RuntimeError as exc:
        die(str(exc), code=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
