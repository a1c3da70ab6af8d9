"""``aced retag``: tag stored messages again with the current tagger version; earlier tags are kept."""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from daemon.cli._common import CliError, add_json_flag, check_time_range, print_json, settings_from

#: Tags written per store transaction.
_COMMIT_EVERY = 500
#: --classifier: messages per encoder batch (and per transaction), and the earlier messages each one sees
#: (what the daemon's asynchronous model tagger gives it).
_CLASSIFIER_BATCH = 32
_CLASSIFIER_CONTEXT = 6


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
    parser.add_argument(
        "--classifier",
        metavar="DIR",
        help="tag with the fine-tuned classifier trained into DIR instead of the configured tagger "
        "(e.g. to add its tags to records its queue dropped during a burst)",
    )
    add_json_flag(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from daemon.tagging import NoOpTagger, make_tagger

    check_time_range(args.since, args.until)
    settings = settings_from(args)
    if args.classifier:
        from daemon.tagging.finetuned import ClassifierUnavailable, FineTunedTagger

        try:
            classifier = FineTunedTagger(args.classifier, history=settings.tag_history)
        except ClassifierUnavailable as exc:
            raise CliError(f"--classifier: {exc}") from None
        # what the daemon's asynchronous model tagger gives it: the conversation's last few messages
        version, tag_many = classifier.version, classifier.tag_many
        return _retag(args, settings, version, tag_many, None, _CLASSIFIER_CONTEXT, _CLASSIFIER_BATCH)
    tagger = make_tagger(settings.tagger, settings.tag_history, settings.tier_model, settings.tag_core)
    if isinstance(tagger, NoOpTagger):
        raise CliError("the configured tagger is 'none': there is nothing to re-tag with")

    def tag_rules(items: list[tuple[Any, tuple[Any, ...]]]) -> list[Any]:
        return tagger.tag_batch([message for message, _ in items])  # it keeps its own history

    history = settings.tag_history
    return _retag(args, settings, tagger.version, tag_rules, tagger.prime, history, _COMMIT_EVERY)


def _retag(
    args: argparse.Namespace,
    settings: Any,
    version: str,
    tag: Callable[[list[tuple[Any, tuple[Any, ...]]]], list[Any]],
    prime: Callable[[str, list[Any]], None] | None,
    history: int,
    batch_size: int,
) -> int:
    """Tag the records in the range, oldest first, in batches of ``batch_size`` (message, earlier messages)
    pairs, each batch one store transaction; ``prime``: a tagger that keeps its own history is given what
    came before the range instead of the context."""
    from daemon.store import StoreError, open_store

    try:
        store = open_store(settings, create=False)
    except StoreError as exc:
        raise CliError(str(exc), exit_code=1) from None
    contexts: dict[str, deque[Any]] = {}
    batch: list[tuple[Any, tuple[Any, ...]]] = []
    counts = {"retagged": 0, "untaggable": 0, "conversations": 0}

    def flush() -> None:
        if not batch:
            return
        done = [(m.message_id, t) for (m, _), t in zip(batch, tag(batch), strict=True) if t is not None]
        counts["untaggable"] += len(batch) - len(done)
        _store_tags(store, done)
        counts["retagged"] += len(done)
        batch.clear()

    try:
        for record in store.iter_records(since=args.since, until=args.until):
            message = record.envelope
            cid = message.conversation_id
            context = contexts.get(cid)
            if context is None:
                context = contexts[cid] = deque(maxlen=0 if prime is not None else history)
                if args.since is not None and history:
                    # The range may start mid-conversation: give the tagger what came before it.
                    rows = store.conversation_history(cid, message.created_at, history)
                    earlier = [r.envelope for r in rows]
                    if prime is not None:
                        prime(cid, earlier)  # no message of cid waits in the batch: it is new here
                    else:
                        context.extend(earlier)
            batch.append((message, tuple(context)))
            context.append(message)
            if len(batch) >= batch_size:
                flush()
        flush()
    except StoreError as exc:
        raise CliError(f"store: {exc}", exit_code=1) from None
    finally:
        store.close()
    counts["conversations"] = len(contexts)
    _report(args, version, counts)
    return 0


def _store_tags(store: Any, items: list[tuple[str, Any]]) -> None:
    add_many = getattr(store, "add_tags_many", None)
    if add_many is not None:
        add_many(items)
    else:  # a Store without the batch method: one transaction per record
        for message_id, tags in items:
            store.add_tags(message_id, tags)


def _report(args: argparse.Namespace, version: str, counts: dict[str, int]) -> None:
    result = {"tagger_version": version, **counts}
    if args.json:
        print_json(result)
    else:
        print(
            f"retagged {counts['retagged']} message(s) in {counts['conversations']} conversation(s) "
            f"with {version}"
            + (f"; {counts['untaggable']} could not be tagged" if counts["untaggable"] else ""),
            file=sys.stdout,
        )
