"""The JSON-lines progress protocol (DESIGN.md "Training"): one JSON object per line on stdout.

Events: ``start``, ``progress``, ``checkpoint``, ``eval``, ``end``, ``error``. Each carries ``event``,
``run_id``, ``iter`` and a UTC timestamp ``ts``; progress events add ``loss``, ``lr``, ``batch_size``,
``vram_peak_mb``, ``samples_per_s``. Every event is also appended to ``<run_dir>/events.jsonl``.
Nothing else may reach stdout, so :meth:`Emitter.claim_stdout` points ``sys.stdout`` at stderr.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; a supervisor's parser must never choke on a diverged loss.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Emitter:
    """Writes protocol events to the real stdout and to an events file."""

    def __init__(self, run_id: str, stream: TextIO | None = None) -> None:
        """Args: ``run_id`` stamped on every event; ``stream`` the protocol stream (default: real stdout)."""
        self.run_id = run_id
        self.stream = stream or sys.__stdout__
        self.file: Path | None = None

    @staticmethod
    def claim_stdout() -> TextIO:
        """Reserve stdout for the protocol: stray prints (libraries, warnings) go to stderr from now on."""
        real = sys.stdout
        sys.stdout = sys.stderr
        return real

    def attach(self, path: Path) -> None:
        """Also append every event to ``path``."""
        self.file = path

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Emit one event; returns the object written."""
        obj = {"event": event, "run_id": self.run_id, "ts": datetime.now(UTC).isoformat()}
        obj.update({k: _clean(v) for k, v in fields.items()})
        line = json.dumps(obj)
        self.stream.write(line + "\n")
        self.stream.flush()
        if self.file is not None:
            with self.file.open("a") as f:
                f.write(line + "\n")
        return obj


def read_events(path: Path) -> list[dict[str, Any]]:
    """Read an events file; for events repeated after a resume, the last one per (event, iter) wins."""
    if not path.exists():
        return []
    latest: dict[tuple[str, Any], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            obj = json.loads(line)
            latest[(obj["event"], obj.get("iter"))] = obj
    return sorted(latest.values(), key=lambda o: (o.get("iter") or 0))
