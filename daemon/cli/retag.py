"""``aced retag``: tag stored messages again with the current tagger version; earlier tags are kept."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from daemon.cli._common import CliError, add_json_flag, print_json, settings_from

#: Tags written per store transaction.
_COMMIT_EVERY = 500


def _time(text: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def register(sub: Any) -> None:
    """Add ``aced retag``."""
    parser = sub.add_parser(
        "retag",
        help="re-tag stored messages with the current tagger version (old tags kept)",
        description="Tags every stored message with since <= created_at < until again, oldest first, with "
        "the configured tagger (ACED_TAGGER, ACED_TAG_HISTORY), and stores the result as a new tag "
        "version that becomes current. Earlier versions stay in the store.",
    )
    parser.add_argument("--since", type=_time, help="created_at >= this ISO time (naive = UTC)")
    parser.add_argument("--until", type=_time, help="created_at < this ISO time (naive = UTC)")
    add_json_flag(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from daemon.store import StoreError, open_store
    from daemon.tagging import NoOpTagger, make_tagger

    if args.since and args.until and args.since >= args.until:
        raise CliError("--since must be before --until")
    settings = settings_from(args)
    tagger = make_tagger(settings.tagger, settings.tag_history, settings.tier_model, settings.tag_core)
    if isinstance(tagger, NoOpTagger):
        raise CliError("the configured tagger is 'none': there is nothing to re-tag with")
    try:
        store = open_store(settings, create=False)
    except StoreError as exc:
        raise CliError(str(exc), exit_code=1) from None
    seen: set[str] = set()
    pending: list[tuple[str, Any]] = []
    counts = {"retagged": 0, "untaggable": 0, "conversations": 0}

    def flush() -> None:
        if not pending:
            return
        add_many = getattr(store, "add_tags_many", None)
        if add_many is not None:
            add_many(pending)
        else:  # a Store without the batch method: one transaction per record
            for message_id, tags in pending:
                store.add_tags(message_id, tags)
        counts["retagged"] += len(pending)
        pending.clear()

    try:
        for record in store.iter_records(since=args.since, until=args.until):
            message = record.envelope
            cid = message.conversation_id
            if cid not in seen:
                seen.add(cid)
                if args.since is not None and settings.tag_history:
                    # The range may start mid-conversation: give the tagger what came before it.
                    earlier = store.conversation_history(cid, message.created_at, settings.tag_history)
                    tagger.prime(cid, [r.envelope for r in earlier])
            (tags,) = tagger.tag_batch([message])
            if tags is None:
                counts["untaggable"] += 1
                continue
            pending.append((message.message_id, tags))
            if len(pending) >= _COMMIT_EVERY:
                flush()
        flush()
    except StoreError as exc:
        raise CliError(f"store: {exc}", exit_code=1) from None
    finally:
        store.close()
    counts["conversations"] = len(seen)
    result = {"tagger_version": tagger.version, **counts}
    if args.json:
        print_json(result)
    else:
        print(
            f"retagged {counts['retagged']} message(s) in {counts['conversations']} conversation(s) "
            f"with {tagger.version}"
            + (f"; {counts['untaggable']} could not be tagged" if counts["untaggable"] else ""),
            file=sys.stdout,
        )
    return 0
