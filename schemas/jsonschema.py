"""Generate the checked-in JSON Schema files (``schemas/json/``) from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.deadletter import DeadLetter
from schemas.envelope import AgentMessage
from schemas.events import Event, TrainingProgress
from schemas.record import Record, Tags

#: Every public model, by the file stem its schema is written under.
PUBLIC_MODELS: dict[str, type[BaseModel]] = {
    "AgentMessage": AgentMessage,
    "Record": Record,
    "Tags": Tags,
    "DeadLetter": DeadLetter,
    "Event": Event,
    "TrainingProgress": TrainingProgress,
}


def render_json_schemas() -> dict[str, str]:
    """The schema text of every public model, keyed by file name."""
    return {
        f"{name}.schema.json": json.dumps(
            model.model_json_schema(mode="validation"), indent=2, sort_keys=True
        )
        + "\n"
        for name, model in PUBLIC_MODELS.items()
    }


def export_json_schemas(out_dir: Path) -> list[Path]:
    """Write every public model's JSON Schema into ``out_dir``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_json_schemas().items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
