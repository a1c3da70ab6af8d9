"""Device selection and peak-memory readings shared by the trainer, the evaluator and the benches."""

from __future__ import annotations

import resource
import sys

import torch


def select_device(choice: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error (ValueError)."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory so far: ``(MB, "cuda")`` from ``max_memory_allocated`` on GPU, else ``(MB, "rss")``."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "rss"  # bytes on macOS, KiB on Linux
