"""Convergence plots (PNG) from a run's events.jsonl: loss, validation error, learning rate, memory."""

from __future__ import annotations

from pathlib import Path

from training.progress import read_events


def write_plots(run_dir: Path) -> list[Path]:
    """Write ``loss.png``, ``val.png``, ``lr.png`` and ``memory.png`` into ``run_dir``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    events = read_events(run_dir / "events.jsonl")
    prog = [e for e in events if e["event"] == "progress"]
    evals = [e for e in events if e["event"] == "eval"]
    series = [
        ("loss.png", "training loss (L2 on SDF)", prog, "loss", True),
        ("val.png", "validation SDF mean absolute error", evals, "val_sdf_mae", True),
        ("lr.png", "learning rate", prog, "lr", False),
        ("memory.png", "peak memory (MB)", prog, "mem_peak_mb", False),
    ]
    written = []
    for name, title, rows, key, log_y in series:
        xs = [r["iter"] for r in rows if r.get(key) is not None]
        ys = [r[key] for r in rows if r.get(key) is not None]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(xs, ys, marker="." if len(xs) < 50 else None)
        ax.set_xlabel("iteration")
        ax.set_title(title)
        if log_y and ys and min(ys) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run_dir / name, dpi=80)
        plt.close(fig)
        written.append(run_dir / name)
    return written
