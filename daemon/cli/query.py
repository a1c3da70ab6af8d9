"""``aced query``: find records by tags, signals, agents, time and full text; aggregates; decisions."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from daemon.cli._common import CliError, add_json_flag, check_time_range, print_json, settings_from

if TYPE_CHECKING:
    from daemon.analytics import Decision
    from daemon.config import Settings
    from daemon.store import SQLiteStore
    from schemas import Record


def parse_time(text: str) -> datetime:
    """An ``--since``/``--until`` value: ISO 8601 date or date-time; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _score_range(text: str) -> tuple[int | None, int | None]:
    """``40..80``, ``40..`` or ``..80`` (inclusive), or a single ``60`` meaning ``60..``."""
    low_text, sep, high_text = text.partition("..")
    try:
        low = int(low_text) if low_text.strip() else None
        high = int(high_text) if sep and high_text.strip() else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a range like 40..80: {text!r}") from None
    for value in (low, high):
        if value is not None and not 0 <= value <= 100:
            raise argparse.ArgumentTypeError(f"scores are 0..100: {text!r}")
    if low is not None and high is not None and low > high:
        raise argparse.ArgumentTypeError(f"the low end is above the high end: {text!r}")
    return low, high


def open_readable_store(settings: Settings) -> SQLiteStore:
    """The store for a reading command; a missing store is an error (exit 1), never created."""
    from daemon.store import StoreError, open_store

    try:
        return open_store(settings, create=False)
    except StoreError as exc:
        raise CliError(str(exc), exit_code=1) from None


def register(sub: Any) -> None:
    """Add ``aced query``."""
    parser = sub.add_parser(
        "query",
        help="find records by tier, signals, novelty, agent, time, full text; --stats; --decisions",
        description="Filters combine with AND and use each record's current tags. See docs/querying.md.",
    )
    f = parser.add_argument_group("filters")
    f.add_argument("--tier", action="append", choices=("A", "C", "E"), help="ACE tier (repeatable: any of)")
    f.add_argument("--novelty", type=_score_range, metavar="LO..HI", help="novelty score range, inclusive")
    f.add_argument("--emergence", type=_score_range, metavar="LO..HI", help="emergence range, inclusive")
    f.add_argument(
        "--signal",
        action="append",
        default=[],
        metavar="NAME OP N",
        help="signal condition, e.g. error_correction>60 (repeatable: all of)",
    )
    f.add_argument("--agent", action="append", help="agent name (repeatable: any of)")
    f.add_argument("--conversation", action="append", help="conversation id (repeatable: any of)")
    f.add_argument("--role", action="append", choices=("agent", "human", "system"))
    f.add_argument("--since", type=parse_time, help="created_at >= this ISO time (naive = UTC)")
    f.add_argument("--until", type=parse_time, help="created_at < this ISO time (naive = UTC)")
    f.add_argument("--text", help='full-text query (FTS5): words, "a phrase", AND/OR/NOT, prefix*')

    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stats", action="store_true", help="aggregates instead of records")
    mode.add_argument(
        "--decisions", action="store_true", help="A-tier messages with agreeing/disagreeing replies"
    )
    mode.add_argument("--count", action="store_true", help="only the number of matching records")

    out = parser.add_argument_group("output")
    out.add_argument("--sort", choices=("created_at", "novelty", "emergence"), default="created_at")
    out.add_argument("--desc", action="store_true", help="largest / newest first")
    out.add_argument("--limit", type=int, default=50, help="at most N results (default 50)")
    out.add_argument("--offset", type=int, default=0, help="skip the first N results")
    out.add_argument(
        "--top", type=int, default=20, help="--stats: agents and conversations shown (default 20)"
    )
    add_json_flag(out)
    parser.set_defaults(func=_query)


def _query(args: argparse.Namespace) -> int:
    from daemon.analytics import (
        QueryError,
        RecordFilter,
        SignalCondition,
        count_records,
        decisions,
        query_records,
        stats,
    )
    from daemon.store import StoreError

    if args.limit < 0 or args.offset < 0:
        raise CliError("--limit and --offset must not be negative")
    if args.top < 1:
        raise CliError("--top must be at least 1")
    check_time_range(args.since, args.until)
    try:
        signals = tuple(SignalCondition.parse(text) for text in args.signal)
    except QueryError as exc:
        raise CliError(str(exc)) from None
    novelty = args.novelty or (None, None)
    emergence = args.emergence or (None, None)
    flt = RecordFilter(
        tiers=tuple(args.tier or ()),
        novelty_min=novelty[0],
        novelty_max=novelty[1],
        emergence_min=emergence[0],
        emergence_max=emergence[1],
        signals=signals,
        agents=tuple(args.agent or ()),
        conversations=tuple(args.conversation or ()),
        roles=tuple(args.role or ()),
        since=args.since,
        until=args.until,
        text=args.text,
    )
    store = open_readable_store(settings_from(args))
    try:
        if args.stats:
            _print_stats(stats(store, flt, top=args.top), args.json)
        elif args.decisions:
            _print_decisions(
                decisions(store, flt, limit=args.limit, offset=args.offset, desc=args.desc), args.json
            )
        elif args.count:
            count = count_records(store, flt)
            print_json({"count": count}) if args.json else print(count)
        else:
            records = query_records(
                store, flt, sort=args.sort, desc=args.desc, limit=args.limit, offset=args.offset
            )
            _print_records(records, args.json)
    except QueryError as exc:
        raise CliError(str(exc)) from None
    except StoreError as exc:
        raise CliError(str(exc), exit_code=1) from None
    finally:
        store.close()
    return 0


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _print_records(records: list[Record], as_json: bool) -> None:
    if as_json:
        for record in records:
            print_json(record.flat())
        return
    print(f"{'created_at (UTC)':<19}  {'agent':<16} tier nov emg  {'conversation':<16} content")
    for record in records:
        env, tags = record.envelope, record.tags
        tier, nov, emg = (tags.tier, str(tags.novelty), str(tags.emergence)) if tags else ("-", "-", "-")
        print(
            f"{env.created_at.strftime('%Y-%m-%d %H:%M:%S'):<19}  {_short(env.agent, 16):<16} "
            f"{tier:^4} {nov:>3} {emg:>3}  {_short(env.conversation_id, 16):<16} {_short(env.content, 60)}"
        )
    print(f"({len(records)} record{'' if len(records) == 1 else 's'})")


def _print_stats(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    mix = result["tier_mix"]
    print(f"records: {result['total']} (tagged {result['tagged']})")
    print(f"tiers:   A {mix['A']}  C {mix['C']}  E {mix['E']}  untagged {mix['untagged']}")
    print("signal means:")
    for name, value in result["signal_means"].items():
        print(f"  {name:<28} {'-' if value is None else value}")
    print("emergence per day (UTC):")
    for day in result["emergence_per_day"]:
        print(f"  {day['day']}  n={day['count']:<6} mean={day['mean_emergence']}  max={day['max_emergence']}")
    for title, key in (("per agent:", "agent"), ("per conversation:", "conversation_id")):
        print(title)
        group = result["per_agent" if key == "agent" else "per_conversation"]
        for row in group:
            tiers = row["tiers"]
            print(
                f"  {_short(str(row[key]), 24):<24} n={row['count']:<6} A={tiers['A']} C={tiers['C']} "
                f"E={tiers['E']} mean emergence={row['mean_emergence']}"
            )


def _print_decisions(found: list[Decision], as_json: bool) -> None:
    if as_json:
        for decision in found:
            print_json(decision.as_dict())
        return
    for decision in found:
        env, tally = decision.record.envelope, decision.tally
        print(
            f"{env.created_at.strftime('%Y-%m-%d %H:%M:%S')}  {env.agent} in {env.conversation_id}: "
            f"{_short(env.content, 70)}"
        )
        print(f"    agree {tally['agree']}, disagree {tally['disagree']}, neutral {tally['neutral']}")
        for reply in decision.replies:
            print(f"    {reply.stance:<8} {reply.agent}: {_short(reply.content, 60)}")
    print(f"({len(found)} decision{'' if len(found) == 1 else 's'})")
