"""The ``aced`` command line (also ``python -m daemon``).

Each command lives in its own module exposing ``register(subparsers)``; the module sets
``func=<handler>`` on its parser. A handler takes the parsed arguments and returns the exit code. Every
error a user can cause ends as one readable line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from daemon.cli._common import CliError, ReadableArgumentParser

#: Command modules, in the order ``aced --help`` lists them.
_COMMAND_MODULES = (
    "run",
    "publish",
    "tail",
    "status",
    "query",
    "tag",
    "retag",
    "export",
    "importing",
    "dlq",
    "schema",
)


def build_parser() -> argparse.ArgumentParser:
    """The full ``aced`` argument parser with every available command registered."""
    import importlib

    parser = ReadableArgumentParser(
        prog="aced",
        description="aced: the permanent record of a team of LLM agents.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ReadableArgumentParser)
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"daemon.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"daemon.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aced`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CliError as exc:
        print(f"aced {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `aced export --out - | head`: the reader left; that is not an error of ours.
        return 0
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
