"""``aced dlq``: list, show and replay dead letters."""

from __future__ import annotations

import argparse
import base64
from typing import Any

from daemon.cli._common import CliError, add_json_flag, connect_redis, print_json, settings_from


def register(sub: Any) -> None:
    """Add ``aced dlq list|show|replay``."""
    parser = sub.add_parser("dlq", help="dead letters: list, show, replay")
    dlq_sub = parser.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND")
    dlq_sub.required = True

    lister = dlq_sub.add_parser("list", help="dead letters, newest first")
    lister.add_argument("--limit", type=int, default=50)
    lister.add_argument("--offset", type=int, default=0)
    lister.add_argument("--pending-only", action="store_true", help="hide dead letters already replayed")
    add_json_flag(lister)
    lister.set_defaults(func=_list)

    show = dlq_sub.add_parser("show", help="one dead letter with its original bytes")
    show.add_argument("id", type=int)
    add_json_flag(show)
    show.set_defaults(func=_show)

    replay = dlq_sub.add_parser(
        "replay",
        help="publish dead letters' original fields again to their stream",
        description="XADDs the original fields, byte for byte, to the stream they came from, so the daemon "
        "reads them again (e.g. after raising a limit, or after fixing a bug that poisoned them). An entry "
        "that is still invalid is dead-lettered again.",
    )
    replay.add_argument("ids", type=int, nargs="+", metavar="ID")
    add_json_flag(replay)
    replay.set_defaults(func=_replay)


def _open(args: argparse.Namespace) -> Any:
    from daemon.store import StoreError, open_store

    settings = settings_from(args)
    try:
        return settings, open_store(settings, create=False)
    except StoreError as exc:
        raise CliError(str(exc), exit_code=1) from None


def _as_json(item: Any, with_fields: bool) -> dict[str, Any]:
    dl = item.entry
    out: dict[str, Any] = {
        "id": item.id,
        "stream": dl.stream,
        "entry_id": dl.entry_id,
        "reason": dl.reason.value,
        "detail": dl.detail,
        "message_id": dl.message_id,
        "delivery_count": dl.delivery_count,
        "received_at": dl.received_at.isoformat(),
        "consumer": dl.consumer,
        "replayed_at": item.replayed_at.isoformat() if item.replayed_at else None,
        "size_bytes": sum(len(k) + len(v) for k, v in dl.fields.items()),
    }
    if with_fields:
        out["fields_base64"] = {
            base64.b64encode(k).decode(): base64.b64encode(v).decode() for k, v in dl.fields.items()
        }
    return out


def _list(args: argparse.Namespace) -> int:
    if args.limit < 1 or args.offset < 0:
        raise CliError("--limit must be >= 1 and --offset >= 0")
    _, store = _open(args)
    try:
        items = store.list_dead_letters(args.limit, args.offset, include_replayed=not args.pending_only)
    finally:
        store.close()
    for item in items:
        if args.json:
            print_json(_as_json(item, with_fields=False))
        else:
            dl = item.entry
            replayed = " (replayed)" if item.replayed_at else ""
            print(
                f"{item.id:>6}  {dl.received_at:%Y-%m-%d %H:%M:%S}  {dl.reason.value:<26} "
                f"{dl.stream}/{dl.entry_id}{replayed}  {dl.detail[:100]}"
            )
    return 0


def _show(args: argparse.Namespace) -> int:
    _, store = _open(args)
    try:
        item = store.get_dead_letter(args.id)
    finally:
        store.close()
    if item is None:
        raise CliError(f"no dead letter with id {args.id}", exit_code=1)
    if args.json:
        print_json(_as_json(item, with_fields=True))
        return 0
    info = _as_json(item, with_fields=False)
    for key, value in info.items():
        print(f"{key + ':':<16}{value}")
    print("fields:")
    for name, value in item.entry.fields.items():
        shown = value[:2000]
        more = f" ... ({len(value)} bytes)" if len(value) > 2000 else ""
        print(f"  {name!r}: {shown!r}{more}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from schemas._types import utc_now

    settings, store = _open(args)
    try:
        items = []
        for dl_id in args.ids:
            item = store.get_dead_letter(dl_id)
            if item is None:
                raise CliError(f"no dead letter with id {dl_id}", exit_code=1)
            items.append(item)
        client = connect_redis(settings)
        try:
            for item in items:
                if not item.entry.fields:
                    raise CliError(f"dead letter {item.id} has no fields to replay", exit_code=1)
                entry_id = client.xadd(item.entry.stream, item.entry.fields)
                store.mark_replayed(item.id, utc_now())
                new_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                if args.json:
                    print_json({"id": item.id, "stream": item.entry.stream, "entry_id": new_id})
                else:
                    print(f"replayed {item.id} -> {item.entry.stream}/{new_id}")
        finally:
            client.close()
    finally:
        store.close()
    return 0
