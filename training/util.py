"""Small shared helpers: stderr logging, atomic JSON writes, config reading, clean CLI errors."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn


def log(message: str) -> None:
    """One human-readable line on stderr (stdout is reserved for the trainer's JSON protocol)."""
    print(f"{datetime.now(UTC).strftime('%H:%M:%SZ')} {message}", file=sys.stderr, flush=True)


def die(message: str, code: int = 2) -> NoReturn:
    """Print one error line on stderr and exit non-zero, without a traceback."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json_config(path: Path) -> dict[str, Any]:
    """Read a JSON object from ``path``.

    Raises:
        training.dataset_settings.ConfigError: missing file, invalid JSON or not an object.
    """
    from training.dataset_settings import ConfigError

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return data
