"""Throughput of the rules tagger on the daemon's path, in batches of 500, in one process.

    python bench/tagging_speed.py [--messages 10000] [--batch 500] [--seed 0] [--repeat 3]

Two figures: ``RulesTagger.tag_rows`` (what the daemon's tagger process runs: message fields in, tags out
in the store's row form with the evidence as JSON text) and ``RulesTagger.tag_batch`` (validated ``Tags``
models: ``aced tag``, ``aced retag`` and the in-process tagger). Both run the compiled core
(``daemon/tagging/_core.pyx``) where it was built; ``tag_rows`` is also timed on the pure-Python steps, which
give the same tags, and the speed-up between the two is printed.

10,000 messages (about 600 characters median) are generated deterministically with a seeded RNG from the
labelled evaluation texts plus filler sentences, spread over multi-turn conversations and interleaved as
a stream would deliver them. The figure is messages per second in one process (best of --repeat runs,
time.perf_counter). Baseline in the same run: a bare loop over the same messages that only lower-cases
and tokenises them the tagger's way; the ratio says how many times that minimum cost the whole tagging
costs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.tagging import RulesTagger
from daemon.tagging.rules import message_fields
from daemon.tagging.text import _WORD_RE, ascii_words
from schemas import AgentMessage

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "tagging"
AGENTS = ("claude", "gemini", "maya")
FILLER = (
    "I checked the logs from last night and nothing else looks off.",
    "The numbers below are from the A100 node, averaged over three runs.",
    "Let me know if you see anything I missed in the diff.",
    "For context, this follows up on what we discussed on Tuesday.",
    "I'll keep an eye on the dashboards while the run continues.",
    "The config is in runs/2026-11/config.json if you want to reproduce it.",
)


def make_messages(n: int, seed: int) -> list[AgentMessage]:
    """``n`` messages over multi-turn conversations (5 to 40 messages each), interleaved, deterministic."""
    rng = random.Random(seed)
    texts = [
        json.loads(line)["content"]
        for name in ("dev.jsonl", "heldout.jsonl")
        for line in (DATA / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    conversations: list[list[str]] = []
    total = 0
    while total < n:
        size = min(rng.randint(5, 40), n - total)
        turns = []
        for _ in range(size):
            parts = rng.sample(texts, rng.choice((2, 3, 3, 4, 4)))
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(FILLER))
            turns.append(" ".join(parts))
        conversations.append(turns)
        total += size
    # Interleave conversations the way streams deliver them: pick a conversation, emit its next turn.
    cursors = [0] * len(conversations)
    live = list(range(len(conversations)))
    start = datetime(2026, 11, 1, tzinfo=UTC)
    out: list[AgentMessage] = []
    while live:
        i = rng.choice(live)
        turn = cursors[i]
        cursors[i] += 1
        if cursors[i] == len(conversations[i]):
            live.remove(i)
        out.append(
            AgentMessage(
                message_id=f"bench-{len(out):06d}",
                agent=AGENTS[(i + turn) % len(AGENTS)],
                role="agent",
                conversation_id=f"bench-conv-{i:04d}",
                content=conversations[i][turn],
                created_at=start + timedelta(seconds=len(out)),
            )
        )
    return out


def time_tagger(messages: list[AgentMessage], batch: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to tag ``messages`` into Tags with a fresh RulesTagger."""
    tagger = RulesTagger(history=20, core="auto")
    c0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(0, len(messages), batch):
        tags = tagger.tag_batch(messages[i : i + batch])
        if any(t is None for t in tags):
            raise SystemExit("the tagger returned None on benchmark input")
    return time.perf_counter() - t0, time.process_time() - c0


def time_rows(messages: list[AgentMessage], batch: int, core: str = "auto") -> tuple[float, float]:
    """(wall seconds, CPU seconds) to tag ``messages`` into store rows, as the daemon's tagger process
    does (the fields tuple per message is what the daemon sends it; building it is timed too)."""
    tagger = RulesTagger(history=20, core=core)  # type: ignore[arg-type]
    c0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(0, len(messages), batch):
        rows = tagger.tag_rows([message_fields(m) for m in messages[i : i + batch]])
        if any(isinstance(r, str) for r in rows):
            raise SystemExit("the tagger failed on benchmark input")
    return time.perf_counter() - t0, time.process_time() - c0


def time_baseline(messages: list[AgentMessage]) -> float:
    """Seconds for a bare loop that only lower-cases and tokenises the same messages, the way the tagger
    does (its ASCII fast path where it applies, else its word regex)."""
    findall = _WORD_RE.findall
    t0 = time.perf_counter()
    for message in messages:
        lower = message.content.lower()
        if lower.isascii() and "''" not in lower:
            ascii_words(lower)
        else:
            findall(lower)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best one is reported")
    args = parser.parse_args(argv)
    messages = make_messages(args.messages, args.seed)
    lengths = [len(m.content) for m in messages]
    conversations = len({m.conversation_id for m in messages})
    compiled = RulesTagger(core="auto").compiled
    row_runs = [time_rows(messages, args.batch) for _ in range(args.repeat)]
    python_runs = [time_rows(messages, args.batch, "python") for _ in range(args.repeat)] if compiled else []
    runs = [time_tagger(messages, args.batch) for _ in range(args.repeat)]
    rows_s = min(wall for wall, _ in row_runs)
    tag_s = min(wall for wall, _ in runs)
    cpu_s = min(cpu for _, cpu in runs)
    base_s = min(time_baseline(messages) for _ in range(args.repeat))
    n = len(messages)
    print(
        f"messages {n}  conversations {conversations}  median chars {statistics.median(lengths):.0f}  "
        f"max chars {max(lengths)}  batch {args.batch}"
    )
    print(f"load average  {os.getloadavg()[0]:10.2f} on {os.cpu_count()} CPUs (other processes share them)")
    core = "compiled core" if compiled else "Python steps: the compiled core was not built"
    print(f"tag_rows      {n / rows_s:10.0f} messages/s  ({rows_s / n * 1e6:.1f} us/message, daemon's path)")
    print(f"              ({core})")
    if python_runs:
        py_s = min(wall for wall, _ in python_runs)
        print(f"  Python      {n / py_s:10.0f} messages/s  ({py_s / n * 1e6:.1f} us/message, no core)")
        print(f"  speed-up   {py_s / rows_s:10.2f}x the Python steps")
    print(f"tag_batch     {n / tag_s:10.0f} messages/s  ({tag_s / n * 1e6:.1f} us/message, validated Tags)")
    print(f"              {n / cpu_s:10.0f} messages/s  per CPU second (tag_batch, process_time)")
    print(f"baseline      {n / base_s:10.0f} messages/s  (lower-case + tokenise only)")
    print(f"ratio        {rows_s / base_s:10.2f}x the baseline (tag_rows), {tag_s / base_s:.2f}x (tag_batch)")
    print(f"goal >= 20000 messages/s on the daemon's path: {'met' if n / rows_s >= 20_000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
