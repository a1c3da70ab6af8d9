"""``aced import FILE``: read an aced export or a legacy log back into the store.

(The module is ``importing`` because ``import`` is a keyword.)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from daemon.cli._common import CliError, add_json_flag, print_json, settings_from


def register(sub: Any) -> None:
    """Add ``aced import``."""
    parser = sub.add_parser(
        "import",
        help="import an aced export or a legacy log (JSON lines)",
        description="Reads aced export lines and the previous system's log lines (detected per line), "
        "through the same idempotency rules as live ingestion: a message already recorded counts as a "
        "duplicate. Exit status: 0 every line imported or already there, 1 some lines rejected (listed "
        "with their numbers), 2 the file cannot be read or the store cannot be written.",
    )
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument(
        "--no-tag", action="store_true", help="store records that arrive untagged without tagging them"
    )
    add_json_flag(parser)
    parser.set_defaults(func=_import)


def _tagger(settings: Any) -> Any:
    if settings.tagger == "none":
        return None
    from daemon.tagging import make_tagger

    return make_tagger(settings.tagger, settings.tag_history, settings.tier_model, settings.tag_core)


def _import(args: argparse.Namespace) -> int:
    from daemon.jsonl import import_jsonl
    from daemon.store import StoreError, open_store

    settings = settings_from(args)
    if not args.file.is_file():
        raise CliError(f"cannot read {args.file}: not a file")
    tagger = None if args.no_tag else _tagger(settings)
    try:
        store = open_store(settings)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    try:
        report = import_jsonl(args.file, store, tagger, max_content_bytes=settings.max_content_bytes)
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    except StoreError as exc:
        raise CliError(f"{exc} (lines before the failure may be imported; importing again is safe)") from None
    finally:
        store.close()
    if args.json:
        print_json(report.as_dict())
    else:
        formats = ", ".join(f"{n} {fmt}" for fmt, n in sorted(report.formats.items())) or "none"
        print(
            f"{report.source}: imported {report.imported}, duplicate {report.duplicate}, "
            f"rejected {report.rejected} (lines read: {formats})"
        )
        for rejected in report.rejected_lines:
            print(f"  line {rejected.line}: {rejected.code}: {rejected.reason}")
    return 1 if report.rejected else 0
