"""What the daemon publishes on ``aced:events``. One JSON object per entry, in field ``data``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas._types import UtcDatetime

EventType = Literal[
    "daemon.started",
    "daemon.stopping",
    "redis.outage",
    "redis.recovered",
    "store.unwritable",
    "store.recovered",
    "deadletter",
    # Reserved for later issues (training supervisor, standups); documented in DESIGN.md.
    "training.progress",
    "training.status",
    "report.standup",
    "report.review",
]


class Event(BaseModel):
    """A notable thing the daemon did or saw."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: EventType = Field(description="What happened.")
    at: UtcDatetime = Field(description="When, in UTC.")
    source: str = Field(description="The emitting daemon consumer (host-pid).")
    data: dict[str, Any] = Field(default_factory=dict, description="Type-specific details.")


class TrainingProgress(BaseModel):
    """One line of the trainer's JSON-lines progress protocol (``python -m training.train``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event: Literal["start", "progress", "checkpoint", "eval", "end", "error"]
    run_id: str
    iter: int | None = None
    loss: float | None = None
    lr: float | None = None
    batch_size: int | None = None
    vram_peak_mb: float | None = None
    samples_per_s: float | None = None
