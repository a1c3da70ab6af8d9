"""Ingest benchmark: the daemon end to end against a bare Redis consumer, plus latency at a fixed load.

    python bench/ingest.py                       # 100,000 messages, tagger none and rules, 10 s latency run
    python bench/ingest.py --messages 20000 --latency-seconds 5 --tagger none     # a quick look
    python bench/ingest.py --strict              # exit 1 when a goal is missed (for CI)

One run, one private redis-server on a free port (AOF everysec, like the embedded server; never the
machine's 6379), one temporary directory, both removed at the end. Phases, each on a fresh key prefix:

1. *bare*: N messages pre-published, then a redis-py (+hiredis) consumer that only does XREADGROUP COUNT
   ``batch`` + pipelined XACK, timed until all N are consumed. The ceiling for any consumer in Python.
2. *daemon*, once per tagger: the same N messages pre-published, then the real ``Recorder`` (real
   ``StreamOps``, ``SQLiteStore`` with ``synchronous=FULL``, the tagger ``build_tagger`` makes) run with
   ``burst=True``, timed until it returns: every entry validated, tagged, committed durably and acked. The
   store must then hold exactly N records (no duplicates, no dead letters) and no entry may be pending.
3. *latency*: the daemon runs normally (blocking reads) while a separate process publishes at a fixed
   ``--rate`` for ``--latency-seconds``; each message's ``created_at`` is its publish time. Reported:
   publish -> ``committed_at`` (the store's column), publish -> commit returned (durable, measured by
   wrapping ``commit_batch``) and publish -> XACK (wrapping ``StreamOps.ack``). ``committed_at`` is stamped
   when the transaction starts, so it leaves out the insert and fsync; the durable figure includes them.

Message content is sentences drawn from the hand-labelled tagging set (tests/data/tagging), so the rules
tagger sees realistic text; lengths are log-normal around ``--content-chars``. Messages belong to
conversations of about ``--conversation-length`` messages, interleaved, each replying to the previous one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.utils
from pydantic import SecretStr
from ulid import ULID

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from daemon.config import Settings  # noqa: E402
from daemon.logs import configure_logging  # noqa: E402
from daemon.metrics import Counters  # noqa: E402
from daemon.recorder import Recorder  # noqa: E402
from daemon.redis_conn import async_client  # noqa: E402
from daemon.redis_server import RedisServer, free_port  # noqa: E402
from daemon.service import build_tagger, start_tagger, tune_process_for_ingest  # noqa: E402
from daemon.store import open_store  # noqa: E402
from daemon.streams import StreamOps  # noqa: E402
from schemas import CONSUMER_GROUP, DATA_FIELD, AgentMessage, StreamKeys  # noqa: E402

# -- goals (from the issues) ------------------------------------------------------------------------------
GOAL_RATE_NONE = 20_000.0  #: msg/s end to end, tagger none
GOAL_RATIO = 0.1  #: daemon (tagger none) / bare consumer
GOAL_RATE_RULES = 10_000.0  #: msg/s end to end, rules tagger on
GOAL_P99_MS = 50.0  #: publish-to-commit p99 at the fixed offered load

AGENT_NAMES = ("claude", "gemini", "codex", "maya", "grok", "llama", "mistral", "qwen")
CORPUS_FILES = (ROOT / "tests/data/tagging/dev.jsonl", ROOT / "tests/data/tagging/heldout.jsonl")
_FALLBACK_TEXT = (
    "We need to decide how the daemon acknowledges entries after a crash. I would commit the batch first "
    "and ack only after the transaction is durable, so a restart sees the entries again. Does the store "
    "deduplicate on message_id? Yes: a unique key turns a second delivery into a counted redelivery. "
    "The benchmark shows the commit dominates at small batches because every transaction pays one fsync. "
    "Could we batch more aggressively when the backlog is large? That trades latency for throughput. "
    "Actually, I was wrong about the trimming: MAXLEN can drop entries nobody has recorded yet. "
    "Let me check the numbers again before we change the default batch size. "
    "A cheaper option is to validate in the worker thread and keep the event loop free for reads."
)


# -- message generation -------------------------------------------------------------------------------------


def load_sentences() -> list[str]:
    """Sentences from the labelled tagging set (realistic agent/human text), or a built-in paragraph."""
    texts: list[str] = []
    for path in CORPUS_FILES:
        try:
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    texts.append(str(json.loads(line).get("content", "")))
        except (OSError, ValueError):
            continue
    if not texts:
        texts = [_FALLBACK_TEXT]
    sentences = [s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if s.strip()]
    return sentences or [_FALLBACK_TEXT]


def make_contents(count: int, median_chars: int, seed: int) -> list[str]:
    """``count`` texts whose lengths are log-normal around ``median_chars`` (sigma 0.6, 40..20,000)."""
    rng = random.Random(seed)
    sentences = load_sentences()
    out = []
    for _ in range(count):
        target = int(min(20_000, max(40, rng.lognormvariate(0, 0.6) * median_chars)))
        parts: list[str] = []
        size = 0
        while size < target:
            s = rng.choice(sentences)
            parts.append(s)
            size += len(s) + 1
        out.append(" ".join(parts))
    return out


@dataclass
class Plan:
    """What gets published: one entry per message, as (agent, conversation, content) in publish order."""

    agents: list[str]
    rows: list[tuple[str, str, str]]


def make_plan(count: int, n_agents: int, median_chars: int, conv_len: int, seed: int) -> Plan:
    """Conversations of ``conv_len`` messages, interleaved (many active at once), agents taking turns."""
    agents = list(AGENT_NAMES[:n_agents])
    contents = make_contents(count, median_chars, seed)
    n_conv = max(1, count // max(1, conv_len))
    rng = random.Random(seed + 1)
    conv_tag = uuid.uuid4().hex[:8]
    rows = []
    for i, content in enumerate(contents):
        conv = rng.randrange(n_conv)
        agent = agents[(conv + i) % len(agents)]
        rows.append((agent, f"bench-{conv_tag}-{conv}", content))
    return Plan(agents, rows)


def wire(
    agent: str, conversation: str, content: str, reply_to: str | None, created_at: datetime
) -> tuple[str, bytes]:
    """(message_id, the ``data`` field) of a valid schema-1 envelope, serialised the way publishers do."""
    message_id = str(ULID())  # what agents.publisher.new_message_id makes: time-ordered index inserts
    data = orjson.dumps(
        {
            "message_id": message_id,
            "agent": agent,
            "role": "agent",
            "conversation_id": conversation,
            "reply_to": reply_to,
            "content": content,
            "attachments": [],
            "created_at": created_at.isoformat(),
            "sender_tags": None,
            "metadata": {"bench": True},
            "schema_version": 1,
        }
    )
    return message_id, data


def publish_backlog(client: redis.Redis, keys: StreamKeys, plan: Plan) -> list[str]:
    """XADD every planned message (pipelined, 1,000 per round trip); returns the stream names."""
    last_in_conv: dict[str, str] = {}
    # created_at one millisecond apart, ending now: conversation history has a real order.
    base_us = int(time.time() * 1e6) - len(plan.rows) * 1000
    pipe = client.pipeline(transaction=False)
    for i, (agent, conv, content) in enumerate(plan.rows, start=1):
        created = datetime.fromtimestamp((base_us + i * 1000) / 1e6, UTC)
        mid, data = wire(agent, conv, content, last_in_conv.get(conv), created)
        last_in_conv[conv] = mid
        pipe.xadd(keys.agent_stream(agent), {DATA_FIELD: data})
        if i % 1000 == 0:
            pipe.execute()
    pipe.execute()
    return [keys.agent_stream(a) for a in plan.agents]


def delete_prefix(client: redis.Redis, keys: StreamKeys) -> None:
    """Free the server's memory between phases."""
    names = list(client.scan_iter(match=f"{keys.prefix}:*", count=1000))
    for i in range(0, len(names), 500):
        client.delete(*names[i : i + 500])


# -- phase 1: bare consumer ---------------------------------------------------------------------------------


def bare_consumer(client: redis.Redis, streams: Sequence[str], expected: int, batch: int) -> float:
    """XREADGROUP + XACK in batches until ``expected`` entries were consumed; returns the seconds taken."""
    for s in streams:
        client.xgroup_create(s, CONSUMER_GROUP, id="0", mkstream=True)
    wanted: dict[Any, Any] = dict.fromkeys(streams, ">")
    got = 0
    started = time.perf_counter()
    while got < expected:
        reply = client.xreadgroup(CONSUMER_GROUP, "bare", wanted, count=batch, block=1000)
        if not reply:
            raise SystemExit(f"bare consumer: nothing more to read after {got} of {expected} entries")
        items = reply.items() if isinstance(reply, dict) else reply
        pipe = client.pipeline(transaction=False)
        for stream, entries in items:
            ids: list[Any] = [e[0] for e in entries]
            got += len(ids)
            pipe.xack(stream, CONSUMER_GROUP, *ids)
        pipe.execute()
    elapsed = time.perf_counter() - started
    pending = sum(int(client.xpending(s, CONSUMER_GROUP)["pending"]) for s in streams)
    if got != expected or pending:
        raise SystemExit(f"bare consumer: consumed {got} of {expected}, {pending} left pending")
    return elapsed


# -- phase 2 and 3: the daemon -----------------------------------------------------------------------------


@dataclass
class DaemonRun:
    """What one daemon phase measured."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    redis_cpu_seconds: float = 0.0
    recorded: int = 0
    batches: int = 0


def settings_for(args: argparse.Namespace, data_dir: Path, url: str, prefix: str, tagger: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        redis_url=SecretStr(url),
        key_prefix=prefix,
        tagger=tagger,  # type: ignore[arg-type]
        batch_size=args.batch_size,
        log_level="warning",
        consumer_name=f"bench-{os.getpid()}",
        tag_in_process=args.tag_in_process,
        tag_processes=args.tag_processes,
    )


def proc_cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process from /proc (0 where unavailable)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def verify(store: Any, client: redis.Redis, streams: Sequence[str], expected: int, what: str) -> None:
    """Exactly ``expected`` records, nothing duplicated, dead-lettered or left pending: else abort."""
    counts = store.counts()
    pending = 0
    for s in streams:
        with contextlib.suppress(redis.ResponseError):  # no group on it: nothing pending there
            pending += int(client.xpending(s, CONSUMER_GROUP)["pending"])
    problems = []
    if counts.recorded != expected:
        problems.append(f"{counts.recorded} records, expected {expected}")
    if counts.duplicates or counts.redelivered or counts.dead_letters:
        problems.append(
            f"duplicates={counts.duplicates} redelivered={counts.redelivered} "
            f"dead_letters={counts.dead_letters}"
        )
    if pending:
        problems.append(f"{pending} entries still pending (not acked)")
    if problems:
        raise SystemExit(f"{what}: LOST OR WRONG: " + "; ".join(problems))


async def daemon_burst(settings: Settings, expected: int, redis_pid: int | None) -> tuple[DaemonRun, Any]:
    """Run the real Recorder over the backlog with ``burst=True``; returns the timing and the open store."""
    store = open_store(settings, background_checkpoint=True)  # as the daemon opens it
    store.check_writable()
    client = async_client(settings, socket_timeout_s=settings.block_ms / 1000 + 10)
    try:
        ops = StreamOps(client, StreamKeys(settings.key_prefix), settings.consumer)
        tagger = build_tagger(settings)
        start_tagger(tagger)  # as the daemon does before it reports ready
        recorder = Recorder(settings, ops, store, tagger, Counters())
        stop = asyncio.Event()
        cpu0, rcpu0 = time.process_time(), proc_cpu_seconds(redis_pid)
        t0 = time.perf_counter()
        await recorder.run(stop, burst=True)
        run = DaemonRun(
            seconds=time.perf_counter() - t0,
            cpu_seconds=time.process_time() - cpu0,
            redis_cpu_seconds=proc_cpu_seconds(redis_pid) - rcpu0,
            recorded=recorder.counters.recorded,
            batches=recorder.counters.batches,
        )
    finally:
        await client.aclose()
    return run, store


def latency_publisher(
    url: str,
    prefix: str,
    agents: list[str],
    rate: float,
    seconds: float,
    median_chars: int,
    seed: int,
    out: Any,
) -> None:
    """Separate process: publish at ``rate`` msg/s for ``seconds``; ``created_at`` = the moment of XADD.

    Sends (published, worst lag behind schedule in ms) through ``out``."""
    client = redis.Redis.from_url(url)
    keys = StreamKeys(prefix)
    total = int(rate * seconds)
    plan = make_plan(total, len(agents), median_chars, 20, seed)
    last_in_conv: dict[str, str] = {}
    interval = 1.0 / rate
    worst_lag = 0.0
    start = time.perf_counter() + 0.05
    for i, (agent, conv, content) in enumerate(plan.rows):
        due = start + i * interval
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        else:
            worst_lag = max(worst_lag, now - due)
        mid, data = wire(agent, conv, content, last_in_conv.get(conv), datetime.now(UTC))
        last_in_conv[conv] = mid
        client.xadd(keys.agent_stream(agent), {DATA_FIELD: data})
    client.close()
    out.send((total, worst_lag * 1000))
    out.close()


@dataclass
class Latency:
    published: int = 0
    measured: int = 0
    publisher_worst_lag_ms: float = 0.0
    committed_at: dict[str, float] = field(default_factory=dict)  #: p50/p99/max ms
    durable: dict[str, float] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)


def percentiles(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    values_ms = sorted(values_ms)

    def pick(q: float) -> float:
        return values_ms[min(len(values_ms) - 1, int(q * len(values_ms)))]

    return {"p50": pick(0.50), "p99": pick(0.99), "max": values_ms[-1], "mean": statistics.fmean(values_ms)}


async def daemon_latency(
    args: argparse.Namespace, settings: Settings, agents: list[str], client: redis.Redis
) -> Latency:
    """The daemon in normal mode while another process publishes at a fixed rate."""
    keys = StreamKeys(settings.key_prefix)
    streams = [keys.agent_stream(a) for a in agents]
    store = open_store(settings, background_checkpoint=True)  # as the daemon opens it
    store.check_writable()
    aclient = async_client(settings, socket_timeout_s=settings.block_ms / 1000 + 10)
    ops = StreamOps(aclient, keys, settings.consumer)
    for s in streams:  # the streams exist before the daemon starts: no wait for discovery
        await ops.ensure_group(s)

    durable_at: dict[str, float] = {}
    acked_at: dict[tuple[str, str], float] = {}
    commit_batch: Callable[..., Any] = store.commit_batch
    ack = ops.ack

    def timed_commit(records: Any, letters: Any, tag_rows: Any = None) -> Any:
        result = commit_batch(records, letters, tag_rows)
        now = time.time()
        for mid in result.inserted:
            durable_at[mid] = now
        return result

    async def timed_ack(acks: dict[str, list[str]]) -> None:
        await ack(acks)
        now = time.time()
        for stream, ids in acks.items():
            for entry_id in ids:
                acked_at[(stream, entry_id)] = now

    store.commit_batch = timed_commit  # type: ignore[method-assign,assignment]
    ops.ack = timed_ack  # type: ignore[method-assign]
    tagger = build_tagger(settings)
    start_tagger(tagger)
    recorder = Recorder(settings, ops, store, tagger, Counters())
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    proc: multiprocessing.process.BaseProcess | None = None
    result = Latency()
    try:
        deadline = time.monotonic() + 10
        while not recorder.streams and time.monotonic() < deadline:  # noqa: ASYNC110 (polling its state)
            await asyncio.sleep(0.01)
        ctx = multiprocessing.get_context("spawn")
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=latency_publisher,
            args=(
                settings.redis_url.get_secret_value() if settings.redis_url else "",
                settings.key_prefix,
                agents,
                args.rate,
                args.latency_seconds,
                args.content_chars,
                args.seed + 7,
                send,
            ),
            daemon=True,
        )
        proc.start()
        send.close()
        published, result.publisher_worst_lag_ms = await asyncio.to_thread(recv.recv)
        await asyncio.to_thread(proc.join, 30)
        result.published = published
        deadline = time.monotonic() + 60
        while recorder.counters.recorded < published and time.monotonic() < deadline:
            if task.done():
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
        await aclient.aclose()
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(5)
    store.commit_batch = commit_batch  # type: ignore[method-assign]
    try:
        verify(store, client, streams, result.published, "latency run")
        rows = store.read("SELECT message_id, stream, entry_id, created_us, committed_us FROM records")
    finally:
        store.close()
    first_us = min(r[3] for r in rows)
    warm_us = first_us + int(args.latency_warmup * 1e6)
    col, dur, ack_ms = [], [], []
    for mid, stream, entry_id, created_us, committed_us in rows:
        if created_us < warm_us:
            continue
        col.append((committed_us - created_us) / 1000)
        dur.append(durable_at[mid] * 1000 - created_us / 1000)
        ack_ms.append(acked_at[(stream, entry_id)] * 1000 - created_us / 1000)
    result.measured = len(col)
    result.committed_at = percentiles(col)
    result.durable = percentiles(dur)
    result.acked = percentiles(ack_ms)
    return result


# -- main ---------------------------------------------------------------------------------------------------


def rules_available() -> bool:
    try:
        from daemon.tagging import make_tagger  # noqa: F401
    except ImportError:
        return False
    return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Settings.model_fields
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=100_000, help="backlog size per throughput phase")
    p.add_argument(
        "--agents",
        type=int,
        default=3,
        choices=range(1, len(AGENT_NAMES) + 1),
        metavar="1..8",
        help="agent streams (default 3)",
    )
    p.add_argument("--content-chars", type=int, default=600, help="median content length in characters")
    p.add_argument("--conversation-length", type=int, default=20, help="messages per conversation (about)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=int(defaults["batch_size"].default),
        help="XREADGROUP COUNT, for both consumers (default: the daemon's default)",
    )
    p.add_argument(
        "--tagger",
        choices=("none", "rules", "both"),
        default=None,
        help="throughput phases to run (default: both if the rules tagger imports, else none)",
    )
    p.add_argument("--rate", type=float, default=1000.0, help="offered load of the latency phase, msg/s")
    p.add_argument(
        "--latency-seconds", type=float, default=10.0, help="length of the latency phase (0: skip)"
    )
    p.add_argument("--latency-warmup", type=float, default=1.0, help="seconds at its start left out")
    p.add_argument(
        "--latency-tagger",
        choices=("none", "rules"),
        default=None,
        help="tagger during the latency phase (default: rules if available, the daemon's default)",
    )
    p.add_argument(
        "--tag-in-process",
        action="store_true",
        help="tag in the daemon's own process (default: the daemon's default, a child process)",
    )
    p.add_argument(
        "--tag-processes",
        type=int,
        default=1,
        choices=range(1, 9),
        metavar="1..8",
        help="child processes the rules tagger runs in (ACED_TAG_PROCESSES; default 1)",
    )
    p.add_argument("--skip-bare", action="store_true", help="skip the bare consumer (no ratio then)")
    p.add_argument("--work-dir", type=Path, default=None, help="where the temporary directory goes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = p.parse_args(argv)
    has_rules = rules_available()
    if args.tagger is None:
        args.tagger = "both" if has_rules else "none"
    if args.latency_tagger is None:
        args.latency_tagger = "rules" if has_rules else "none"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("warning", "console")
    taggers = ["none", "rules"] if args.tagger == "both" else [args.tagger]
    tmp = Path(tempfile.mkdtemp(prefix="aced-bench-", dir=args.work_dir))
    server = RedisServer(directory=tmp / "redis", port=free_port())
    figures: dict[str, Any] = {
        "messages": args.messages,
        "agents": args.agents,
        "batch_size": args.batch_size,
        "content_chars_median": args.content_chars,
        "tagging": "in process" if args.tag_in_process else f"{args.tag_processes} child process(es)",
        "hiredis": bool(redis.utils.HIREDIS_AVAILABLE),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
    }
    try:
        server.start()
        client = redis.Redis.from_url(server.url)
        print(
            f"aced ingest benchmark: {args.messages:,} messages, {args.agents} agents, "
            f"batch {args.batch_size}, "
            f"content median ~{args.content_chars} chars; hiredis={figures['hiredis']}; "
            f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; redis pid {server.pid}, data in {tmp}",
            flush=True,
        )
        t = time.perf_counter()
        plan = make_plan(args.messages, args.agents, args.content_chars, args.conversation_length, args.seed)
        sample = wire(*plan.rows[0], None, datetime.now(UTC))[1]
        AgentMessage.model_validate_json(sample)  # the generator writes valid envelopes
        # The same collector settings `aced run` uses (after the plan exists, so it is frozen out too).
        tune_process_for_ingest()
        sizes = sorted(len(r[2]) for r in plan.rows)
        print(
            f"  generated in {time.perf_counter() - t:.1f}s; content chars p50 {sizes[len(sizes) // 2]}, "
            f"p90 {sizes[int(len(sizes) * 0.9)]}, max {sizes[-1]}; "
            f"{len({r[1] for r in plan.rows}):,} conversations",
            flush=True,
        )

        if not args.skip_bare:
            keys = StreamKeys("bare" + uuid.uuid4().hex[:6])
            t = time.perf_counter()
            streams = publish_backlog(client, keys, plan)
            pub_s = time.perf_counter() - t
            secs = bare_consumer(client, streams, args.messages, args.batch_size)
            figures["publish_rate"] = args.messages / pub_s
            figures["bare_rate"] = args.messages / secs
            print(
                f"  published {args.messages / pub_s:,.0f} msg/s (pipelined XADD); "
                f"bare consumer {figures['bare_rate']:,.0f} msg/s ({secs:.2f}s)",
                flush=True,
            )
            delete_prefix(client, keys)

        for tagger in taggers:
            prefix = "d" + tagger[:1] + uuid.uuid4().hex[:6]
            keys = StreamKeys(prefix)
            streams = publish_backlog(client, keys, plan)
            data_dir = tmp / f"data-{prefix}"
            settings = settings_for(args, data_dir, server.url, prefix, tagger)
            run, store = asyncio.run(daemon_burst(settings, args.messages, server.pid))
            try:
                verify(store, client, streams, args.messages, f"daemon (tagger {tagger})")
            finally:
                store.close()
            rate = args.messages / run.seconds
            figures[f"daemon_rate_{tagger}"] = rate
            figures[f"daemon_{tagger}"] = {
                "seconds": run.seconds,
                "cpu_s_per_1k": run.cpu_seconds / args.messages * 1000,
                "redis_cpu_s_per_1k": run.redis_cpu_seconds / args.messages * 1000,
                "batches": run.batches,
                "cpu_share_of_one_core": run.cpu_seconds / run.seconds,
                "store_mib": sum(f.stat().st_size for f in data_dir.glob("aced.sqlite3*")) / 2**20,
            }
            print(
                f"  daemon, tagger {tagger}: {rate:,.0f} msg/s ({run.seconds:.2f}s, {run.batches} batches; "
                f"daemon CPU {run.cpu_seconds:.1f}s = {run.cpu_seconds / run.seconds:.0%} of one core, "
                f"redis CPU {run.redis_cpu_seconds:.1f}s); {args.messages:,} records verified",
                flush=True,
            )
            delete_prefix(client, keys)
            shutil.rmtree(data_dir, ignore_errors=True)

        if args.latency_seconds > 0:
            prefix = "lat" + uuid.uuid4().hex[:6]
            data_dir = tmp / f"data-{prefix}"
            settings = settings_for(args, data_dir, server.url, prefix, args.latency_tagger)
            lat = asyncio.run(daemon_latency(args, settings, list(AGENT_NAMES[: args.agents]), client))
            figures["latency"] = {
                "rate": args.rate,
                "seconds": args.latency_seconds,
                "tagger": args.latency_tagger,
                "published": lat.published,
                "measured": lat.measured,
                "publisher_worst_lag_ms": lat.publisher_worst_lag_ms,
                "committed_at_ms": lat.committed_at,
                "durable_ms": lat.durable,
                "acked_ms": lat.acked,
            }
            print(
                f"  latency at {args.rate:,.0f} msg/s for {args.latency_seconds:g}s (tagger "
                f"{args.latency_tagger}): {lat.published:,} published, all recorded; publisher's worst lag "
                f"behind schedule {lat.publisher_worst_lag_ms:.1f} ms",
                flush=True,
            )
            delete_prefix(client, StreamKeys(prefix))
        client.close()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    return summary(args, taggers, figures)


def summary(args: argparse.Namespace, taggers: list[str], f: dict[str, Any]) -> int:
    checks: list[tuple[str, bool]] = []
    lines = ["", "=" * 78, "aced ingest benchmark summary", "=" * 78]
    lines.append(
        f"messages {f['messages']:,} | agents {f['agents']} | batch {f['batch_size']} | "
        f"content median ~{f['content_chars_median']} chars | tagging {f['tagging']} | "
        f"hiredis {f['hiredis']} | "
        f"{f['cpus']} CPUs, load at start {f['loadavg_at_start'][0]:.2f}"
    )
    bare = f.get("bare_rate")
    if bare:
        lines.append(f"bare consumer (XREADGROUP+XACK)     {bare:>10,.0f} msg/s")
    for tagger in taggers:
        rate = f[f"daemon_rate_{tagger}"]
        d = f[f"daemon_{tagger}"]
        cpu_us = d["cpu_s_per_1k"] * 1000
        lines.append(
            f"daemon end to end, tagger {tagger:<6}    {rate:>10,.0f} msg/s   "
            f"(daemon CPU {cpu_us:.0f} us/msg -> at most {1e6 / cpu_us:,.0f} msg/s per busy core, "
            f"it got {d['cpu_share_of_one_core']:.0%} of one; "
            f"redis {d['redis_cpu_s_per_1k'] * 1000:.0f} us/msg)"
        )
    if "daemon_rate_none" in f:
        checks.append(
            (f"daemon (tagger none) >= {GOAL_RATE_NONE:,.0f} msg/s", f["daemon_rate_none"] >= GOAL_RATE_NONE)
        )
        if bare:
            ratio = f["daemon_rate_none"] / bare
            f["ratio"] = ratio
            lines.append(f"ratio daemon(none) / bare           {ratio:>10.3f}")
            checks.append((f"ratio >= {GOAL_RATIO}", ratio >= GOAL_RATIO))
    if "daemon_rate_rules" in f:
        checks.append(
            (
                f"daemon (tagger rules) >= {GOAL_RATE_RULES:,.0f} msg/s",
                f["daemon_rate_rules"] >= GOAL_RATE_RULES,
            )
        )
        if bare and "daemon_rate_none" not in f:
            lines.append(f"ratio daemon(rules) / bare          {f['daemon_rate_rules'] / bare:>10.3f}")
    lat = f.get("latency")
    if lat:
        lines.append(
            f"latency at {lat['rate']:,.0f} msg/s, {lat['seconds']:g}s, tagger {lat['tagger']} "
            f"({lat['measured']:,} messages after warm-up):"
        )
        for label, key in (
            ("publish -> committed_at (store)", "committed_at_ms"),
            ("publish -> commit durable", "durable_ms"),
            ("publish -> XACK", "acked_ms"),
        ):
            q = lat[key]
            lines.append(
                f"  {label:<33} p50 {q['p50']:7.1f} ms   p99 {q['p99']:7.1f} ms   max {q['max']:7.1f} ms"
            )
        checks.append(
            (f"p99 publish->committed_at <= {GOAL_P99_MS:g} ms", lat["committed_at_ms"]["p99"] <= GOAL_P99_MS)
        )
        checks.append(
            (
                f"p99 publish->durable commit <= {GOAL_P99_MS:g} ms (strict)",
                lat["durable_ms"]["p99"] <= GOAL_P99_MS,
            )
        )
    load_end = os.getloadavg()[0]
    lines.append(
        f"load average now {load_end:.2f} on {f['cpus']} CPUs"
        + (
            "  (machine oversubscribed: rates and latencies are pessimistic)"
            if load_end > (f["cpus"] or 1)
            else ""
        )
    )
    lines.append("-" * 78)
    for name, ok in checks:
        lines.append(f"{'PASS' if ok else 'FAIL'}  {name}")
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({**f, "checks": {n: ok for n, ok in checks}}, indent=2, default=str))
    return 1 if args.strict and not all(ok for _, ok in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
