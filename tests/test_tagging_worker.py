"""The rules tagger in a child process gives exactly the tags it gives in-process."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures.process import BrokenProcessPool

import pytest

from daemon.tagging import RulesTagger
from daemon.tagging.worker import ProcessTagger
from tests.helpers import labelled_lines, make_messages


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
        pid = child.pids()[0]  # the one child process we started
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            child.tag_batch(messages[1:2])
        tags = child.tag_batch(messages[1:2])
        assert tags[0] is not None and tags[0].tier in ("A", "C", "E")
    finally:
        child.close()


def _interleaved_conversations() -> list:  # type: ignore[type-arg]
    """Labelled messages of several conversations, interleaved as they would arrive from many agents."""
    lines = labelled_lines("dev_b")
    by_conversation: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for line in lines:
        by_conversation.setdefault(line["conversation_id"], []).append(line)
    queues = list(by_conversation.values())
    ordered = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    base = make_messages("claude", len(ordered))
    return [
        m.model_copy(
            update={k: line[k] for k in ("message_id", "agent", "conversation_id", "reply_to", "content")}
        )
        for m, line in zip(base, ordered, strict=True)
    ]


def test_several_children_give_the_tags_of_one() -> None:
    """Conversations are divided between the children; each message still sees its own conversation's
    history in order, so the tags are exactly those of one tagger (priming included)."""
    messages = _interleaved_conversations()
    assert len({m.conversation_id for m in messages}) >= 5
    local = RulesTagger(history=20)
    children = ProcessTagger(history=20, processes=3)
    try:
        first = messages[0]
        local.prime(first.conversation_id, [first])
        children.prime(first.conversation_id, [first])
        expected, got = [], []
        for i in range(1, len(messages), 25):
            expected += local.tag_batch(messages[i : i + 25])
            got += children.tag_batch(messages[i : i + 25])
        assert got == expected
        # the conversations really were divided
        assert len({children._shard_of(m.conversation_id) for m in messages}) > 1
        assert sum(pid is not None for pid in children.pids()) > 1
    finally:
        children.close()


def test_process_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one process"):
        ProcessTagger(processes=0)


def test_a_late_batch_times_out_and_its_answer_is_not_taken_for_the_next() -> None:
    """A child that stops answering fails the batch's wait after its timeout; when it answers later, that
    answer is dropped, and the next batch gets its own tags (answers are matched to batches by number)."""
    messages = _conversation()
    local = RulesTagger(history=20)
    child = ProcessTagger(history=20)
    try:
        assert child.tag_batch(messages[:1]) == local.tag_batch(messages[:1])
        pid = child.pids()[0]
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # the child can no longer answer
        try:
            late = child.submit_rows(messages[1:2])
            with pytest.raises(TimeoutError):
                late.result(timeout=0.2)
        finally:
            os.kill(pid, signal.SIGCONT)
        expected_late = local.tag_batch(messages[1:2])  # the child tagged it too: same history on both sides
        assert expected_late[0] is not None
        assert child.tag_batch(messages[2:]) == local.tag_batch(messages[2:])
        assert child.pids()[0] == pid  # the same child, still in step
    finally:
        child.close()


def test_a_late_child_does_not_put_the_other_children_out_of_step() -> None:
    """With two children, a batch whose first child stops answering times out; the other child's answer to
    that batch is dropped (not kept for a waiter that will never come), and later batches still get their
    own tags."""
    messages = _interleaved_conversations()
    local = RulesTagger(history=20)
    children = ProcessTagger(history=20, processes=2)
    try:
        assert children.tag_batch(messages[:20]) == local.tag_batch(messages[:20])
        late_batch = messages[20:40]
        assert len({children._shard_of(m.conversation_id) for m in late_batch}) == 2
        first_pid = children.pids()[children._shard_of(late_batch[0].conversation_id)]
        assert first_pid is not None
        os.kill(first_pid, signal.SIGSTOP)  # the child whose answer the batch reads first
        try:
            with pytest.raises(TimeoutError):
                children.submit_rows(late_batch).result(timeout=0.2)
        finally:
            os.kill(first_pid, signal.SIGCONT)
        local.tag_batch(late_batch)  # both children tagged it: keep the reference's histories the same
        for i in range(40, len(messages), 20):
            assert children.tag_batch(messages[i : i + 20]) == local.tag_batch(messages[i : i + 20])
        # answers are matched to batches by number; the dropped ones are not kept either
        assert all(not child._answers for child in children._children if child is not None)
    finally:
        children.close()


def test_start_runs_every_child_before_the_first_batch_and_close_ends_them_cleanly() -> None:
    tagger = ProcessTagger(processes=2)
    try:
        assert tagger.pids() == [None, None]  # nothing starts until asked
        tagger.start()
        pids = tagger.pids()
        assert all(pid is not None for pid in pids)
        messages = _conversation()
        assert tagger.tag_batch(messages) == RulesTagger(history=20).tag_batch(messages)
        assert tagger.pids() == pids  # the batch used the children start() made
        children = [c for c in tagger._children if c is not None]
    finally:
        tagger.close()
    # close() asked them to stop; each one left on its own, with exit code 0 (not terminated by us).
    assert [c.process.exitcode for c in children] == [0, 0]


def test_close_ends_a_stopped_child_and_releases_a_waiter() -> None:
    """A child stopped with SIGSTOP ignores the request to exit and SIGTERM; close() kills it, and a thread
    waiting for its answer gets an error instead of waiting out its timeout."""
    messages = _conversation()
    tagger = ProcessTagger()
    tagger.start()
    child = tagger._children[0]
    assert child is not None
    os.kill(child.process.pid, signal.SIGSTOP)
    pending = tagger.submit_rows(messages)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            pending.result(timeout=120)
        except BaseException as exc:  # what the waiter got is the assertion
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        tagger.close(timeout_s=0.5)
        waiter.join(30)
        assert not waiter.is_alive()
        assert child.process.exitcode == -signal.SIGKILL
        assert len(outcome) == 1 and isinstance(outcome[0], (BrokenProcessPool, OSError, EOFError))
    finally:
        if child.process.is_alive():
            os.kill(child.process.pid, signal.SIGKILL)
