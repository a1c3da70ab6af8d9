"""``aced tag``: tag JSON lines from stdin with the rules tagger (and, asked to, the fine-tuned local
classifier), offline (no Redis, no store)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import orjson

from daemon.tagging import RulesTagger

if TYPE_CHECKING:
    from daemon.tagging.finetuned import FineTunedTagger

_HELP = """\
Reads JSON lines from stdin: each an envelope, or at least {"agent", "conversation_id", "content"}
("message_id" and "reply_to" are used when present). Lines of one conversation are its history, in input
order. Writes one JSON object per input line, in order, with "tier" (A, C or E), "signals" (the six
emergence signals, 0..100), "novelty", "emergence", "tier_rule", "tier_confidence", "evidence" and
"tagger_version".

The daemon's tagging settings apply (ACED_TAG_HISTORY, ACED_TIER_MODEL, ACED_TAG_CORE, or ACED_CONFIG), so
these are the tags the daemon would record for the same conversations. With --classifier the rules keep
their tier model, whose probabilities the classifier combines with its own, as the daemon's backend does.

A malformed line (not JSON, not an object, a required field missing or not text) gets one
{"error": "..."} object on its output line and does not stop the rest; the exit status is then 1.
"""


def register(sub: Any) -> None:
    """Add ``aced tag``."""
    parser = sub.add_parser(
        "tag",
        help="tag JSON lines from stdin (offline): tier, signals, novelty, emergence",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--history",
        type=int,
        metavar="N",
        help="earlier messages per conversation the tagger remembers, 0..1000: the tag_history setting "
        "(default: ACED_TAG_HISTORY, else 20)",
    )
    parser.add_argument("--no-evidence", action="store_true", help="leave out the evidence object")
    parser.add_argument(
        "--classifier",
        metavar="DIR",
        help="decide the tier and the signals with the fine-tuned classifier trained into DIR together with "
        "the rules (slower, more accurate; see docs/ace_tiers.md); novelty stays the rules'",
    )
    parser.set_defaults(func=_run)


def _fields(line: bytes) -> tuple[str, str, str, str | None, str | None]:
    """(content, conversation_id, agent, message_id, reply_to) of one input line, or ValueError."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    out: list[str] = []
    for key in ("content", "conversation_id", "agent"):
        value = data.get(key)
        if not isinstance(value, str):
            raise ValueError(f"{key!r} is missing or not a string")
        out.append(value)
    if not out[1].strip():
        raise ValueError("'conversation_id' is empty")
    optional: list[str | None] = []
    for key in ("message_id", "reply_to"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key!r} is not a string")
        optional.append(value)
    return out[0], out[1], out[2], optional[0], optional[1]


#: Lines tagged before the classifier's encoder runs over them (--classifier).
_CLASSIFIER_BATCH = 32


def tag_stream(
    source: BinaryIO,
    sink: BinaryIO,
    history: int = 20,
    evidence: bool = True,
    tagger: RulesTagger | None = None,
    classifier: FineTunedTagger | None = None,
) -> int:
    """Tag every line of ``source`` into ``sink`` (with ``tagger``, else a new ``RulesTagger`` remembering
    ``history`` messages per conversation; ``classifier``: a ``FineTunedTagger`` that decides the tiers and
    signals); return how many lines were malformed."""
    if tagger is None:
        tagger = RulesTagger(history=history)
    errors = 0
    # (output object, its tags, the content) waiting for the classifier; None tags: an error line
    waiting: list[tuple[dict[str, Any], Any, str]] = []

    def flush() -> None:
        if classifier is not None:
            ready = [(out, tags, content) for out, tags, content in waiting if tags is not None]
            decided = classifier.decide([tags for _, tags, _ in ready], [content for _, _, content in ready])
            for (out, _, _), tags in zip(ready, decided, strict=True):
                out.update(_dump(tags, evidence))
        for out, _, _ in waiting:
            sink.write(orjson.dumps(out) + b"\n")
        waiting.clear()

    for number, raw in enumerate(source, start=1):
        line = raw.strip()
        try:
            if not line:
                raise ValueError("empty line")
            content, conversation_id, agent, message_id, reply_to = _fields(line)
            tags = tagger.tag_text(
                content=content,
                conversation_id=conversation_id,
                message_id=message_id or f"line-{number}",
                agent=agent,
                reply_to=reply_to,
            )
            out: dict[str, Any] = {"message_id": message_id} if message_id else {"line": number}
            if classifier is None:
                out.update(_dump(tags, evidence))
            waiting.append((out, tags, content))
        except ValueError as exc:
            errors += 1
            waiting.append(({"error": f"line {number}: {exc}"}, None, ""))
        if len(waiting) >= (_CLASSIFIER_BATCH if classifier is not None else 1):
            flush()
    flush()
    sink.flush()
    return errors


def _dump(tags: Any, evidence: bool) -> dict[str, Any]:
    return cast(dict[str, Any], tags.model_dump(mode="json", exclude=None if evidence else {"evidence"}))


def _run(args: argparse.Namespace) -> int:
    from daemon.cli._common import CliError, settings_from

    # --history is the tag_history setting, validated with the daemon's bounds
    settings = settings_from(args, **({} if args.history is None else {"tag_history": args.history}))
    history = settings.tag_history
    # The classifier backend combines its tier with the rules tier model's probabilities, so its rules part
    # always runs with that model (FineTunedTagger); tagging with it here must do the same.
    tier_model = settings.tier_model or args.classifier is not None
    try:
        tagger = RulesTagger(
            history=history, tier_model="default" if tier_model else None, core=settings.tag_core
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    classifier = None
    if args.classifier:
        from daemon.tagging.finetuned import ClassifierUnavailable, FineTunedTagger

        try:
            classifier = FineTunedTagger(args.classifier, history=history)
        except ClassifierUnavailable as exc:
            raise CliError(f"--classifier: {exc}") from None
    evidence = not args.no_evidence
    errors = tag_stream(sys.stdin.buffer, sys.stdout.buffer, history, evidence, tagger, classifier)
    if errors:
        print(f"aced tag: {errors} malformed line(s), see the error objects in the output", file=sys.stderr)
        return 1
    return 0
