"""The rules tagger's output, frozen: every tag, score, rule and evidence entry, in its exact order.

``tests/data/tagging/golden_tags.jsonl`` holds what the rules tagger (RULES_VERSION ``rules-5``) produced for
the first 2,000 messages of ``bench/tagging_speed.py``'s ``make_messages(10000, 0)`` (tagged by one
RulesTagger in batches of 500, as the daemon does), then for ``dev.jsonl`` and ``heldout.jsonl`` as
``aced tag`` sees them (each file through its own ``tag_stream``). Speed work on the tagger must keep every
line byte-for-byte: lines are compared as JSON text, so the order of evidence keys and marker lists counts.

A deliberate change of rules (a new lexicon entry, weight or threshold) bumps RULES_VERSION and regenerates
the file with the ``_lines`` function below::

    python -c "from tests.test_tagging_golden import _lines; print('\\n'.join(_lines()))" \\
        > tests/data/tagging/golden_tags.jsonl
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import ModuleType

from daemon.cli.tag import tag_stream
from daemon.tagging import RULES_VERSION, RulesTagger
from daemon.tagging.rules import message_fields
from tests.helpers import load_bench

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "tagging"
GOLDEN = DATA / "golden_tags.jsonl"
BENCH_MESSAGES = 2000
BATCH = 500


def _dump(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _bench_module() -> ModuleType:
    return load_bench("tagging_speed")


def _lines() -> list[str]:
    """The golden file's lines as the current code produces them."""
    lines: list[str] = []
    messages = _bench_module().make_messages(10_000, 0)[:BENCH_MESSAGES]
    tagger = RulesTagger()
    for i in range(0, len(messages), BATCH):
        batch = messages[i : i + BATCH]
        for message, tags in zip(batch, tagger.tag_batch(batch), strict=True):
            assert tags is not None
            dumped = tags.model_dump(mode="json")
            lines.append(_dump({"source": "bench", "message_id": message.message_id, "tags": dumped}))
    for name in ("dev.jsonl", "heldout.jsonl"):
        sink = io.BytesIO()
        assert tag_stream(io.BytesIO((DATA / name).read_bytes()), sink) == 0
        for raw in sink.getvalue().decode("utf-8").splitlines():
            lines.append(_dump({"source": name, "out": json.loads(raw)}))
    return lines


def test_golden_file_covers_bench_and_eval_set() -> None:
    golden = GOLDEN.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in golden]
    sources = [row["source"] for row in rows]
    assert sources.count("bench") == BENCH_MESSAGES
    assert sources.count("dev.jsonl") > 0 and sources.count("heldout.jsonl") > 0
    versions = {row.get("tags", row.get("out", {})).get("tagger_version") for row in rows}
    assert versions == {RULES_VERSION}


def test_rules_tagger_reproduces_golden_tags_exactly() -> None:
    golden = GOLDEN.read_text(encoding="utf-8").splitlines()
    produced = _lines()
    assert len(produced) == len(golden)
    for number, (want, got) in enumerate(zip(golden, produced, strict=True), start=1):
        assert got == want, f"golden line {number} differs"


def test_signal_gates_name_the_families_each_step_needs() -> None:
    """``tag_text`` skips a signal step whose gate families all missed; the step must then score 0 with
    no evidence, which is what this checks on real messages with the gate families taken out."""
    from daemon.tagging.rules import SIGNAL_GATES, SIGNAL_STEPS, MessageContext
    from daemon.tagging.text import extract

    assert tuple(SIGNAL_GATES) == tuple(SIGNAL_STEPS)
    tagger = RulesTagger()
    messages = _bench_module().make_messages(200, 0)
    for message in messages:
        features = extract(message.content)
        hits = tagger._index.match(features)
        for name, gate in SIGNAL_GATES.items():
            if not gate:
                continue
            without = {family: markers for family, markers in hits.items() if family not in gate}
            ctx = MessageContext(message.message_id, message.agent, None, features, without, 50, (), set())
            result = SIGNAL_STEPS[name](ctx)
            assert result.score == 0 and not result.evidence, (name, message.message_id)


def test_tag_rows_are_the_store_form_of_the_same_tags() -> None:
    """What the daemon's tagger process sends (``RulesTagger.tag_rows``, no ``Tags`` built) is exactly
    what the store would make of ``tag_text``'s validated ``Tags``, history included."""
    from daemon.store.base import tag_row, tags_from_row

    messages = _bench_module().make_messages(10_000, 0)[:BENCH_MESSAGES]
    odd = ["", "```\nprint(1)\n```", "| a | b |\n|---|---|\n| 1 | 2 |", "x" * 300_000, "\ud800 lone"]
    fields = [message_fields(m) for m in messages]
    fields += [(f"odd-{i}", "claude", "odd", None, text) for i, text in enumerate(odd)]
    rows = RulesTagger().tag_rows(fields)
    validated = RulesTagger()
    for (message_id, agent, conversation, reply_to, content), row in zip(fields, rows, strict=True):
        assert not isinstance(row, str), row
        tags = validated.tag_text(content, conversation, message_id, agent, reply_to)
        assert row == tag_row(tags)
        assert tags_from_row(row) == tags
