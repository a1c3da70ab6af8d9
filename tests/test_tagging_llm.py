"""Model backends: the LLM prompt and answer parsing, the classifier hook, the asynchronous tagger."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.tagging.definitions import DEFINITIONS
from daemon.tagging.llm import AnswerError, LLMTagger, build_prompt, label_json, parse_answer
from daemon.tagging.model import AsyncModelTagger, ClassifierBackend, make_backend, register_backend
from schemas import SIGNAL_NAMES, AgentMessage, Record, Tags

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def msg(content: str, n: int = 0, conv: str = "c1", agent: str = "claude") -> AgentMessage:
    return AgentMessage(
        message_id=f"{conv}-{n:03d}",
        agent=agent,
        role="agent",
        conversation_id=conv,
        content=content,
        created_at=T0 + timedelta(minutes=n),
    )


def record(message: AgentMessage) -> Record:
    import hashlib

    return Record(
        envelope=message,
        stream=f"aced:agent:{message.agent}",
        entry_id="1-0",
        received_at=message.created_at,
        delivery_count=1,
        content_sha256=hashlib.sha256(message.content.encode()).hexdigest(),
    )


def keyword_model(prompt: str) -> str:
    """A deterministic stand-in for a model: decides from the message part of the prompt only."""
    message = prompt.split("Message to tag", 1)[1]
    if "Kafka" in message:
        return (
            '```json\n{"tier": "A", "signals": {"solution_quality": 65}, "reason": "transport choice"}\n```'
        )
    if "broken" in message:
        return "I am not sure what you mean."
    return 'Sure! Here it is: {"tier": "e", "signals": ["novelty"], "reason": "status"} Hope that helps.'


# ------------------------------------------------------------------ prompt


def test_prompt_has_definitions_context_and_message() -> None:
    context = [msg("We need a transport.", 0, agent="maya")]
    prompt = build_prompt(msg("Should we use Redis or Kafka?", 1), context)
    assert DEFINITIONS in prompt
    assert "[c1-000] maya: We need a transport." in prompt
    assert prompt.index("We need a transport.") < prompt.rindex("Should we use Redis or Kafka?")
    assert '"tier": "A" | "C" | "E"' in prompt
    for name in SIGNAL_NAMES:
        assert name in prompt


def test_prompt_cuts_huge_messages() -> None:
    prompt = build_prompt(msg("x" * 200_000))
    assert len(prompt) < 10_000
    assert "more characters cut" in prompt


# ------------------------------------------------------------------ parsing


def test_parse_fenced_json() -> None:
    tags = parse_answer('```json\n{"tier": "C", "signals": {"assumption_challenge": 80}}\n```', "llm-x-1")
    assert tags.tier == "C"
    assert tags.signals.assumption_challenge == 80
    assert tags.emergence == 80
    assert tags.tagger_version == "llm-x-1"


def test_parse_json_amid_prose_with_listed_signals() -> None:
    tags = parse_answer('Answer: {"tier": "e", "signals": ["error_correction"]} done {"x": 1}', "v")
    assert tags.tier == "E"
    assert tags.signals.error_correction > 40
    assert tags.signals.novelty == 0


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("no json here", "no JSON object"),
        ('{"tier": "B"}', "not one of A, C, E"),
        ('{"tier": "A", "signals": {"vibes": 50}}', "unknown signal"),
        ('{"tier": "A", "signals": {"novelty": 150}}', "outside 0..100"),
        ('{"tier": "A", "signals": {"novelty": "high"}}', "not a number"),
        ('{"tier": "A", "signals": "novelty"}', "neither an object nor a list"),
        ("[1, 2, 3]", "no JSON object"),
    ],
)
def test_parse_rejects_invalid_answers(answer: str, why: str) -> None:
    with pytest.raises(AnswerError, match=why):
        parse_answer(answer, "v")


# ------------------------------------------------------------------ the LLM tagger


def test_llm_tagger_with_a_deterministic_completion() -> None:
    tagger = LLMTagger(keyword_model, model="fake")
    assert tagger.version == "llm-fake-1"
    a = tagger.tag(msg("Should we use Redis or Kafka?"))
    e = tagger.tag(msg("Status: merged."))
    assert a is not None and a.tier == "A" and a.signals.solution_quality == 65
    assert a.evidence == {"model": "fake", "reason": "transport choice"}
    assert e is not None and e.tier == "E"


def test_llm_invalid_answer_gives_none_and_logs_the_reason() -> None:
    tagger = LLMTagger(keyword_model, model="fake")
    with capture_logs() as logs:
        assert tagger.tag(msg("this one is broken")) is None
    assert logs[0]["event"] == "llm_answer_invalid"
    assert logs[0]["reason"] == "no JSON object in the answer"


def test_llm_complete_raising_gives_none() -> None:
    def down(prompt: str) -> str:
        raise ConnectionError("model unreachable")

    with capture_logs() as logs:
        assert LLMTagger(down, model="fake").tag(msg("hi")) is None
    assert "model unreachable" in logs[0]["reason"]


def test_llm_model_name_is_checked() -> None:
    with pytest.raises(ValueError, match="model name"):
        LLMTagger(keyword_model, model="bad name/with slash")


def test_label_json_lists_present_signals() -> None:
    tags = parse_answer('{"tier": "A", "signals": {"novelty": 41, "solution_quality": 40}}', "v")
    assert json.loads(label_json(tags)) == {"tier": "A", "signals": ["novelty"]}


# ------------------------------------------------------------------ classifier hook and registry


class FakeClassifier:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.prompts: list[str] = []

    def classify(self, prompt: str) -> Any:
        self.prompts.append(prompt)
        return self.answer


def test_classifier_backend_accepts_objects_and_text() -> None:
    clf = FakeClassifier({"tier": "C", "signals": ["specialization_recognition"]})
    backend = ClassifierBackend(clf, name="mini", revision=3)
    tags = backend.tag(msg("Gemini is better at search."))
    assert backend.version == "clf-mini-3"
    assert tags is not None and tags.tier == "C" and tags.signals.specialization_recognition == 70
    assert DEFINITIONS in clf.prompts[0]
    with capture_logs():
        assert ClassifierBackend(FakeClassifier("garbage"), name="mini").tag(msg("x")) is None


def test_backend_registry() -> None:
    backend = make_backend("llm", complete=keyword_model, model="reg")
    assert backend.version == "llm-reg-1"
    with pytest.raises(ValueError, match="unknown model backend"):
        make_backend("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_backend("llm", lambda **kw: backend)


# ------------------------------------------------------------------ the asynchronous tagger


class MemoryStore:
    """Just enough of the Store protocol: add_tags, with every version kept."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.tags: dict[str, list[Tags]] = {}
        self.fail_on = fail_on
        self.threads: set[str] = set()

    def add_tags(self, message_id: str, tags: Tags) -> None:
        self.threads.add(threading.current_thread().name)
        if message_id == self.fail_on:
            raise OSError("disk full")
        self.tags.setdefault(message_id, []).append(tags)


class RecordingBackend:
    version = "llm-rec-1"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def tag(self, message: AgentMessage, context: Sequence[AgentMessage] = ()) -> Tags | None:
        self.calls.append((message.message_id, [m.message_id for m in context]))
        if "nothing" in message.content:
            return None
        if "explode" in message.content:
            raise RuntimeError("backend bug")
        return parse_answer('{"tier": "C", "signals": {}}', self.version)


async def test_async_tagger_adds_a_second_version_with_context() -> None:
    store, backend = MemoryStore(), RecordingBackend()
    tagger = AsyncModelTagger(backend, store, queue_size=10, context=2)  # type: ignore[arg-type]
    for i in range(3):
        assert tagger.submit(record(msg(f"turn {i}", i)))
    await tagger.drain()
    assert sorted(store.tags) == ["c1-000", "c1-001", "c1-002"]
    assert all(t[0].tagger_version == "llm-rec-1" for t in store.tags.values())
    # each message saw at most the 2 messages before it, oldest first
    assert backend.calls[2] == ("c1-002", ["c1-000", "c1-001"])
    assert tagger.counters.tagged == 3
    # the blocking store call ran off the event loop's thread
    assert threading.current_thread().name not in store.threads


async def test_async_tagger_never_raises_and_counts() -> None:
    store, backend = MemoryStore(fail_on="c1-002"), RecordingBackend()
    tagger = AsyncModelTagger(backend, store, queue_size=10)  # type: ignore[arg-type]
    texts = ["fine", "nothing to say", "fine too", "explode please"]
    with capture_logs() as logs:
        for i, text in enumerate(texts):
            tagger.submit(record(msg(text, i)))
        await tagger.drain()
    c = tagger.counters
    assert (c.submitted, c.tagged, c.no_tags, c.failed) == (4, 1, 1, 2)
    assert {e["event"] for e in logs} == {"model_tag_failed"}


async def test_async_tagger_queue_is_bounded() -> None:
    tagger = AsyncModelTagger(RecordingBackend(), MemoryStore(), queue_size=2)  # type: ignore[arg-type]
    results = [tagger.submit(record(msg("x", i))) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert tagger.counters.dropped == 3
    assert tagger.pending() == 2


async def test_async_tagger_run_and_stop() -> None:
    store = MemoryStore()
    tagger = AsyncModelTagger(RecordingBackend(), store, queue_size=10)  # type: ignore[arg-type]
    task = asyncio.create_task(tagger.run())
    for i in range(4):
        tagger.submit(record(msg("x", i)))
    await tagger.stop(task, timeout_s=10)
    assert task.cancelled() or task.done()
    assert len(store.tags) == 4


def test_submit_outside_a_running_loop_does_not_raise() -> None:
    tagger = AsyncModelTagger(RecordingBackend(), MemoryStore(), queue_size=1)  # type: ignore[arg-type]
    assert tagger.submit(record(msg("x"))) is True
