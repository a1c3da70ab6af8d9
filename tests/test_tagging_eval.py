"""The labelled evaluation set: its shape, and the rules tagger's quality on the development part."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from schemas import SIGNAL_NAMES, AgentMessage

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "tagging"


def load(name: str) -> list[dict]:
    return [
        json.loads(x) for x in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()
    ]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tagging_eval", REPO / "bench" / "tagging_eval.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_set_shape() -> None:
    dev, held = load("dev"), load("heldout")
    lines = dev + held
    assert len(lines) >= 150
    assert len({d["message_id"] for d in lines}) == len(lines)
    # split by conversation
    assert {d["conversation_id"] for d in dev}.isdisjoint({d["conversation_id"] for d in held})
    for d in lines:
        AgentMessage.model_validate({k: v for k, v in d.items() if k != "label"}, strict=False)
        assert d["label"]["tier"] in ("A", "C", "E")
        assert set(d["label"]["signals"]) <= set(SIGNAL_NAMES)
    # every tier and every signal in both parts
    for part in (dev, held):
        assert set(Counter(d["label"]["tier"] for d in part)) == {"A", "C", "E"}
        assert {s for d in part for s in d["label"]["signals"]} == set(SIGNAL_NAMES)
    # multi-turn conversations between agents and people
    per_conv = Counter(d["conversation_id"] for d in lines)
    assert min(per_conv.values()) >= 5
    assert {"claude", "gemini"} <= {d["agent"] for d in lines}
    assert any(d["role"] == "human" for d in lines)


def test_metrics_helpers(bench: ModuleType) -> None:
    assert bench.cohen_kappa(list("AACE"), list("AACE")) == 1.0
    assert bench.cohen_kappa(list("AC"), list("CA")) < 0
    assert bench.prf(0, 0, 0) == (0.0, 0.0, 0.0)
    assert bench.prf(1, 1, 0) == (0.5, 1.0, pytest.approx(2 / 3))


def test_rules_meet_the_goal_on_dev(bench: ModuleType) -> None:
    """A regression floor on the part the rules were tuned on (the held-out figures are reported by
    bench/tagging_eval.py, not asserted)."""
    lines = bench.load(DATA / "dev.jsonl")
    metrics = bench.evaluate(lines, bench.tag_lines(lines))
    assert metrics["tier_accuracy"] >= 0.85
    assert metrics["macro_f1"] >= 0.7
