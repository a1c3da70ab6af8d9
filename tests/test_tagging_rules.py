"""The rules tagger: each pipeline step alone, then the tagger as the daemon calls it."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.tagging import (
    NoOpTagger,
    RulesTagger,
    UnknownTaggerError,
    aggregate_emergence,
    emergence,
    make_tagger,
    rules,
)
from daemon.tagging.history import ConversationHistory, HistoryCache, PastMessage
from daemon.tagging.markers import DEFAULT_INDEX, LEXICONS, NOT_FIGURE, MarkerIndex
from daemon.tagging.text import SCAN_CHARS, extract, tokenize
from schemas import SIGNAL_NAMES, SIGNAL_PRESENT_ABOVE, AgentMessage, Attachment, Tags
from tests.helpers import labelled_contents

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def msg(content: str, conv: str = "c1", agent: str = "claude", n: int = 0, **extra: Any) -> AgentMessage:
    """An envelope with test defaults."""
    return AgentMessage(
        message_id=extra.pop("message_id", f"{conv}-{n:03d}"),
        agent=agent,
        role=extra.pop("role", "agent"),
        conversation_id=conv,
        content=content,
        created_at=T0 + timedelta(minutes=n),
        **extra,
    )


def tag_conversation(turns: list[tuple[str, str]], conv: str = "c1") -> list[Tags]:
    """Tag (agent, content) turns of one conversation in order; every one must get tags."""
    tagger = RulesTagger(history=20)
    out = tagger.tag_batch([msg(text, conv, agent, i) for i, (agent, text) in enumerate(turns)])
    assert all(t is not None for t in out)
    return [t for t in out if t is not None]


def present(tags: Tags) -> set[str]:
    return {name for name in SIGNAL_NAMES if getattr(tags.signals, name) > SIGNAL_PRESENT_ABOVE}


# ------------------------------------------------------------------ step 1: text features


def test_tokens_are_whole_words_lowercased() -> None:
    assert tokenize("Required UI, don't-stop") == ("required", "ui", "don't", "stop")


def test_extract_drops_code_and_quoted_lines_from_prose() -> None:
    f = extract("> we should use Kafka\nI disagree.\n```python\nx = 1\n```")
    assert "kafka" not in f.tokens
    assert "disagree" in f.tokens
    assert f.quoted_lines == 1
    assert 0 < f.code_share < 1


def test_extract_bounds_the_scan() -> None:
    f = extract("word " * (SCAN_CHARS // 2))
    assert f.truncated
    assert len(f.tokens) <= SCAN_CHARS // 5 + 1


def test_extract_reads_non_ascii_words() -> None:
    f = extract("Je propose qu'on garde le clamp dur, différentes graines.")
    assert "différentes" in f.tokens


# ------------------------------------------------------------------ step 2: markers


def test_ui_is_not_matched_inside_required() -> None:
    """Regression: the old substring tagger called 'required' a UI topic because it contains 'ui'."""
    index = MarkerIndex({"topic.ui": ["ui"], "phrase": ["go with"]})
    assert index.match(extract("This field is required, and the build is quick.")) == {}
    assert index.match(extract("The UI is slow.")) == {"topic.ui": ["ui"]}
    # phrases match on word boundaries too
    assert index.match(extract("I saw it ago without a doubt")) == {}
    assert index.match(extract("Let's go with Redis")) == {"phrase": ["go with"]}


def test_default_lexicons_do_not_fire_on_substrings() -> None:
    hits = DEFAULT_INDEX.match(extract("requirements acquired squid guitars"))
    assert hits == {}


def test_every_marker_tokenises() -> None:
    for family, markers in LEXICONS.items():
        for marker in markers:
            assert tokenize(marker), (family, marker)


def test_index_finds_exactly_the_markers_a_brute_force_search_finds() -> None:
    """The automaton against the definition it implements: " marker " in the joined tokens, every marker
    checked one by one, on every labelled message (and each marker listed once, however often it occurs)."""
    texts = labelled_contents("dev", "heldout")
    texts.append("go with go with, ship it. Ship it! bug bug bug")
    texts.append("It is 49 TB, not 38, and not about 2 either.")
    for text in texts:
        features = extract(text)
        expected = {
            (family, " ".join(tokenize(marker)))
            for family, markers in LEXICONS.items()
            for marker in markers
            if f" {' '.join(tokenize(marker))} " in features.joined
        }
        if re.search(r" not (?:the |about |quite |even |just )?\d", features.joined):
            expected.add(("error_correction.flaw", NOT_FIGURE))
        hits = DEFAULT_INDEX.match(features)
        found = [(family, marker) for family, markers in hits.items() for marker in markers]
        assert len(found) == len(set(found)), text
        assert set(found) == expected, text


def test_explicit_bridges_are_bridge_markers() -> None:
    bridges = {" ".join(tokenize(m)) for m in LEXICONS["cross_domain_synthesis.bridge"]}
    assert rules._EXPLICIT_BRIDGES.issubset(bridges)


def test_marker_order_is_stable() -> None:
    text = extract("Correction: that was a bug, it conflicts with the cap and would lose entries.")
    hits = DEFAULT_INDEX.match(text)
    assert hits == DEFAULT_INDEX.match(text)
    assert {"correction", "bug", "conflicts with", "would lose"} <= set(hits["error_correction.flaw"])


# ------------------------------------------------------------------ step 3: novelty against history


def test_term_novelty_against_history() -> None:
    hist = ConversationHistory(max_messages=5)
    first = extract("Pre-render the depth maps into a content-addressed cache on the NAS storage")
    score, unseen, terms = rules.term_novelty(first, hist)
    assert score == 100 and unseen == terms
    hist.add(PastMessage("m1", "gemini", first.content_terms))
    again, unseen_again, _ = rules.term_novelty(first, hist)
    assert again == 0 and unseen_again == 0


def test_history_window_forgets_old_messages() -> None:
    hist = ConversationHistory(max_messages=2)
    old = extract("kafka partitions retention brokers zookeeper")
    hist.add(PastMessage("m0", "a", old.content_terms))
    for i in range(4):  # 2 * max_messages additions: the union is rebuilt from the window
        hist.add(PastMessage(f"m{i + 1}", "a", extract(f"status report number {i}").content_terms))
    assert len(hist.messages) == 2
    assert hist.unseen(old.content_terms) == len(old.content_terms)


def test_history_cache_is_an_lru() -> None:
    cache = HistoryCache(max_messages=3, max_conversations=2)
    cache.get("a")
    cache.get("b")
    cache.get("a")  # a is now most recent
    cache.get("c")  # evicts b
    assert "a" in cache and "c" in cache and "b" not in cache
    assert len(cache) == 2


def test_tagger_holds_a_bounded_number_of_conversations() -> None:
    tagger = RulesTagger(history=3, max_conversations=10)
    tagger.tag_batch([msg("hello there, status update", conv=f"c{i}") for i in range(50)])
    assert tagger.conversations_held == 10


# ------------------------------------------------------------------ step 4: tiers, with the ambiguity rules


@pytest.mark.parametrize(
    "text",
    [
        "Should we use Redis Streams or Kafka for the transport between the adapters and the daemon?",
        "Decision: weighted fair-share scheduling with one preemption class. Kafka stays off the table.",
        "Strategy question for the quarter: do we keep our own architecture or fine-tune a foundation model?",
        "I propose we pre-render all views into a content-addressed cache instead of rendering on the fly.",
    ],
)
def test_architectural_messages(text: str) -> None:
    (tags,) = tag_conversation([("maya", text)])
    assert tags.tier == "A", tags.evidence
    assert tags.tier_rule.startswith("A.")


@pytest.mark.parametrize(
    "text",
    [
        "I agree on Redis for now. One concern: trimming can drop entries that were never acked. Do we trim "
        "only below the last-delivered id?",
        "Retro time. Looking back at the last two weeks, how did the two of you work together?",
        "I'd keep dicts. Every other loader returns dicts, a dataclass would be the odd one out. Fair?",
        "I worry that fixed roles make us blind in each other's areas. Honestly, is it worth it?",
    ],
)
def test_collaborative_messages(text: str) -> None:
    (tags,) = tag_conversation([("gemini", text)])
    assert tags.tier == "C", tags.evidence


@pytest.mark.parametrize(
    "text",
    [
        "Status: the consumer loop is merged. 14 tests pass, including redelivery after a crash.",
        "I'll take the janitor: XAUTOCLAIM every 10 s for entries idle over 60 s. PR by Wednesday.",
        "```python\ndef fuse(depths, poses):\n    return integrate(depths, poses)\n```",
        "| run | F-score |\n|---|---|\n| 17 | 0.58 |\n| 18 | 0.63 |",
    ],
)
def test_execution_messages(text: str) -> None:
    (tags,) = tag_conversation([("claude", text)])
    assert tags.tier == "E", tags.evidence


def test_ambiguity_architecture_question_is_a_not_c() -> None:
    """A decision about architecture is A even when phrased as dialogue."""
    (tags,) = tag_conversation([("maya", "Should we use Redis or Kafka?")])
    assert tags.tier == "A"
    assert tags.tier_rule == "A.direction_question"


def test_ambiguity_deciding_is_a_implementing_is_e() -> None:
    decided, implemented = tag_conversation(
        [
            ("maya", "Decision: pre-render the views into the cache; revisit if overfitting shows up."),
            (
                "gemini",
                "Implementing: render_cache.py renders 8 views at 256x256 as PNG. Running it now, ETA 5h.",
            ),
        ]
    )
    assert decided.tier == "A"
    assert implemented.tier == "E"


def test_ambiguity_specifying_a_deliverable_is_e_despite_dialogue() -> None:
    (tags,) = tag_conversation(
        [
            (
                "claude",
                "Agreed. Here's the class:\n```python\nclass TagRequest(BaseModel):\n    messages: list\n```",
            )
        ]
    )
    assert tags.tier == "E"


def test_tier_evidence_names_the_markers() -> None:
    (tags,) = tag_conversation([("maya", "Decision: Redis Streams, one stream per agent.")])
    assert "decision" in tags.evidence["markers"]["A.ratify"]
    assert tags.evidence["tier_votes"]["A"] > 0
    assert 0 < tags.tier_confidence <= 1


# ------------------------------------------------------------------ step 5: signals


def test_solution_quality_needs_tradeoffs() -> None:
    weighed, bare = tag_conversation(
        [
            (
                "claude",
                "I'd go with Redis. Kafka would buy us retention, but at the cost of a cluster nobody "
                "wants to run. The risk is memory; the fallback is trimming by MINID.",
            ),
            ("gemini", "Use Redis."),
        ]
    )
    assert "solution_quality" in present(weighed)
    assert "solution_quality" not in present(bare)


def test_assumption_challenge() -> None:
    (tags,) = tag_conversation(
        [("maya", "Are we even sure meshes are the right output? Maybe we're solving the wrong problem.")]
    )
    assert "assumption_challenge" in present(tags)
    assert tags.signals.assumption_challenge >= 61


def test_error_correction_names_the_corrected_message() -> None:
    tagged = tag_conversation(
        [
            ("claude", "Teacher inference on 200k scans at 2 s each takes a week on the node."),
            ("maya", "Sounds fine, go ahead with the distillation plan."),
            (
                "gemini",
                "Correction: 200k x 2 s is 111 hours only on one GPU; on 8 GPUs the scans take one night.",
            ),
        ]
    )
    last = tagged[-1]
    assert "error_correction" in present(last)
    assert last.evidence["signals"]["error_correction"]["corrects"] == "c1-000"


def test_self_correction_points_at_own_earlier_message() -> None:
    tagged = tag_conversation(
        [
            ("claude", "Root cause is the debug log filling the disk."),
            ("gemini", "The debug log is on the root volume, the export filled the data volume."),
            (
                "claude",
                "You're right, I mixed up the volumes. Correction: root cause is the export's retention.",
            ),
        ]
    )
    ev = tagged[-1].evidence["signals"]["error_correction"]
    assert ev["self"] is True
    assert ev["corrects"] == "c1-000"


def test_cross_domain_synthesis() -> None:
    (tags,) = tag_conversation(
        [
            (
                "gemini",
                "Idea from speech recognition: SpecAugment masks frequency bands; "
                "the 3D analogue masks slabs.",
            )
        ]
    )
    assert "cross_domain_synthesis" in present(tags)
    assert "speech recognition" in tags.evidence["markers"]["cross_domain_synthesis.field"]
    assert "idea from" in tags.evidence["markers"]["cross_domain_synthesis.bridge"]


def test_specialization_recognition() -> None:
    (tags,) = tag_conversation(
        [
            (
                "maya",
                "Gemini is better at breadth and search; Claude is the more careful reviewer, "
                "so split by strength.",
            )
        ]
    )
    assert "specialization_recognition" in present(tags)
    assert tags.evidence["signals"]["specialization_recognition"]["agents"] == ["claude", "gemini"]


def test_novelty_signal_for_a_new_approach_not_for_an_ack() -> None:
    idea, ack = tag_conversation(
        [
            ("claude", "What if we borrow next-best-view planning from robotics to pick the camera poses?"),
            ("gemini", "Ok."),
        ]
    )
    assert "novelty" in present(idea)
    assert "novelty" not in present(ack)


def test_novelty_score_drops_when_a_message_repeats_the_conversation() -> None:
    text = "The shuffle buffer is filled from one shard at a time, so batches come from shard zero."
    first, repeat = tag_conversation([("gemini", text), ("claude", text)])
    assert first.novelty > 60
    assert repeat.novelty == 0


def test_emergence_aggregates() -> None:
    assert emergence([0, 0, 0, 0, 0, 0]) == 0
    assert emergence([70, 0, 0, 0, 0, 0]) == 70
    assert emergence([70, 60, 0, 0, 0, 0]) == 85
    assert emergence([100, 100, 100, 100, 100, 100]) == 100
    agg = aggregate_emergence([10, 50, 90])
    assert agg == {"mean": 50.0, "share_present": pytest.approx(2 / 3, abs=1e-3), "messages": 3}
    assert aggregate_emergence([])["messages"] == 0


def test_tags_are_valid_models() -> None:
    (tags,) = tag_conversation([("claude", "Status: merged.")])
    assert Tags.model_validate(tags.model_dump()) == tags
    assert tags.tagger_version == rules.RULES_VERSION


# ------------------------------------------------------------------ the tagger as the daemon calls it


def test_sender_tags_are_never_read() -> None:
    text = "Status: the consumer loop is merged and 14 tests pass."
    plain = RulesTagger().tag_batch([msg(text)])[0]
    claimed_msg = msg(text, sender_tags={"tier": "A", "signals": {"novelty": 100}})
    claimed = RulesTagger().tag_batch([claimed_msg])[0]
    assert plain == claimed
    assert claimed_msg.sender_tags == {"tier": "A", "signals": {"novelty": 100}}


def test_deterministic_across_taggers() -> None:
    turns = [
        msg(f"Proposal {i}: we could cache renders, but the risk is stale images.", n=i) for i in range(5)
    ]
    assert RulesTagger().tag_batch(turns) == RulesTagger().tag_batch(turns)


def test_prime_loads_history() -> None:
    earlier = [msg("Kafka partitions and retention policies for the broker", n=0)]
    primed = RulesTagger()
    primed.prime("c1", earlier)
    later = msg("Kafka partitions and retention policies for the broker", n=1, message_id="x")
    assert primed.tag_batch([later])[0].novelty == 0  # type: ignore[union-attr]
    assert RulesTagger().tag_batch([later])[0].novelty > 0  # type: ignore[union-attr]


def test_tag_batch_returns_none_and_logs_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("boom")

    # a step that raises: the Python classifier, and the Python extract the compiled core falls back on for
    # text that is not ASCII
    monkeypatch.setattr(rules, "classify_tier", broken)
    monkeypatch.setattr(rules, "extract", broken)
    for core in ("python", "auto"):
        with capture_logs() as logs:
            out = RulesTagger(core=core).tag_batch([msg("anything é"), msg("more é", n=1)])  # type: ignore[arg-type]
        assert out == [None, None]
        assert logs[0]["event"] == "tagging_failed" and "boom" in logs[0]["error"]
        rows = RulesTagger(core=core).tag_rows([("m1", "claude", "c1", None, "naïve")])  # type: ignore[arg-type]
        assert rows == ["RuntimeError: boom"]


def test_make_tagger() -> None:
    assert isinstance(make_tagger("rules", 5), RulesTagger)
    assert isinstance(make_tagger("none", 5), NoOpTagger)
    assert make_tagger("none", 5).tag_batch([msg("x")]) == [None]
    with pytest.raises(UnknownTaggerError):
        make_tagger("magic", 5)


# ------------------------------------------------------------------ bad input


BAD_INPUT = {
    "huge": "The daemon log follows.\n"
    + ("ERROR 2026-11-02 disk full, retrying commit ----- \n" * 6000)[: 256 * 1024 - 64],
    "code_only": "```python\n" + "\n".join(f"def f{i}(x):\n    return x * {i}" for i in range(200)) + "\n```",
    "non_english": "Je propose qu'on garde le clamp dur et qu'on relance l'ablation. "
    "我们应该使用 Redis 吗？ Заменить Kafka?",
    "table": "| run | F | watertight |\n|---|---|---|\n"
    + "\n".join(f"| {i} | 0.6{i} | 7{i}% |" for i in range(10)),
    "quote": "> Decision: Kafka for everything.\n> Ship it.\n\n"
    "I don't think that's right: we agreed on Redis.",
    "only_punctuation": "?!... --- ***",
    "whitespace_and_emoji": "   🚀🚀🚀   ",
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUT))
def test_bad_input_is_tagged_without_error(kind: str) -> None:
    content = BAD_INPUT[kind]
    assert len(content.encode()) <= 256 * 1024
    tagger = RulesTagger()
    start = time.perf_counter()
    (tags,) = tagger.tag_batch([msg(content)])
    elapsed = time.perf_counter() - start
    assert tags is not None
    assert tags.tier in ("A", "C", "E")
    # generous: a message is scanned only up to SCAN_CHARS, so even 256 KiB is a few milliseconds
    assert elapsed < 0.5


def test_quoted_lines_do_not_count_as_the_senders_words() -> None:
    (tags,) = tag_conversation([("claude", BAD_INPUT["quote"])])
    assert tags.tier != "A"  # the quoted "Decision: ... Ship it." is someone else's
    assert tags.evidence["quoted_lines_ignored"] == 2


def test_empty_content_with_attachment() -> None:
    att = Attachment(name="plot.png", media_type="image/png")
    (tags,) = RulesTagger().tag_batch([msg("", attachments=[att])])
    assert tags is not None
    assert tags.novelty == 0 and tags.emergence == 0


def test_huge_content_records_the_scan_bound() -> None:
    (tags,) = RulesTagger().tag_batch([msg(BAD_INPUT["huge"])])
    assert tags is not None and tags.evidence["scanned_chars"] == SCAN_CHARS
