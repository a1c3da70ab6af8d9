"""The compiled tagger core (daemon/tagging/_core.pyx) gives exactly the tags of the Python steps.

Both run the same pipeline; the Python one is the reference. They are compared row for row (every field,
the evidence as JSON text) on every labelled message in its conversation, on the speed benchmark's
messages, and on generated text made of the characters the hand-written parsing treats specially.
"""

from __future__ import annotations

import json
import os
import random

import pytest

from daemon.tagging import RulesTagger
from daemon.tagging.markers import DEFAULT_INDEX, LEXICONS
from daemon.tagging.rules import MessageFields, build_core, core_available, core_choice
from daemon.tagging.text import SCAN_CHARS, extract
from daemon.tagging.tier_model import default_model
from tests.helpers import labelled_lines, load_bench

needs_core = pytest.mark.skipif(not core_available(), reason="the compiled core was not built")


def test_the_core_is_built_where_it_is_required() -> None:
    """CI sets ACED_REQUIRE_TAG_CORE=1: a core that silently failed to build must fail the run there."""
    if os.environ.get("ACED_REQUIRE_TAG_CORE") == "1":
        assert core_available(), "daemon/tagging/_core.pyx was not compiled by pip install"
        assert RulesTagger().compiled
    else:
        assert RulesTagger().compiled == core_available()


def test_the_core_choice_is_checked() -> None:
    assert core_choice("python") == "python" and core_choice(" AUTO ") == "auto" and core_choice("") == "auto"
    with pytest.raises(ValueError, match="ACED_TAG_CORE must be one of auto, compiled, python"):
        core_choice("fast")
    assert not RulesTagger(core="python").compiled
    if not core_available():
        with pytest.raises(ValueError, match="was not built"):
            RulesTagger(core="compiled")


def _rows_both_ways(rows: list[MessageFields], **kwargs: object) -> tuple[list, list]:
    compiled = RulesTagger(core="compiled", **kwargs)  # type: ignore[arg-type]
    python = RulesTagger(core="python", **kwargs)  # type: ignore[arg-type]
    return compiled.tag_rows(rows), python.tag_rows(rows)


def _assert_same(rows: list[MessageFields], **kwargs: object) -> list:
    fast, slow = _rows_both_ways(rows, **kwargs)
    assert len(fast) == len(slow) == len(rows)
    for row, a, b in zip(rows, fast, slow, strict=True):
        assert a == b, row[4][:300]
    return fast


def _labelled_rows() -> list[MessageFields]:
    return [
        (f"m{i}", line["agent"], line["conversation_id"], None, line["content"])
        for i, line in enumerate(labelled_lines())
    ]


@needs_core
def test_same_tags_on_every_labelled_message() -> None:
    rows = _labelled_rows()
    assert len(rows) > 1000
    _assert_same(rows)


@needs_core
def test_same_tags_when_the_votes_decide_and_without_history() -> None:
    rows = _labelled_rows()
    _assert_same(rows, tier_model=None)
    _assert_same(rows[:300], history=0)


@needs_core
def test_same_tags_on_the_benchmark_messages() -> None:
    bench = load_bench("tagging_speed")
    from daemon.tagging.rules import message_fields

    _assert_same([message_fields(m) for m in bench.make_messages(3000, 7)])


#: Pieces the hand-written parsing treats specially: fences, quotes, tables, list items, apostrophes,
#: figures, question marks, tabs, carriage returns, non-ASCII letters and quotes.
_PIECES = (
    "```", "```python\nx = 1\n```", "`", "'", "''", "' ", " '", "\n", "\n\n", "\r\n", "\t", " ", "  ", ">",
    "\n> quoted line", "\n  >", "|", "| a | b |", "\n| x |  \t", "\n|| ", "-", "\n- ", "\n* ", "\n -\titem",
    "*", "\n1. ", "\n12) ", "\n123. ", "\n1.x", "\n7)", "1", "42", "3.5", "?", "?!", "_", "snake_case",
    "don't", "'quoted'", "rock'n'roll", "é", "naïve", "’", "données", "中文", "Ünïcödé", "not 38",
    "not the 4", "NOT 5", ".", ",", ";", "(", ")", "#", "Claude", "gemini's", "Gemini",
)  # fmt: skip


def _odd_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = [m for markers in LEXICONS.values() for m in markers] + [
        "the", "we", "should", "pipeline", "redis", "kafka", "tests", "latency", "p99", "3090",
    ]  # fmt: skip
    texts = [
        "",
        " ",
        "```",
        "``` unclosed fence with words in it",
        "> only a quote",
        "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |",
        "x" * (SCAN_CHARS + 10),
        ("We should use Redis. " * 2000),
        "'" * 5,
        "a''b",
        "- one\n- two\n- three",
        "1. one\n2) two\n10. ten",
        "Décidé : on garde Redis.",
        "İ" * (SCAN_CHARS + 100),  # lower-casing lengthens it: more tokens than scanned characters / 2
        "我们应该使用 Redis 吗？",
    ]
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 40)):
            parts.append(rng.choice(_PIECES) if rng.random() < 0.5 else " " + rng.choice(words) + " ")
        text = "".join(parts)
        texts.append(text.upper() if rng.random() < 0.1 else text)
    return texts


def test_the_compiled_features_equal_extract() -> None:
    if not core_available():
        pytest.skip("the compiled core was not built")
    core = build_core(DEFAULT_INDEX, default_model(), "compiled")
    for text in _odd_texts(3000, 1):
        fast, slow = core.extract(text), extract(text)
        got = (
            fast.tokens, fast.joined, fast.terms, fast.n_chars, fast.n_digits, fast.n_questions,
            fast.code_share, fast.table_rows, fast.quoted, fast.inline_code, fast.list_items, fast.truncated,
        )  # fmt: skip
        assert got == tuple(slow), repr(text[:300])


@needs_core
def test_same_tags_on_odd_text() -> None:
    texts = _odd_texts(3000, 2)
    rng = random.Random(3)
    # ids and names the evidence writer must leave to orjson (a quote, a backslash, non-ASCII)
    ids = ("m{}", 'm"{}', "m\\{}", "mé{}")
    agents = ("claude", "gemini", "Maya", "zoë", "lea")
    rows: list[MessageFields] = [
        (rng.choice(ids).format(i), rng.choice(agents), f"c{rng.randrange(40)}", None, text)
        for i, text in enumerate(texts)
    ]
    # zoë's and lea's names in the text: the specialization evidence lists them
    rows += [
        (f"n{i}", "zoë", "c1", None, "zoë is strongest at proofs and lea at the benchmarks, so split it")
        for i in range(3)
    ]
    # replies to earlier messages, so that "which message is corrected" takes every branch
    rows = [
        (mid, agent, conv, (rows[rng.randrange(i)][0] if i and rng.random() < 0.3 else None), text)
        for i, (mid, agent, conv, _, text) in enumerate(rows)
    ]
    out = _assert_same(rows)
    evidence = [json.loads(r[-1]) for r in out if not isinstance(r, str)]
    # the writer's fallback was taken: corrections of ids it cannot write, names that are not ASCII
    signals = [e["signals"] for e in evidence]
    assert any("zoë" in s.get("specialization_recognition", {}).get("agents", []) for s in signals)
    assert any('"' in str(s.get("error_correction", {}).get("corrects")) for s in signals)


def test_the_core_rounds_as_python_does() -> None:
    """Evidence figures are rounded to two decimals in C, except next to a half, where Python decides."""
    if not core_available():
        pytest.skip("the compiled core was not built")
    from daemon.tagging import _core

    rng = random.Random(4)
    values = [0.0, -0.0, 0.005, 0.015, 0.125, 0.375, 2.675, 1.005, -0.125, -2.675, 1e-9, -1e-9, 123456.785]
    values += [k / 8 for k in range(-100, 100)] + [k / 1000 for k in range(-3000, 3000)]
    values += [rng.uniform(-20, 20) for _ in range(20_000)] + [float("inf"), float("-inf"), 1e300]
    for x in values:
        got, want = _core.round2(x), round(x, 2)
        assert got == want and str(got) == str(want), x


def test_without_a_built_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """An install whose core was not built: auto runs the Python steps, compiled refuses in one line."""
    from daemon import service
    from daemon.config import Settings
    from daemon.tagging import rules
    from daemon.tagging.worker import ProcessTagger

    monkeypatch.setattr(rules, "_core", None)
    assert not core_available() and not RulesTagger().compiled
    with pytest.raises(ValueError, match="was not built"):
        RulesTagger(core="compiled")
    with pytest.raises(ValueError, match="was not built"):
        ProcessTagger(core="compiled")
    for in_process in (True, False):
        settings = Settings(tag_core="compiled", tag_in_process=in_process)
        with pytest.raises(service.ServiceError, match="cannot build the tagger"):
            service.build_tagger(settings)


def test_the_evidence_writer_formats_floats_as_orjson() -> None:
    """The core writes the evidence's JSON itself; its figures must read exactly as orjson writes them."""
    if not core_available():
        pytest.skip("the compiled core was not built")
    import orjson

    from daemon.tagging import _core

    rng = random.Random(5)
    values = [0.0, -0.0, 7.0, 0.25, -0.54, 0.05, 0.5, 100.0, 12.25, -3.1, 999_999.99]
    values += [round(rng.uniform(-50, 50), 2) for _ in range(20_000)] + [k / 100 for k in range(-5000, 5000)]
    written = 0
    for x in values:
        text = _core.json_float(x)
        if text is not None:
            written += 1
            assert text == orjson.dumps(x).decode(), x
    assert written == len(values)
    # what it leaves to orjson: more than two decimals, huge, not finite
    for x in (0.123, 1e-5, 1e12, float("nan"), float("inf")):
        assert _core.json_float(x) is None


def test_a_core_refuses_a_second_message_while_it_tags_one() -> None:
    """Its scratch buffers belong to one call: a call made from inside another (here from the history's
    ``seen``, as another thread could) fails loudly instead of corrupting the first call's tags."""
    if not core_available():
        pytest.skip("the compiled core was not built")
    from daemon.tagging.history import ConversationHistory

    core = build_core(DEFAULT_INDEX, default_model(), "compiled")

    class Reentrant(ConversationHistory):
        __slots__ = ()

        def __getattribute__(self, name: str) -> object:
            if name == "seen":
                core.tag("and a second message", "m2", "claude", None, ConversationHistory(5))
            return super().__getattribute__(name)

    with pytest.raises(RuntimeError, match="one message at a time"):
        core.tag("the first message with some words", "m1", "claude", None, Reentrant(5))
    # and the core is usable again afterwards
    assert core.tag("the first message", "m1", "claude", None, ConversationHistory(5))[0] in "ACE"


def test_lexicons_the_core_cannot_run_fall_back_to_python() -> None:
    from daemon.tagging.markers import MarkerIndex

    index = MarkerIndex({"A.choice": ("should we",), "C.agree": ("agreed",)})
    tagger = RulesTagger(index=index, tier_model=None)
    assert not tagger.compiled
    assert tagger.tag_text("Agreed. Should we ship it, not 3?", "c", "m", "claude").evidence["markers"] == {
        "A.choice": ["should we"],
        "C.agree": ["agreed"],
        "error_correction.flaw": ["not <figure>"],
    }
    if core_available():
        with pytest.raises(ValueError, match=r"error_correction\.flaw"):
            RulesTagger(index=index, core="compiled")
