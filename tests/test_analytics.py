"""Analytics over a real store: filters, full text, sorting, paging, aggregates, decisions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from daemon.analytics import (
    QueryError,
    RecordFilter,
    SignalCondition,
    classify_reply,
    count_records,
    decisions,
    query_records,
    stats,
)
from daemon.store import SQLiteStore
from tests.test_store_support import T0, make_record, make_tags, open_test_store


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = open_test_store(tmp_path / "aced.sqlite3")
    day2 = T0 + timedelta(days=1)
    s.commit_batch(
        [
            make_record(
                1,
                agent="alice",
                content="We should shard the record store by agent.",
                tags=make_tags("A", 80, 70, error_correction=10, novelty=90),
            ),
            make_record(
                2,
                agent="bob",
                reply_to="m-000001",
                content="Agreed, that makes sense.",
                tags=make_tags("C", 20, 30),
            ),
            make_record(
                3,
                agent="carol",
                reply_to="m-000001",
                content="I disagree: sharding is a bad idea here.",
                tags=make_tags("C", 40, 50, error_correction=75, assumption_challenge=80),
            ),
            make_record(
                4,
                agent="dave",
                reply_to="m-000001",
                content="What about the gradient logs?",
                tags=make_tags("E", 10, 5),
            ),
            make_record(
                5,
                agent="alice",
                conversation_id="conv-2",
                content="Fixed the gradient clipping bug.",
                created_at=day2,
                tags=make_tags("E", 60, 40, error_correction=90),
            ),
            make_record(
                6,
                agent="bob",
                conversation_id="conv-2",
                content="untagged note about gradients",
                created_at=day2 + timedelta(hours=1),
            ),
            make_record(
                7,
                agent="carol",
                conversation_id="conv-2",
                content="Let us adopt a typed event bus.",
                created_at=day2 + timedelta(hours=2),
                tags=make_tags("A", 95, 90),
            ),
        ],
        [],
    )
    # A retag: record 4's current tags are the newer version.
    s.add_tags("m-000004", make_tags("C", 15, 25, version="test-2"))
    yield s
    s.close()


def _ids(records: list) -> list[str]:
    return [r.envelope.message_id for r in records]


def test_empty_filter_returns_everything_oldest_first(store: SQLiteStore) -> None:
    assert _ids(query_records(store, RecordFilter())) == [f"m-00000{i}" for i in range(1, 8)]
    assert count_records(store, RecordFilter()) == 7


def test_filters_use_current_tags(store: SQLiteStore) -> None:
    assert _ids(query_records(store, RecordFilter(tiers=("E",)))) == ["m-000005"]
    assert _ids(query_records(store, RecordFilter(tiers=("C",)))) == ["m-000002", "m-000003", "m-000004"]
    assert _ids(query_records(store, RecordFilter(tiers=("A", "E")))) == ["m-000001", "m-000005", "m-000007"]


def test_ranges_signals_agents_conversations_time(store: SQLiteStore) -> None:
    assert _ids(query_records(store, RecordFilter(novelty_min=40, novelty_max=80))) == [
        "m-000001",
        "m-000003",
        "m-000005",
    ]
    assert _ids(query_records(store, RecordFilter(emergence_min=70))) == ["m-000001", "m-000007"]
    cond = SignalCondition.parse("error_correction>60")
    assert _ids(query_records(store, RecordFilter(signals=(cond,)))) == ["m-000003", "m-000005"]
    both = (cond, SignalCondition.parse("assumption_challenge >= 80"))
    assert _ids(query_records(store, RecordFilter(signals=both))) == ["m-000003"]
    assert _ids(query_records(store, RecordFilter(signals=(SignalCondition.parse("novelty=90"),)))) == [
        "m-000001"
    ]
    assert _ids(query_records(store, RecordFilter(agents=("alice", "carol")))) == [
        "m-000001",
        "m-000003",
        "m-000005",
        "m-000007",
    ]
    assert _ids(query_records(store, RecordFilter(conversations=("conv-2",), agents=("bob",)))) == [
        "m-000006"
    ]
    window = RecordFilter(since=T0 + timedelta(days=1), until=T0 + timedelta(days=1, hours=2))
    assert _ids(query_records(store, window)) == ["m-000005", "m-000006"]


def test_full_text_combines_with_other_filters(store: SQLiteStore) -> None:
    assert _ids(query_records(store, RecordFilter(text="gradient*"))) == ["m-000004", "m-000005", "m-000006"]
    assert _ids(query_records(store, RecordFilter(text="gradient*", tiers=("E",)))) == ["m-000005"]
    assert _ids(query_records(store, RecordFilter(text='"bad idea"'))) == ["m-000003"]
    assert _ids(query_records(store, RecordFilter(text="shard OR bus"))) == ["m-000001", "m-000007"]


@pytest.mark.parametrize("bad", ['"unclosed', "AND AND", "nosuchcolumn:word", "("])
def test_bad_full_text_is_a_readable_error(store: SQLiteStore, bad: str) -> None:
    with pytest.raises(QueryError, match="bad full-text expression"):
        query_records(store, RecordFilter(text=bad))


def test_sorting_and_paging(store: SQLiteStore) -> None:
    by_novelty = _ids(query_records(store, RecordFilter(), sort="novelty", desc=True))
    assert by_novelty == ["m-000007", "m-000001", "m-000005", "m-000003", "m-000002", "m-000004", "m-000006"]
    ascending = _ids(query_records(store, RecordFilter(), sort="emergence"))
    assert ascending[-1] == "m-000006"  # untagged last in either direction
    assert ascending[:2] == ["m-000004", "m-000002"]
    newest = _ids(query_records(store, RecordFilter(), desc=True, limit=2, offset=1))
    assert newest == ["m-000006", "m-000005"]
    with pytest.raises(QueryError):
        query_records(store, RecordFilter(), sort="content")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["error_correction", "bogus>5", "novelty>101", "novelty=>5"])
def test_bad_signal_conditions(text: str) -> None:
    with pytest.raises(QueryError):
        SignalCondition.parse(text)


def test_stats(store: SQLiteStore) -> None:
    result = stats(store, RecordFilter())
    assert result["total"] == 7 and result["tagged"] == 6
    assert result["tier_mix"] == {"A": 2, "C": 3, "E": 1, "untagged": 1}
    means = result["signal_means"]
    assert means["error_correction"] == pytest.approx((10 + 75 + 90) / 6, abs=0.01)
    assert means["emergence"] == pytest.approx((70 + 30 + 50 + 25 + 40 + 90) / 6, abs=0.01)
    days = result["emergence_per_day"]
    assert [(d["day"], d["count"], d["max_emergence"]) for d in days] == [
        ("2026-03-01", 4, 70),
        ("2026-03-02", 3, 90),
    ]
    agents = {row["agent"]: row for row in result["per_agent"]}
    assert agents["alice"]["count"] == 2 and agents["alice"]["tiers"] == {"A": 1, "C": 0, "E": 1}
    assert result["per_conversation"][0] == {
        "conversation_id": "conv-1",
        "count": 4,
        "tiers": {"A": 1, "C": 3, "E": 0},
        "mean_emergence": 43.75,
    }
    only_bob = stats(store, RecordFilter(agents=("bob",)))
    assert only_bob["total"] == 2 and only_bob["tier_mix"]["untagged"] == 1


def test_stats_on_no_match(store: SQLiteStore) -> None:
    result = stats(store, RecordFilter(agents=("nobody",)))
    assert result["total"] == 0 and result["tier_mix"] == {"A": 0, "C": 0, "E": 0, "untagged": 0}
    assert result["signal_means"]["emergence"] is None and result["per_agent"] == []


def test_decisions_with_replies(store: SQLiteStore) -> None:
    found = decisions(store, RecordFilter())
    assert [d.record.envelope.message_id for d in found] == ["m-000001", "m-000007"]
    first = found[0]
    assert first.record.envelope.agent == "alice"
    assert [(r.agent, r.stance) for r in first.replies] == [
        ("bob", "agree"),
        ("carol", "disagree"),
        ("dave", "neutral"),
    ]
    assert first.tally == {"agree": 1, "disagree": 1, "neutral": 1}
    assert found[1].replies == []
    assert first.as_dict()["replies"][0]["stance"] == "agree"
    # Other filters still apply; the tier filter is always A.
    assert [d.record.envelope.agent for d in decisions(store, RecordFilter(conversations=("conv-2",)))] == [
        "carol"
    ]


@pytest.mark.parametrize(
    ("text", "stance"),
    [
        ("Agreed.", "agree"),
        ("LGTM, ship it", "agree"),
        ("+1", "agree"),
        ("I don't agree with this", "disagree"),
        ("No, that is wrong.", "disagree"),
        ("-1, I have concerns", "disagree"),
        ("Agreed, but I have concerns about cost and it won't work on GPUs", "disagree"),
        ("Agreed, makes sense; one concern about naming", "agree"),
        ("What about the logs?", "neutral"),
        ("knowledge is noted", "neutral"),  # "no" inside a word is not a marker
        ("yes and no", "neutral"),
    ],
)
def test_classify_reply(text: str, stance: str) -> None:
    assert classify_reply(text) == stance
