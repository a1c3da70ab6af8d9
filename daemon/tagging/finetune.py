"""Export tagged records as chat-format fine-tuning data (``aced export --format finetune``).

Each example is ``{"messages": [system: the locked definitions, user: the message with its context,
assistant: the label JSON]}``, the same prompt pieces an LLM backend sees, so that a model fine-tuned on it
can serve as ``model.ClassifierBackend``. The split is by conversation: no conversation is in both files.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import OrderedDict, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from daemon.tagging.definitions import ANSWER_FORMAT, DEFINITIONS
from daemon.tagging.llm import label_json, render_message
from schemas import AgentMessage, Record

#: Earlier messages of the conversation shown with each example (as the LLM backend does).
CONTEXT_MESSAGES = 4

SYSTEM_PROMPT = f"{DEFINITIONS}\n{ANSWER_FORMAT}"


def _example(message: AgentMessage, context: Iterable[AgentMessage], label: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": render_message(message, tuple(context))},
            {"role": "assistant", "content": label},
        ]
    }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    # Write then rename, so a reader never sees half a file.
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def split_conversations(ids: Iterable[str], val_fraction: float, seed: int) -> set[str]:
    """The conversation ids that go to validation: a seeded shuffle of the sorted ids, the first
    ``ceil(val_fraction * n)`` of them, leaving at least one for training when there are two or more."""
    ordered = sorted(set(ids))
    random.Random(seed).shuffle(ordered)  # noqa: S311 - a reproducible split, not a secret
    n_val = math.ceil(val_fraction * len(ordered)) if val_fraction > 0 else 0
    n_val = min(n_val, len(ordered) - 1) if len(ordered) >= 2 else 0
    return set(ordered[:n_val])


def write_finetune(
    records: Iterable[Record], out_dir: Path, val_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """Write ``train.jsonl`` and ``val.jsonl`` under ``out_dir`` from tagged ``records`` (oldest first).

    ``val_fraction``: share of conversations (not messages) held out for validation, in [0, 1);
    ``seed``: makes the split reproducible. Records without tags are skipped (counted), but still serve
    as context for the later messages of their conversation. Returns counts and the two paths.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError("val_fraction must be in [0, 1)")
    contexts: OrderedDict[str, deque[AgentMessage]] = OrderedDict()
    examples: list[tuple[str, dict[str, Any]]] = []
    skipped = 0
    for record in records:
        message = record.envelope
        ctx = contexts.setdefault(message.conversation_id, deque(maxlen=CONTEXT_MESSAGES))
        if record.tags is None:
            skipped += 1
        else:
            examples.append((message.conversation_id, _example(message, ctx, label_json(record.tags))))
        ctx.append(message)
    val_ids = split_conversations((cid for cid, _ in examples), val_fraction, seed)
    train = [ex for cid, ex in examples if cid not in val_ids]
    val = [ex for cid, ex in examples if cid in val_ids]
    out_dir.mkdir(parents=True, exist_ok=True)
    train_path, val_path = out_dir / "train.jsonl", out_dir / "val.jsonl"
    _write_jsonl(train_path, train)
    _write_jsonl(val_path, val)
    all_ids = {cid for cid, _ in examples}
    return {
        "train": len(train),
        "val": len(val),
        "train_conversations": len(all_ids - val_ids),
        "val_conversations": len(val_ids),
        "skipped_untagged": skipped,
        "train_path": str(train_path),
        "val_path": str(val_path),
    }
