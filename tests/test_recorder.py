"""The recorder against a real Redis and a real SQLite store, in this process (burst mode)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
import redis

from daemon.config import Settings
from daemon.service import Daemon, run_daemon
from daemon.store import open_store
from schemas import CONSUMER_GROUP, DATA_FIELD, RejectReason, StreamKeys
from tests.helpers import chattr, counts, group_pending, make_messages, publish, recorded_ids


def test_every_message_recorded_once_with_fields_intact_and_order_kept(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    settings = make_settings(batch_size=64)
    by_agent = {
        agent: make_messages(agent, 150, conversation=f"c-{agent}") for agent in ("claude", "gemini", "third")
    }
    entry_ids = {agent: publish(redis_client, keys, msgs) for agent, msgs in by_agent.items()}

    assert run_daemon(settings, burst=True) == 0

    store = open_store(settings, create=False)
    try:
        assert store.counts().recorded == 450
        for agent, messages in by_agent.items():
            for message, entry_id in zip(messages, entry_ids[agent], strict=True):
                record = store.get(message.message_id)
                assert record is not None
                assert record.envelope == message  # every envelope field, byte for byte
                assert record.stream == keys.agent_stream(agent)
                assert record.entry_id == entry_id
                assert record.delivery_count == 1
                assert record.received_at.tzinfo is not None and record.committed_at is not None
            # per-stream order: entry ids follow publish order, and so do the records' entry ids
            stored = [store.get(m.message_id) for m in messages]
            ids = [tuple(map(int, r.entry_id.split("-"))) for r in stored if r is not None]
            assert ids == sorted(ids)
    finally:
        store.close()
    for agent in by_agent:
        assert group_pending(redis_client, keys.agent_stream(agent)) == 0


def test_messages_published_before_the_daemon_ever_ran_are_recorded(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    messages = make_messages("claude", 20)
    publish(redis_client, keys, messages)  # no consumer group exists yet
    assert not redis_client.xinfo_groups(keys.agent_stream("claude"))

    run_daemon(make_settings(), burst=True)

    assert sorted(recorded_ids(make_settings())) == sorted(m.message_id for m in messages)


def test_a_retried_publish_with_the_same_message_id_is_one_record(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    settings = make_settings()
    [message] = make_messages("gemini", 1)
    publish(redis_client, keys, [message, message])  # the producer's retry reached Redis twice
    run_daemon(settings, burst=True)
    publish(redis_client, keys, [message])  # and once more, much later
    run_daemon(settings, burst=True)

    totals = counts(settings)
    assert totals.recorded == 1
    assert totals.duplicates == 2
    assert recorded_ids(settings) == [message.message_id]


def _hostile_entries(keys: StreamKeys) -> list[tuple[str, dict[bytes, bytes], RejectReason]]:
    good = json.loads(make_messages("claude", 1)[0].to_wire())
    stream = keys.agent_stream("claude")

    def variant(**changes: object) -> bytes:
        data = {**good, "message_id": f"hostile-{len(changes)}-{sorted(changes)}"[:100], **changes}
        return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()

    return [
        (stream, {b"data": b"this is not json {"}, RejectReason.INVALID_JSON),
        (stream, {b"data": b"[1, 2, 3]"}, RejectReason.INVALID_JSON),
        (stream, {b"text": b"hello, wrong field name"}, RejectReason.MISSING_DATA),
        (stream, {b"data": variant(content=...)}, RejectReason.VALIDATION),  # missing field
        (stream, {b"data": variant(created_at=12345)}, RejectReason.VALIDATION),  # wrong type
        (stream, {b"data": variant(content=42)}, RejectReason.VALIDATION),
        (stream, {b"data": variant(created_at="2026-11-01T12:00:00")}, RejectReason.VALIDATION),  # naive
        (stream, {b"data": variant(content="   ")}, RejectReason.VALIDATION),  # empty, no attachments
        (stream, {b"data": variant(schema_version=2)}, RejectReason.UNSUPPORTED_SCHEMA_VERSION),
        (stream, {b"data": variant(content="x" * (256 * 1024 + 1))}, RejectReason.OVERSIZED),
        (
            stream,
            {b"data": b'{"message_id": "\xff\xfe bad utf8", "content": "\xc3\x28"}'},
            RejectReason.INVALID_UTF8,
        ),
        (stream, {b"data": variant(content="lone \ud800 surrogate")}, RejectReason.INVALID_UTF8),
        (stream, {b"data": variant(agent="gemini")}, RejectReason.STREAM_MISMATCH),
        (stream, {b"data": b"0" * (10 * 1024 * 1024)}, RejectReason.OVERSIZED),  # a 10 MB field
    ]


def test_hostile_input_is_dead_lettered_with_reason_and_original_bytes(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    settings = make_settings(batch_size=4)
    before = make_messages("claude", 5, prefix="before ")
    after = make_messages("claude", 5, prefix="after ")
    publish(redis_client, keys, before)
    hostile = _hostile_entries(keys)
    hostile_ids = [redis_client.xadd(stream, fields).decode() for stream, fields, _ in hostile]  # type: ignore[arg-type,union-attr]
    publish(redis_client, keys, after)

    run_daemon(settings, burst=True)

    assert sorted(recorded_ids(settings)) == sorted(m.message_id for m in before + after)
    store = open_store(settings, create=False)
    try:
        letters = {dl.entry.entry_id: dl for dl in store.list_dead_letters(limit=100)}
        assert store.counts().dead_letters == len(hostile)
    finally:
        store.close()
    for entry_id, (stream, fields, reason) in zip(hostile_ids, hostile, strict=True):
        stored = letters[entry_id]
        assert stored.entry.reason == reason, (
            fields if len(str(fields)) < 300 else reason,
            stored.entry.detail,
        )
        assert stored.entry.stream == stream
        assert stored.entry.fields == fields  # the original bytes, exactly
        assert stored.entry.detail
    # ... and each one went to the dead-letter stream too, with its reason and original fields
    dlq = redis_client.xrange(keys.deadletter)
    assert len(dlq) == len(hostile)
    by_entry = {f[b"entry_id"].decode(): f for _, f in dlq}
    for entry_id, (_, fields, reason) in zip(hostile_ids, hostile, strict=True):
        assert by_entry[entry_id][b"reason"].decode() == reason.value
        assert {
            k.removeprefix(b"orig:"): v for k, v in by_entry[entry_id].items() if k.startswith(b"orig:")
        } == fields
    assert group_pending(redis_client, keys.agent_stream("claude")) == 0


def test_entry_delivered_too_often_goes_to_the_dead_letter_as_poison(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    settings = make_settings(max_deliveries=3, claim_idle_ms=1)
    stream = keys.agent_stream("claude")
    [message] = make_messages("claude", 1)
    redis_client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    [entry_id] = publish(redis_client, keys, [message])
    # Consumers that took it and died before recording it, over and over.
    redis_client.xreadgroup(CONSUMER_GROUP, "crashed-1", {stream: ">"})
    for n in range(2, 5):
        redis_client.xclaim(stream, CONSUMER_GROUP, f"crashed-{n}", 0, [entry_id])

    async def go() -> None:
        daemon = Daemon(settings)
        task = asyncio.create_task(daemon.run())
        deadline = asyncio.get_running_loop().time() + 20
        while counts(settings).dead_letters == 0:
            assert asyncio.get_running_loop().time() < deadline, "poison entry was never dead-lettered"
            await asyncio.sleep(0.05)
        daemon.stop.set()
        assert await task == 0

    asyncio.run(go())
    store = open_store(settings, create=False)
    try:
        [letter] = store.list_dead_letters()
        assert letter.entry.reason == RejectReason.POISON
        assert letter.entry.delivery_count > 3
        assert letter.entry.fields == {DATA_FIELD.encode(): message.to_wire()}
        assert store.get(message.message_id) is None
    finally:
        store.close()
    assert group_pending(redis_client, stream) == 0


def test_janitor_claims_entries_of_a_dead_consumer(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    settings = make_settings(claim_idle_ms=200)
    stream = keys.agent_stream("gemini")
    messages = make_messages("gemini", 30)
    redis_client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    publish(redis_client, keys, messages)
    taken = redis_client.xreadgroup(CONSUMER_GROUP, "dead-host-1", {stream: ">"}, count=10)
    assert len(taken[0][1]) == 10  # type: ignore[index]

    async def go() -> None:
        daemon = Daemon(settings)
        task = asyncio.create_task(daemon.run())
        deadline = asyncio.get_running_loop().time() + 20
        while counts(settings).recorded < 30:
            assert asyncio.get_running_loop().time() < deadline, f"only {counts(settings).recorded} recorded"
            await asyncio.sleep(0.05)
        daemon.stop.set()
        assert await task == 0

    asyncio.run(go())
    assert sorted(recorded_ids(settings)) == sorted(m.message_id for m in messages)
    assert group_pending(redis_client, stream) == 0


def test_retention_trims_only_entries_committed_acked_and_old(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    stream = keys.agent_stream("claude")
    recorded = make_messages("claude", 20)
    publish(redis_client, keys, recorded)
    run_daemon(make_settings(retention_s=0), burst=True)  # record them, trim nothing
    assert redis_client.xlen(stream) == 20

    # An entry a dead consumer holds, and entries nobody has read yet: both must survive trimming.
    held = make_messages("claude", 1, prefix="held ")
    publish(redis_client, keys, held)
    redis_client.xreadgroup(CONSUMER_GROUP, "dead-host", {stream: ">"}, count=1)
    unread = make_messages("claude", 5, prefix="unread ")
    publish(redis_client, keys, unread)

    async def trim_once() -> int:
        from daemon.redis_conn import async_client
        from daemon.streams import StreamOps

        client = async_client(make_settings())
        try:
            return await StreamOps(client, keys, "janitor-test").trim(stream, retention_ms=0)
        finally:
            await client.aclose()

    assert asyncio.run(trim_once()) == 20  # exactly the recorded ones
    remaining = [f[b"data"] for _, f in redis_client.xrange(stream)]
    assert remaining == [m.to_wire() for m in held + unread]

    run_daemon(make_settings(retention_s=0, claim_idle_ms=1), burst=True)
    assert counts(make_settings()).recorded == 26


def test_same_message_id_in_one_batch_is_one_record(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    settings = make_settings(batch_size=100)
    messages = make_messages("claude", 3)
    publish(redis_client, keys, messages + messages + messages[:1])
    run_daemon(settings, burst=True)
    totals = counts(settings)
    assert (totals.recorded, totals.duplicates) == (3, 4)


def test_health_key_and_status_report_the_running_daemon(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    from daemon.status import collect_status

    settings = make_settings()
    publish(redis_client, keys, make_messages("claude", 7))
    publish(redis_client, keys, make_messages("gemini", 3))

    async def go() -> None:
        daemon = Daemon(settings)
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:
            report = await asyncio.to_thread(collect_status, settings)
            if report.recorded == 10 and report.daemons and report.daemons[0].get("recorded") == "10":
                break
            assert loop.time() < deadline, report.to_json()
            await asyncio.sleep(0.05)
        assert report.healthy, report.problems
        assert report.pending == 0 and report.lag == 0
        assert set(report.streams) == {keys.agent_stream("claude"), keys.agent_stream("gemini")}
        daemon.stop.set()
        assert await task == 0

    asyncio.run(go())
    after = collect_status(settings)
    assert not after.healthy  # no daemon any more
    assert any("no daemon" in p for p in after.problems)
    assert after.recorded == 10


@pytest.mark.parametrize("tagger", ["none"])
def test_tagger_none_records_untagged(
    tagger: str, make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    settings = make_settings(tagger=tagger)
    [message] = make_messages("claude", 1)
    publish(redis_client, keys, [message])
    run_daemon(settings, burst=True)
    store = open_store(settings, create=False)
    try:
        record = store.get(message.message_id)
        assert record is not None and record.tags is None
    finally:
        store.close()


def test_store_unwritable_then_writable_acks_nothing_meanwhile_and_loses_nothing(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    """The store's files are made immutable (``chattr +i``: a real write failure, even for root), then
    writable again. The daemon must not ack while it cannot commit, and must recover by itself."""
    settings = make_settings(store_retry_s=0.05)
    stream = keys.agent_stream("claude")
    first = make_messages("claude", 50, prefix="first ")
    second = make_messages("claude", 50, prefix="second ")
    publish(redis_client, keys, first)
    db = settings.store_path
    frozen = [db, db.with_name(db.name + "-wal")]

    async def go() -> None:
        daemon = Daemon(settings)
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()

        async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
            deadline = loop.time() + timeout_s
            while not predicate():
                assert loop.time() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.02)

        await until(lambda: daemon.counters.recorded == 50, "first 50 recorded")
        if not chattr("+i", *frozen):
            daemon.stop.set()
            await task
            pytest.skip("chattr +i is not available on this filesystem")
        try:
            publish(redis_client, keys, second)
            await until(lambda: not daemon.counters.store_ok, "the daemon to notice the store is unwritable")
            await until(lambda: group_pending(redis_client, stream) == 50, "the second 50 read and held")
            retries = daemon.counters.store_retries
            await until(lambda: daemon.counters.store_retries >= retries + 3, "three more commit retries")
            assert daemon.counters.recorded == 50
            assert group_pending(redis_client, stream) == 50  # read, not acked
        finally:
            assert chattr("-i", *frozen)
        await until(lambda: daemon.counters.recorded == 100, "recovery by itself", timeout_s=30)
        await until(lambda: group_pending(redis_client, stream) == 0, "acks after the commit")
        assert daemon.counters.store_ok and daemon.counters.store_failures == 1
        daemon.stop.set()
        assert await task == 0

    asyncio.run(go())
    assert sorted(recorded_ids(settings)) == sorted(m.message_id for m in first + second)


def test_janitor_forgets_idle_consumers_that_hold_nothing_but_never_one_that_holds_entries(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    from daemon.redis_conn import async_client
    from daemon.streams import StreamOps

    stream = keys.agent_stream("claude")
    redis_client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    publish(redis_client, keys, make_messages("claude", 2))
    redis_client.xreadgroup(CONSUMER_GROUP, "holds-one", {stream: ">"}, count=1)  # never acks
    redis_client.xreadgroup(CONSUMER_GROUP, "exited-cleanly", {stream: ">"}, count=1)
    [[_, [(entry_id, _)]]] = redis_client.xreadgroup(CONSUMER_GROUP, "exited-cleanly", {stream: "0"})  # type: ignore[misc]
    redis_client.xack(stream, CONSUMER_GROUP, entry_id)

    async def forget() -> list[str]:
        client = async_client(make_settings())
        try:
            return await StreamOps(client, keys, "me").forget_idle_consumers(stream, idle_ms=0)
        finally:
            await client.aclose()

    from tests.helpers import wait_until

    wait_until(
        lambda: all(int(c["idle"]) > 0 for c in redis_client.xinfo_consumers(stream, CONSUMER_GROUP)),
        timeout_s=5,
        what="both consumers idle for at least a millisecond",
    )
    assert asyncio.run(forget()) == ["exited-cleanly"]
    names = {c["name"].decode() for c in redis_client.xinfo_consumers(stream, CONSUMER_GROUP)}
    assert names == {"holds-one"}
    assert group_pending(redis_client, stream) == 1


class _LengthModel:
    """A deterministic stand-in for a slow model: tier from the content's length. Real store, real Redis."""

    version = "model-length-1"

    def tag(self, message: object, context: object = ()) -> object:
        from schemas import Signals, Tags

        content: str = message.content  # type: ignore[attr-defined]
        return Tags(
            tier="E" if len(content) > 60 else "C",
            tier_rule="model.length",
            tier_confidence=0.5,
            signals=Signals(),
            novelty=0,
            emergence=0,
            tagger_version=self.version,
        )


def test_a_model_backend_adds_a_second_tag_version_after_ingest(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    settings = make_settings()
    messages = make_messages("claude", 12)
    publish(redis_client, keys, messages)
    daemon = Daemon(settings, model_backend=_LengthModel())  # type: ignore[arg-type]
    assert asyncio.run(daemon.run(burst=True)) == 0

    store = open_store(settings, create=False)
    try:
        for message in messages:
            versions = [t.tagger_version for t in store.tag_history(message.message_id)]
            assert versions[0].startswith("rules-") and versions[-1] == "model-length-1"
            record = store.get(message.message_id)
            assert record is not None and record.tags is not None
            assert record.tags.tagger_version == "model-length-1"  # the latest version is current
    finally:
        store.close()


@pytest.mark.parametrize(
    ("in_process", "processes"),
    [(False, 1), (False, 2), (True, 1)],
    ids=["child-process", "two-child-processes", "in-process"],
)
def test_tags_are_the_rules_taggers_whichever_process_tags(
    in_process: bool,
    processes: int,
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
    keys: StreamKeys,
) -> None:
    from daemon.tagging import RulesTagger

    # several conversations, so that two child processes each get some
    messages = [
        m
        for n, agent in enumerate(("gemini", "claude", "gemini", "claude"))
        for m in make_messages(agent, 15, conversation=f"child-tagging-{n}")
    ]
    publish(redis_client, keys, messages)
    settings = make_settings(tag_in_process=in_process, tag_processes=processes, batch_size=7)
    run_daemon(settings, burst=True)
    expected = RulesTagger(history=settings.tag_history).tag_batch(messages)
    store = open_store(settings, create=False)
    try:
        assert [store.get(m.message_id).tags for m in messages] == expected  # type: ignore[union-attr]
    finally:
        store.close()


def test_an_entry_dead_lettered_before_its_ack_was_lost_is_not_dead_lettered_twice(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    """The daemon died after committing a dead letter and before acking the entry: Redis delivers it
    again, and it must neither become a second dead letter nor reach the dead-letter stream twice."""
    from datetime import UTC, datetime

    from daemon.intake import RawEntry, dead_letter

    settings = make_settings(claim_idle_ms=1)
    stream = keys.agent_stream("claude")
    redis_client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    entry_id = redis_client.xadd(stream, {b"data": b"not json"}).decode()  # type: ignore[union-attr]
    redis_client.xreadgroup(CONSUMER_GROUP, "died-before-ack", {stream: ">"})
    store = open_store(settings)
    try:
        first = dead_letter(
            RawEntry(stream, entry_id, {b"data": b"not json"}),
            RejectReason.INVALID_JSON,
            "data is not valid JSON",
            datetime.now(UTC),
            "died-before-ack",
        )
        assert store.commit_batch([], [first]).dead_letters == 1
    finally:
        store.close()

    run_daemon(settings, burst=True)  # claims the entry, rejects it again, acks it

    assert counts(settings).dead_letters == 1
    assert redis_client.xlen(keys.deadletter) == 0  # the first attempt never got that far
    assert group_pending(redis_client, stream) == 0


def test_a_tagger_child_that_stops_answering_at_shutdown_costs_no_message(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, keys: StreamKeys
) -> None:
    """The child is stopped (SIGSTOP) while a batch waits for its tags, then the recorder is stopped: it
    returns, the child is killed, the batch is neither recorded nor acked, and the next run records it."""
    import contextlib
    import os
    import signal

    from daemon.metrics import Counters
    from daemon.recorder import Recorder
    from daemon.redis_conn import async_client
    from daemon.service import build_tagger, start_tagger
    from daemon.streams import StreamOps

    settings = make_settings(batch_size=10, shutdown_timeout_s=1.0)
    first = make_messages("claude", 10, conversation="stopped-child-1")
    later = make_messages("claude", 10, conversation="stopped-child-2")
    publish(redis_client, keys, first)
    tagger = build_tagger(settings)
    start_tagger(tagger)
    [pid] = tagger.pids()  # type: ignore[attr-defined]
    assert pid is not None
    store = open_store(settings, background_checkpoint=True)

    async def until(condition: Callable[[], bool], what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 30
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    async def go() -> None:
        client = async_client(settings, socket_timeout_s=settings.block_ms / 1000 + 10)
        try:
            counters = Counters()
            recorder = Recorder(settings, StreamOps(client, keys, settings.consumer), store, tagger, counters)
            stop = asyncio.Event()
            task = asyncio.create_task(recorder.run(stop))
            await until(lambda: counters.recorded == 10, "the first batch")
            os.kill(pid, signal.SIGSTOP)
            publish(redis_client, keys, later)
            await until(lambda: counters.entries_read == 20, "the second batch to be read")
            stop.set()
            await asyncio.wait_for(task, timeout=60)  # the shutdown does not wait out the 120 s for tags
        finally:
            await client.aclose()

    try:
        asyncio.run(go())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # killed and reaped by close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        store.close()
    assert counts(settings).recorded == 10
    assert group_pending(redis_client, keys.agent_stream("claude")) == 10  # not acked: nothing lost

    assert run_daemon(settings, burst=True) == 0
    store = open_store(settings, create=False)
    try:
        records = [store.get(m.message_id) for m in first + later]
        assert all(r is not None and r.tags is not None for r in records)
    finally:
        store.close()
    assert group_pending(redis_client, keys.agent_stream("claude")) == 0
