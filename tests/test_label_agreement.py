"""bench/label_agreement.py: the annotators' files and the agreement arithmetic (figures are reported by
the script, not asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("label_agreement", ROOT / "bench" / "label_agreement.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_annotations_cover_the_same_whole_development_conversations(bench: ModuleType) -> None:
    paths = sorted(bench.AGREEMENT.glob("labels_*.jsonl"))
    assert len(paths) >= 2
    labellings = [bench.load_annotations(p) for p in paths]
    ids = list(labellings[0])
    assert all(list(lab) == ids for lab in labellings)  # same messages, same order
    lines = bench.sample_lines(ids)  # every id is a labelled development message
    for lab in labellings:
        assert all(tier in ("A", "C", "E") for tier, _ in lab.values())
        assert all(signals <= set(bench.SIGNAL_NAMES) for _, signals in lab.values())
    # whole conversations, each in its file's order: the annotators read every message in context
    by_conversation: dict[str, list[str]] = {}
    for line in lines:
        by_conversation.setdefault(line["conversation_id"], []).append(line["message_id"])
    dev: dict[str, list[str]] = {}
    for path in bench.tagging_eval.SPLITS["dev"]:
        for d in bench.tagging_eval.load(path):
            dev.setdefault(d["conversation_id"], []).append(d["message_id"])
    for conversation, sampled in by_conversation.items():
        assert sampled == dev[conversation]


def test_compare(bench: ModuleType) -> None:
    a = {"m1": ("A", frozenset({"novelty"})), "m2": ("C", frozenset()), "m3": ("E", frozenset())}
    assert bench.compare(a, a, list(a)) == {"tier_agreement": 1.0, "kappa": 1.0, "macro_f1": 1.0}
    b = {"m1": ("C", frozenset()), "m2": ("C", frozenset({"novelty"})), "m3": ("E", frozenset())}
    m = bench.compare(a, b, list(a))
    assert m["tier_agreement"] == pytest.approx(2 / 3)
    # novelty: no message where both saw it (F1 0); the five other signals: never seen, full agreement
    assert m["macro_f1"] == pytest.approx(5 / 6)
