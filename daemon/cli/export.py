"""``aced export``: write the record as JSON lines (stdout, a file, day files) or a fine-tuning set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from daemon.cli._common import CliError, check_time_range, settings_from
from daemon.cli.query import open_readable_store, parse_time


def register(sub: Any) -> None:
    """Add ``aced export``."""
    parser = sub.add_parser(
        "export",
        help="records as JSON lines (stdout, a file, day files) or a fine-tuning dataset",
        description="jsonl (default): every record, one JSON object per line, to --out (a file, or - for "
        "stdout). daily: --out DIR gets conversation_logs/YYYY-MM-DD.jsonl by created_at (UTC). finetune: "
        "--out DIR gets a fine-tuning dataset. `aced import` reads jsonl and daily files back losslessly.",
    )
    parser.add_argument("--out", default="-", help="file or directory; - is stdout (default)")
    parser.add_argument("--format", choices=("jsonl", "daily", "finetune"), default="jsonl")
    parser.add_argument("--since", type=parse_time, help="created_at >= this ISO time (naive = UTC)")
    parser.add_argument("--until", type=parse_time, help="created_at < this ISO time (naive = UTC)")
    parser.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from daemon.jsonl import export_daily, export_records
    from daemon.store import StoreError

    check_time_range(args.since, args.until)
    if args.format != "jsonl" and args.out == "-":
        raise CliError(f"--format {args.format} writes a directory: give --out DIR")
    store = open_readable_store(settings_from(args))
    try:
        if args.format == "jsonl":
            if args.out == "-":
                count = export_records(store, sys.stdout.buffer, args.since, args.until)
            else:
                out = Path(args.out)
                with out.open("wb") as handle:
                    count = export_records(store, handle, args.since, args.until)
            print(f"exported {count} records", file=sys.stderr)
        elif args.format == "daily":
            written = export_daily(store, Path(args.out), args.since, args.until)
            for path, n in written.items():
                print(f"{path}\t{n}")
            print(f"exported {sum(written.values())} records in {len(written)} day files", file=sys.stderr)
        else:
            # Lazy: the fine-tuning writer lives with the taggers and pulls in more than export needs.
            from daemon.tagging.finetune import write_finetune

            result = write_finetune(store.iter_records(since=args.since, until=args.until), Path(args.out))
            # The writer reports counts and paths; default=str turns the paths into text.
            sys.stdout.buffer.write(orjson.dumps(result, default=str) + b"\n")
    except StoreError as exc:
        raise CliError(str(exc), exit_code=1) from None
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    finally:
        store.close()
    return 0
