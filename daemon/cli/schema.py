"""``aced schema export``: write the JSON Schema of every public model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from daemon.cli._common import CliError


def register(sub: Any) -> None:
    """Add ``aced schema``."""
    parser = sub.add_parser("schema", help="JSON Schema of the public models")
    schema_sub = parser.add_subparsers(dest="schema_command", metavar="SUBCOMMAND")
    schema_sub.required = True
    export = schema_sub.add_parser("export", help="write one <Model>.schema.json per public model")
    export.add_argument(
        "--out", type=Path, default=Path("schemas/json"), help="directory to write (default: schemas/json)"
    )
    export.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from schemas.jsonschema import export_json_schemas

    try:
        written = export_json_schemas(args.out)
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    for path in written:
        print(path)
    return 0
