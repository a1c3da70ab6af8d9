"""In-process counters: what the health key, STATUS= and the shutdown line report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from schemas._types import utc_now


@dataclass
class Counters:
    """Counters of one daemon process since it started."""

    started_at: datetime = field(default_factory=utc_now)
    entries_read: int = 0
    batches: int = 0
    recorded: int = 0
    duplicates: int = 0
    redelivered: int = 0
    dead_letters: int = 0
    untagged: int = 0
    batch_errors: int = 0
    redis_ok: bool = True
    store_ok: bool = True
    redis_outages: int = 0
    store_failures: int = 0  #: outages of the store (unwritable, full, locked)
    store_retries: int = 0  #: failed commit attempts, all outages together
    last_commit_at: datetime | None = None
    last_error: str | None = None

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        out = asdict(self)
        for key in ("started_at", "last_commit_at"):
            value = out[key]
            out[key] = value.isoformat() if value is not None else None
        return out

    def status_line(self) -> str:
        """One short line for systemd's STATUS=."""
        health = (
            "ok"
            if self.redis_ok and self.store_ok
            else ("redis down" if not self.redis_ok else "store unwritable")
        )
        return (
            f"{health}; recorded={self.recorded} duplicates={self.duplicates} "
            f"dead_letters={self.dead_letters} batches={self.batches}"
        )
