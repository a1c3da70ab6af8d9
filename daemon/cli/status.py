"""``aced status``: is the record healthy? Exit 0 if so, 1 if not."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli._common import add_json_flag, print_json, settings_from


def register(sub: Any) -> None:
    """Add ``aced status``."""
    parser = sub.add_parser(
        "status",
        help="recorded, duplicates, dead letters, pending and lag per stream, daemons, health",
        description="Exit status: 0 healthy, 1 unhealthy (Redis unreachable, store unreadable, no daemon "
        "running, or a daemon reporting trouble).",
    )
    add_json_flag(parser)
    parser.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    from daemon.status import collect_status

    report = collect_status(settings_from(args))
    if args.json:
        print_json(report.to_json())
        return 0 if report.healthy else 1
    print(f"health:        {'ok' if report.healthy else 'UNHEALTHY'}")
    for problem in report.problems:
        print(f"  problem:     {problem}")
    print(f"recorded:      {report.recorded}")
    print(f"duplicates:    {report.duplicates} (plus {report.redelivered} redeliveries)")
    print(f"dead letters:  {report.dead_letters}")
    print(f"pending:       {report.pending}")
    print(f"lag:           {report.lag}")
    last = report.last_commit_at.isoformat() if report.last_commit_at else "never"
    print(f"last commit:   {last}")
    print(f"redis:         {report.redis} ({'ok' if report.redis_ok else 'down'})")
    if report.streams:
        print("streams:")
        width = max(len(s) for s in report.streams)
        for name, info in report.streams.items():
            print(f"  {name:<{width}}  length={info['length']} pending={info['pending']} lag={info['lag']}")
    for daemon in report.daemons:
        print(
            f"daemon:        {daemon.get('consumer')} pid={daemon.get('pid')} "
            f"recorded={daemon.get('recorded')} since {daemon.get('started_at')}"
        )
    return 0 if report.healthy else 1
