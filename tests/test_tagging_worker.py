"""The rules tagger in a child process gives exactly the tags it gives in-process."""

from __future__ import annotations

import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

from daemon.tagging import RulesTagger
from daemon.tagging.worker import ProcessTagger
from tests.helpers import make_messages


def _conversation() -> list:  # type: ignore[type-arg]
    texts = [
        "Should we use Redis Streams or Kafka for the message bus? I lean Redis: we already run it.",
        "Agreed on Redis, but I worry about retention: who trims the streams, and when?",
        "I'll write the XTRIM MINID janitor today and add a test that pending entries survive.",
        "Correction: my earlier estimate was wrong, the backlog is 4 GB not 400 MB.",
    ]
    base = make_messages("claude", len(texts))
    return [m.model_copy(update={"content": t}) for m, t in zip(base, texts, strict=True)]


def test_same_tags_as_in_process_including_history_and_priming() -> None:
    messages = _conversation()
    local = RulesTagger(history=20)
    child = ProcessTagger(history=20)
    try:
        local.prime(messages[0].conversation_id, messages[:1])
        child.prime(messages[0].conversation_id, messages[:1])
        assert child.tag_batch(messages[1:3]) == local.tag_batch(messages[1:3])
        assert child.tag_batch(messages[3:]) == local.tag_batch(messages[3:])
        assert child.version == local.version
        assert child.tag_batch([]) == []
    finally:
        child.close()


def test_a_dead_child_raises_and_the_next_batch_gets_a_new_one() -> None:
    messages = _conversation()
    child = ProcessTagger()
    try:
        assert child.tag_batch(messages[:1])[0] is not None
        pool = child._executor()
        pid = next(iter(pool._processes))  # the one worker process we started
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            child.tag_batch(messages[1:2])
        tags = child.tag_batch(messages[1:2])
        assert tags[0] is not None and tags[0].tier in ("A", "C", "E")
    finally:
        child.close()
