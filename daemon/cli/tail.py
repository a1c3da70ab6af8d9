"""``aced tail``: the latest entries of the agent streams (or the events / dead-letter streams)."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from daemon.cli._common import CliError, add_json_flag, connect_redis, print_json, settings_from


def register(sub: Any) -> None:
    """Add ``aced tail``."""
    parser = sub.add_parser(
        "tail",
        help="show the latest stream entries; --follow to keep watching",
        description="Read-only: tail never joins the consumer group, so it cannot take work from the daemon.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--agent", action="append", help="only this agent's stream (repeatable)")
    which.add_argument("--events", action="store_true", help="the daemon's events stream")
    which.add_argument("--deadletter", action="store_true", help="the dead-letter stream")
    parser.add_argument("-n", "--count", type=int, default=10, help="entries per stream to show first (10)")
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new entries (Ctrl-C stops)"
    )
    add_json_flag(parser)
    parser.set_defaults(func=_tail)


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _show(stream: str, entry_id: str, fields: dict[bytes, bytes], as_json: bool) -> None:
    data = fields.get(b"data")
    decoded: Any = None
    if data is not None:
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            decoded = None
    if as_json:
        body = decoded if decoded is not None else {_s(k): _s(v) for k, v in fields.items()}
        print_json({"stream": stream, "entry_id": entry_id, "data": body})
        return
    if isinstance(decoded, dict) and "content" in decoded:
        content = str(decoded.get("content", "")).replace("\n", " ")
        print(f"{entry_id}  {decoded.get('agent')}  [{decoded.get('conversation_id')}]  {content[:160]}")
    elif isinstance(decoded, dict) and "type" in decoded:
        print(f"{entry_id}  {decoded.get('type')}  {orjson.dumps(decoded.get('data')).decode()[:160]}")
    else:
        shown = ", ".join(f"{_s(k)}={_s(v)[:60]}" for k, v in fields.items() if not _s(k).startswith("orig:"))
        print(f"{entry_id}  {stream}  {shown[:200]}")


def _tail(args: argparse.Namespace) -> int:
    from schemas import StreamKeys

    if args.count < 0:
        raise CliError("--count must be >= 0")
    settings = settings_from(args)
    keys = StreamKeys(settings.key_prefix)
    client = connect_redis(settings)
    try:
        if args.events:
            streams = [keys.events]
        elif args.deadletter:
            streams = [keys.deadletter]
        elif args.agent:
            try:
                streams = [keys.agent_stream(a) for a in args.agent]
            except ValueError as exc:
                raise CliError(str(exc)) from None
        else:
            streams = sorted(_s(k) for k in client.scan_iter(match=keys.agent_stream_pattern, _type="STREAM"))
        last: dict[str, str] = {}
        for stream in streams:
            entries = list(reversed(client.xrevrange(stream, count=args.count) or [])) if args.count else []
            for entry_id, fields in entries:
                _show(stream, _s(entry_id), fields, args.json)
            last[stream] = _s(entries[-1][0]) if entries else "$"
        while args.follow and last:
            reply = client.xread(last, block=1000, count=100) or []
            for stream_name, entries in reply:
                stream = _s(stream_name)
                for entry_id, fields in entries:
                    _show(stream, _s(entry_id), fields, args.json)
                    last[stream] = _s(entry_id)
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
    return 0
