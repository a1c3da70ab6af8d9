"""``aced run``: the persistence daemon in the foreground (systemd runs exactly this)."""

from __future__ import annotations

import argparse
import faulthandler
import signal
from typing import Any

from daemon.cli._common import CliError, settings_from


def register(sub: Any) -> None:
    """Add ``aced run``."""
    parser = sub.add_parser(
        "run",
        help="run the persistence daemon",
        description="Record every agent message: consume the agent streams, validate, tag, commit, ack. "
        "With no ACED_REDIS_URL it starts its own Redis under ACED_DATA_DIR.",
    )
    parser.add_argument(
        "--burst",
        action="store_true",
        help="exit once every entry has been recorded (tests, one-off catch-up)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from daemon.logs import configure_logging
    from daemon.redis_conn import RedisUnavailable
    from daemon.service import ServiceError, run_daemon, tune_process_for_ingest

    settings = settings_from(args)
    configure_logging(settings.log_level, settings.log_format)
    tune_process_for_ingest()
    # `kill -USR1 <pid>` prints every thread's stack to the log: for a daemon that seems stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        return run_daemon(settings, burst=args.burst)
    except (ServiceError, RedisUnavailable) as exc:
        raise CliError(str(exc), exit_code=1) from None
