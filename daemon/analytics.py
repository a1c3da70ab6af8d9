"""Queries over the record: filters, full-text search, aggregates and decisions (``aced query``).

Every query uses each record's *current* tags (the latest tag version added). Records without tags pass
only filters that do not look at tags. This module speaks SQLite (FTS5 ``MATCH``); a PostgreSQL store would
bring its own implementation of the same functions.
"""

# SQL text here is assembled from fixed fragments and whitelisted column names; every value is bound as a
# parameter. S608 cannot tell the two apart.
# ruff: noqa: S608

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from daemon.store.base import StoreError, StoreUnavailable
from daemon.store.sqlite import RECORD_FROM, RECORD_SELECT, SIGNAL_COLUMNS, SQLiteStore, row_to_record, to_us
from schemas import SIGNAL_NAMES, Record

Sort = Literal["created_at", "novelty", "emergence"]
Stance = Literal["agree", "disagree", "neutral"]

#: ``--sort`` name -> SQL expression. Untagged records sort last whatever the direction.
SORT_COLUMNS: dict[str, str] = {
    "created_at": "r.created_us",
    "novelty": "t.novelty",
    "emergence": "t.emergence",
}

_OPERATORS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=": "=", "==": "=", "!=": "!="}
_CONDITION_RE = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|==|!=|>|<|=)\s*(\d{1,3})\s*$")


class QueryError(ValueError):
    """A query the user wrote wrongly (bad signal condition, bad full-text expression); one readable line."""


@dataclass(frozen=True, slots=True)
class SignalCondition:
    """``<signal> <op> <value>``, e.g. ``error_correction>60``; ops ``> >= < <= = !=``."""

    name: str
    op: str
    value: int

    @classmethod
    def parse(cls, text: str) -> SignalCondition:
        """Parse ``name>60`` (spaces allowed). Raises :class:`QueryError` naming the valid signals."""
        match = _CONDITION_RE.match(text)
        if not match:
            raise QueryError(
                f"bad signal condition {text!r}: expected NAME OP VALUE, e.g. error_correction>60"
            )
        name, op, value = match.group(1), match.group(2), int(match.group(3))
        if name not in SIGNAL_COLUMNS:
            raise QueryError(f"unknown signal {name!r}: one of {', '.join(SIGNAL_NAMES)}")
        if value > 100:
            raise QueryError(f"signal value {value} is out of range 0..100")
        return cls(name=name, op=_OPERATORS[op], value=value)


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Conditions on records, all combined with AND. Empty filter = every record.

    Ranges are inclusive (``novelty_min <= novelty <= novelty_max``); time is ``since <= created_at <
    until``. ``text`` is an FTS5 query (words, ``"phrases"``, ``AND``/``OR``/``NOT``, ``prefix*``).
    """

    tiers: tuple[str, ...] = ()
    novelty_min: int | None = None
    novelty_max: int | None = None
    emergence_min: int | None = None
    emergence_max: int | None = None
    signals: tuple[SignalCondition, ...] = ()
    agents: tuple[str, ...] = ()
    conversations: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL ``WHERE`` clause (``r`` = records, ``t`` = current tags) and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []

        def any_of(column: str, values: tuple[str, ...]) -> None:
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)

        any_of("t.tier", self.tiers)
        any_of("r.agent", self.agents)
        any_of("r.conversation_id", self.conversations)
        any_of("r.role", self.roles)
        for column, low, high in (
            ("t.novelty", self.novelty_min, self.novelty_max),
            ("t.emergence", self.emergence_min, self.emergence_max),
        ):
            if low is not None:
                clauses.append(f"{column} >= ?")
                params.append(low)
            if high is not None:
                clauses.append(f"{column} <= ?")
                params.append(high)
        for condition in self.signals:
            # Column and operator come from whitelists (SIGNAL_COLUMNS, _OPERATORS), never from the user.
            clauses.append(f"t.{SIGNAL_COLUMNS[condition.name]} {condition.op} ?")
            params.append(condition.value)
        if self.since is not None:
            clauses.append("r.created_us >= ?")
            params.append(to_us(self.since))
        if self.until is not None:
            clauses.append("r.created_us < ?")
            params.append(to_us(self.until))
        if self.text:
            clauses.append("r.id IN (SELECT rowid FROM records_fts WHERE records_fts MATCH ?)")
            params.append(self.text)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _check_text(store: SQLiteStore, flt: RecordFilter) -> None:
    """Run the FTS5 expression alone first, so a syntax error becomes a :class:`QueryError`."""
    if not flt.text:
        return
    try:
        store.read("SELECT rowid FROM records_fts WHERE records_fts MATCH ? LIMIT 1", (flt.text,))
    except StoreUnavailable:
        raise
    except StoreError as exc:
        detail = str(exc).removeprefix("read: ")
        raise QueryError(f"bad full-text expression {flt.text!r}: {detail}") from None


def query_records(
    store: SQLiteStore,
    flt: RecordFilter,
    sort: Sort = "created_at",
    desc: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> list[Record]:
    """Records matching ``flt`` with their current tags, sorted and paginated.

    Args:
        store: The store to read.
        flt: The conditions.
        sort: ``created_at``, ``novelty`` or ``emergence``; ties broken by ``created_at``, ``message_id``.
        desc: Largest first.
        limit: At most this many records.
        offset: Skip this many first.

    Raises:
        QueryError: Bad sort key or full-text expression.
    """
    if sort not in SORT_COLUMNS:
        raise QueryError(f"unknown sort {sort!r}: one of {', '.join(SORT_COLUMNS)}")
    if limit < 0 or offset < 0:
        raise QueryError("limit and offset must not be negative")
    _check_text(store, flt)
    where, params = flt.where()
    direction = "DESC" if desc else "ASC"
    order = f"{SORT_COLUMNS[sort]} {direction} NULLS LAST"
    if sort != "created_at":
        order += f", r.created_us {direction}"
    order += f", r.message_id {direction}"
    rows = store.read(
        f"SELECT {RECORD_SELECT} FROM {RECORD_FROM} {where} ORDER BY {order} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return [row_to_record(row) for row in rows]


def count_records(store: SQLiteStore, flt: RecordFilter) -> int:
    """How many records match ``flt``."""
    _check_text(store, flt)
    where, params = flt.where()
    ((count,),) = store.read(f"SELECT count(*) FROM {RECORD_FROM} {where}", params)
    return int(count)


# -- aggregates -----------------------------------------------------------------------------------------


def _mean(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


def stats(store: SQLiteStore, flt: RecordFilter, top: int = 20) -> dict[str, Any]:
    """Aggregates over the records matching ``flt``.

    Returns a JSON-ready dict: ``total``, ``tagged``, ``tier_mix`` (A/C/E/untagged counts),
    ``signal_means`` (the six signals plus ``novelty`` and ``emergence``, over tagged records),
    ``emergence_per_day`` (UTC day, count, mean and max emergence), ``per_agent`` and
    ``per_conversation`` (count, tier counts, mean emergence; the ``top`` largest, ties by name).
    """
    _check_text(store, flt)
    where, params = flt.where()
    base = f"FROM {RECORD_FROM} {where}"
    signal_cols = [f"avg(t.{SIGNAL_COLUMNS[name]})" for name in SIGNAL_NAMES]
    ((total, tagged, a, c, e, novelty, emergence, *signals),) = store.read(
        "SELECT count(*), count(t.tier), sum(t.tier = 'A'), sum(t.tier = 'C'), sum(t.tier = 'E'), "
        f"avg(t.novelty), avg(t.emergence), {', '.join(signal_cols)} {base}",
        params,
    )
    per_day = store.read(
        f"SELECT substr(r.created_at, 1, 10) AS day, count(*), avg(t.emergence), max(t.emergence) {base} "
        "GROUP BY day ORDER BY day",
        params,
    )

    def grouped(column: str) -> list[tuple[Any, ...]]:
        return store.read(
            f"SELECT {column}, count(*), coalesce(sum(t.tier = 'A'), 0), coalesce(sum(t.tier = 'C'), 0), "
            f"coalesce(sum(t.tier = 'E'), 0), avg(t.emergence) {base} "
            f"GROUP BY {column} ORDER BY count(*) DESC, {column} LIMIT ?",
            [*params, top],
        )

    def group_rows(key: str, rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        return [
            {key: k, "count": n, "tiers": {"A": ta, "C": tc, "E": te}, "mean_emergence": _mean(m)}
            for k, n, ta, tc, te, m in rows
        ]

    return {
        "total": total,
        "tagged": tagged,
        "tier_mix": {"A": a or 0, "C": c or 0, "E": e or 0, "untagged": total - tagged},
        "signal_means": {
            **{name: _mean(v) for name, v in zip(SIGNAL_NAMES, signals, strict=True)},
            "novelty_score": _mean(novelty),
            "emergence": _mean(emergence),
        },
        "emergence_per_day": [
            {"day": day, "count": n, "mean_emergence": _mean(m), "max_emergence": mx}
            for day, n, m, mx in per_day
        ],
        "per_agent": group_rows("agent", grouped("r.agent")),
        "per_conversation": group_rows("conversation_id", grouped("r.conversation_id")),
    }


# -- decisions ------------------------------------------------------------------------------------------

# Word-boundary rule for replies (docs/querying.md): disagree markers are found first (so "don't agree" is
# not also read as "agree"), removed, then agree markers are counted. More disagree than agree markers ->
# disagree; more agree -> agree; none or a tie -> neutral. (?<!\w)/(?!\w) instead of \b so "+1"/"-1" work.
_DISAGREE = re.compile(
    r"(?<!\w)(?:disagree[sd]?|(?:do not|don't|dont|can't|cannot|can not) agree|not convinced|not sure"
    r"|no|nope|object(?:ion)?|reject(?:ed)?|wrong|won't work|will not work|doesn't work|bad idea"
    r"|concern(?:s|ed)?|instead|-1|👎)(?!\w)",
    re.IGNORECASE,
)
_AGREE = re.compile(
    r"(?<!\w)(?:agree[sd]?|yes|yep|lgtm|approved?|sounds good|makes sense|good (?:idea|point|call)"
    r"|ship it|go ahead|exactly|correct|\+1|👍)(?!\w)",
    re.IGNORECASE,
)


def classify_reply(text: str) -> Stance:
    """Whether a reply agrees, disagrees or neither, by the documented marker rule."""
    disagree = len(_DISAGREE.findall(text))
    agree = len(_AGREE.findall(_DISAGREE.sub(" ", text)))
    if disagree > agree:
        return "disagree"
    if agree > disagree:
        return "agree"
    return "neutral"


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply to a decision, with its stance."""

    message_id: str
    agent: str
    created_at: datetime
    stance: Stance
    content: str


@dataclass(frozen=True, slots=True)
class Decision:
    """An A-tier (architectural) message, who made it, and how the replies to it went."""

    record: Record
    replies: list[Reply] = field(default_factory=list)

    @property
    def tally(self) -> dict[str, int]:
        """Replies per stance."""
        out = {"agree": 0, "disagree": 0, "neutral": 0}
        for reply in self.replies:
            out[reply.stance] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``aced query --decisions --json``)."""
        env = self.record.envelope
        return {
            "message_id": env.message_id,
            "agent": env.agent,
            "conversation_id": env.conversation_id,
            "created_at": env.created_at.isoformat(),
            "content": env.content,
            "tally": self.tally,
            "replies": [
                {
                    "message_id": r.message_id,
                    "agent": r.agent,
                    "created_at": r.created_at.isoformat(),
                    "stance": r.stance,
                    "content": r.content,
                }
                for r in self.replies
            ],
        }


def decisions(
    store: SQLiteStore, flt: RecordFilter, limit: int = 50, offset: int = 0, desc: bool = False
) -> list[Decision]:
    """A-tier records matching ``flt`` (any tier filter is replaced by A), oldest first (or newest with
    ``desc``), each with its direct replies (``reply_to``) classified by :func:`classify_reply`."""
    a_only = replace(flt, tiers=("A",))
    heads = query_records(store, a_only, sort="created_at", desc=desc, limit=limit, offset=offset)
    if not heads:
        return []
    ids = [r.envelope.message_id for r in heads]
    rows = store.read(
        f"SELECT {RECORD_SELECT} FROM {RECORD_FROM} WHERE r.reply_to IN ({', '.join('?' * len(ids))}) "
        "ORDER BY r.created_us, r.message_id",
        ids,
    )
    replies: dict[str, list[Reply]] = {mid: [] for mid in ids}
    for row in rows:
        reply = row_to_record(row).envelope
        assert reply.reply_to is not None  # selected by reply_to IN (...)
        replies[reply.reply_to].append(
            Reply(
                reply.message_id, reply.agent, reply.created_at, classify_reply(reply.content), reply.content
            )
        )
    return [Decision(record=r, replies=replies[r.envelope.message_id]) for r in heads]
