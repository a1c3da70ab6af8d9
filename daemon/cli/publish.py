"""``aced publish``: put one message on an agent's stream; prints its ``message_id``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from daemon.cli._common import CliError, connect_redis, settings_from


def register(sub: Any) -> None:
    """Add ``aced publish``."""
    parser = sub.add_parser(
        "publish",
        help="publish one message to an agent stream",
        description="Validate an envelope and XADD it to <prefix>:agent:<AGENT>. Prints the message_id.",
    )
    parser.add_argument("--agent", required=True, help="agent name, e.g. claude")
    parser.add_argument("--conversation", required=True, help="conversation id")
    parser.add_argument("--role", choices=["agent", "human", "system"], default="agent")
    parser.add_argument("--reply-to", default=None, help="message_id this answers")
    parser.add_argument("--message-id", default=None, help="idempotency key (default: a new ULID)")
    parser.add_argument(
        "--sender-tags", default=None, metavar="JSON", help="what the sender claims, a JSON object"
    )
    parser.add_argument("--metadata", default=None, metavar="JSON", help="a JSON object")
    parser.add_argument("text", help="the message text, or - to read it from stdin")
    parser.add_argument("--json", action="store_true", help="print message_id, stream and entry_id as JSON")
    parser.set_defaults(func=_publish)


def _json_object(value: str | None, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"--{name} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise CliError(f"--{name} must be a JSON object")
    return parsed


def _publish(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from agents.publisher import PublishError, SyncPublisher, build_message
    from schemas import StreamKeys

    settings = settings_from(args)
    text = sys.stdin.read() if args.text == "-" else args.text
    try:
        message = build_message(
            args.agent,
            args.conversation,
            text,
            role=args.role,
            reply_to=args.reply_to,
            message_id=args.message_id,
            sender_tags=_json_object(args.sender_tags, "sender-tags"),
            metadata=_json_object(args.metadata, "metadata") or {},
            max_content_bytes=settings.max_content_bytes,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "message"
        raise CliError(f"invalid message: {where}: {str(err['msg']).removeprefix('Value error, ')}") from None
    keys = StreamKeys(settings.key_prefix)
    client = connect_redis(settings)
    try:
        entry_id = SyncPublisher(client, keys, attempts=3).publish(message)
    except PublishError as exc:
        raise CliError(str(exc), exit_code=1) from None
    finally:
        client.close()
    if args.json:
        from daemon.cli._common import print_json

        print_json(
            {
                "message_id": message.message_id,
                "stream": keys.agent_stream(message.agent),
                "entry_id": entry_id,
            }
        )
    else:
        print(message.message_id)
    return 0
