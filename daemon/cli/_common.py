"""What every CLI command shares: readable errors, settings, JSON output."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any, NoReturn

import orjson

from daemon.config import ConfigError, Settings, load_settings


class CliError(Exception):
    """An error to show as one line; ``exit_code`` is the process exit status."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ReadableArgumentParser(argparse.ArgumentParser):
    """argparse prints usage plus an error; we print one line, as for every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Build settings (env, ``ACED_CONFIG``), turning config errors into a :class:`CliError`."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def check_time_range(since: datetime | None, until: datetime | None) -> None:
    """A :class:`CliError` when ``--since`` is not before ``--until`` (an empty range is a mistake, not a
    question whose answer is nothing)."""
    if since is not None and until is not None and since >= until:
        raise CliError("--since must be before --until")


def print_json(value: Any) -> None:
    """Write one JSON object on its own line to stdout."""
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS) + b"\n")
    sys.stdout.flush()


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` flag for commands whose output programs read."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a readable table")


def connect_redis(settings: Settings) -> Any:
    """A blocking Redis client that has answered PING, or a :class:`CliError` saying why not."""
    import redis

    from daemon.redis_conn import RedisUnavailable, describe_redis, sync_client

    try:
        client = sync_client(settings)
        client.ping()
    except RedisUnavailable as exc:
        raise CliError(str(exc), exit_code=1) from None
    except redis.AuthenticationError as exc:
        raise CliError(f"Redis at {describe_redis(settings)} refused the credentials: {exc}", 1) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise CliError(f"cannot reach Redis at {describe_redis(settings)}: {exc}", exit_code=1) from None
    return client
