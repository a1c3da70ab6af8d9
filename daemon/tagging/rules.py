"""The rules tagger: a pipeline of small pure steps, each testable alone.

    extract (text.py) -> match markers (markers.py) -> term novelty -> tier -> six signals -> emergence

Every step returns its result *and* the evidence for it, which ends up in ``Tags.tier_rule`` and
``Tags.evidence`` so that a person can see why a message got its tags. The same steps are compiled in
``_core.pyx`` (see :func:`build_core`); this module is their reference and the fallback without it. The
definitions the rules implement are in ``docs/ace_tiers.md`` and ``docs/emergence_signals.md``.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any, Literal, NamedTuple, cast

import orjson
import structlog

from daemon.store.base import TagRow
from daemon.tagging.history import ConversationHistory, HistoryCache, PastMessage
from daemon.tagging.markers import _NOT_FIGURE, DEFAULT_AGENT_NAMES, DEFAULT_INDEX, NOT_FIGURE, MarkerIndex
from daemon.tagging.text import SCAN_CHARS, STOPWORDS, TextFeatures, extract
from daemon.tagging.tier_model import TierModel, default_model
from schemas import SIGNAL_NAMES, AgentMessage, Tags, Tier

try:  # the compiled pipeline (setup.py builds it from _core.pyx); without it the Python steps below run
    from daemon.tagging import _core
except ImportError:  # pragma: no cover - CI builds it, and a test says so
    _core = None  # type: ignore[assignment]

log = structlog.get_logger()

#: Bump when a lexicon, weight or threshold changes: tags of different versions live side by side.
RULES_VERSION = "rules-5"


def rules_version(tier_model: bool) -> str:
    """The ``tagger_version`` of the rules' tags: :data:`RULES_VERSION`, with ``-votes`` when the
    hand-weighted votes decide the tier instead of the tier model."""
    return RULES_VERSION if tier_model else RULES_VERSION + "-votes"


Hits = dict[str, list[str]]
#: What the tagger needs of a message: (message_id, agent, conversation_id, reply_to, content).
MessageFields = tuple[str, str, str, str | None, str]
#: The six signal scores, in ``SIGNAL_NAMES`` order.
SignalScores = tuple[int, int, int, int, int, int]


def message_fields(message: AgentMessage) -> MessageFields:
    """The :data:`MessageFields` of ``message``."""
    return (message.message_id, message.agent, message.conversation_id, message.reply_to, message.content)


class MessageContext(NamedTuple):
    """Everything the tier and signal steps may read about one message."""

    message_id: str
    agent: str
    reply_to: str | None
    features: TextFeatures
    hits: Hits
    novelty: int  #: term novelty 0..100 against the conversation's history
    history: Sequence[PastMessage]  #: earlier messages, oldest first (the live deque: do not keep it)
    senders: frozenset[str] | set[str]  #: names of senders seen in the conversation


class TierDecision(NamedTuple):
    """The tier, the rule that decided it, how sure, and the votes behind it."""

    tier: Tier
    rule: str
    confidence: float
    votes: dict[str, float]


class SignalScore(NamedTuple):
    """One signal's 0..100 score and what its evidence adds to the markers already listed under
    ``evidence["markers"]["<signal>.<family>"]`` (e.g. which message an error correction corrects)."""

    score: int
    evidence: dict[str, Any]


_new_tuple = tuple.__new__

#: Shared, never mutated: most signals have nothing to add to their markers.
_NO_EXTRA: dict[str, Any] = {}


def _clamp(value: float) -> int:
    rounded = round(value)
    # two comparisons rather than calls to min and max: this runs a dozen times per message
    return 0 if rounded < 0 else 100 if rounded > 100 else rounded


# ---------------------------------------------------------------- novelty against history


def term_novelty(features: TextFeatures, history: ConversationHistory) -> tuple[int, int, int]:
    """(score, unseen terms, content terms): the share of the message's content terms that the last
    messages of its conversation did not use, damped for messages too short to judge (under 8 terms)."""
    terms = features.content_terms
    if not terms:
        return 0, 0, 0
    unseen = history.unseen(terms)
    return _novelty_score(unseen, len(terms)), unseen, len(terms)


def _novelty_score(unseen: int, n_terms: int) -> int:
    """:func:`term_novelty`'s score from its counts (``n_terms`` > 0)."""
    share = unseen / n_terms
    damping = min(1.0, n_terms / 8)
    return _clamp(100 * share * damping)


# ---------------------------------------------------------------- tier

_E_CODE_SHARE = 0.4  #: a message mostly made of code is execution, whatever its prose says


#: Choosing markers that ask for the choice; with a question mark they make the message ask for a direction.
_ASKING_CHOICE = frozenset(
    {"should we use", "should we", "or do we", "or should we", "do we keep", "where should", "how should",
     "how should we", "do we need", "do we even need"}
)  # fmt: skip


#: Choosing markers that put forward an approach of their own (the subject is then the approach).
_PROPOSING = frozenset({"i propose", "propose we", "i propose we", "proposal"})


def _only_approvals(ratify: Sequence[str]) -> bool:
    """Whether every ratifying marker is a bare approval."""
    return bool(ratify) and all(m == "approved" for m in ratify)


def _offers_alternatives(joined: str) -> bool:
    """A "do we X, or Y?" question: it offers alternatives to choose between."""
    return " or " in joined and (" do we " in joined or " should we " in joined)


def classify_tier(features: TextFeatures, hits: Hits) -> TierDecision:
    """The ACE tier of one message from its markers and shape.

    Order of the rules, which is the ambiguity policy of ``docs/ace_tiers.md``:
    1. mostly code or a table -> E;
    2. a direction is proposed, chosen, asked for or ratified about a system-level subject -> A, even
       when phrased as dialogue;
    3. otherwise the larger of the execution and dialogue votes, execution winning ties when the
       message carries concrete work (numbers, tasks, status).
    """
    if features.code_share >= _E_CODE_SHARE:
        return TierDecision("E", "E.code_block", 0.95, {"code_share": round(features.code_share, 2)})
    if features.table_rows >= 3:
        return TierDecision("E", "E.table", 0.9, {"table_rows": features.table_rows})

    # len(get(family, ())): how many markers of the family the message has
    get = hits.get
    choice, system, ratify = len(get("A.choice", ())), len(get("A.system", ())), len(get("A.ratify", ()))
    # A direction needs a subject: proposing or asking only counts when it is about a system-level thing;
    # an explicit ratification ("Decision: ...") counts on its own.
    # An approval with nothing system-level around it ("Approved the PR.") accepts a deliverable, not a
    # direction: it weighs half.
    ratify_weight = 2.0 if system == 0 and not choice and _only_approvals(get("A.ratify", ())) else 4.0
    # A question asking for the choice ("should we ...?", "do we X, or Y?") is how a direction is asked for.
    asking = features.n_questions > 0 and (
        not _ASKING_CHOICE.isdisjoint(get("A.choice", ())) or _offers_alternatives(features.joined)
    )
    if asking and not choice:
        choice = 1
    # "I propose we ..." puts forward an approach: the overall approach is a system-level subject itself.
    if system == 0 and not _PROPOSING.isdisjoint(get("A.choice", ())):
        system = 1
    a_vote = ratify_weight * min(ratify, 2) + (
        (2.0 * choice + 1.0 * min(system, 3) + (1.0 if asking else 0.0)) if choice and system else 0.0
    )
    c_vote = (
        1.5 * len(get("C.agree", ()))
        + 1.5 * len(get("C.concern", ()))
        + 1.0 * len(get("C.question", ()))
        + 2.0 * len(get("C.reflection", ()))
        + 1.0 * len(get("C.synthesis", ()))
        + (1.0 if features.n_questions else 0.0)
        # weighing options and talking about who is good at what is dialogue, not a deliverable
        + 0.5 * min(len(get("solution_quality.tradeoff", ())), 4)
        + 1.0 * min(len(get("specialization_recognition.strength", ())), 2)
    )
    e_vote = (
        2.0 * len(get("E.status", ()))
        + 1.5 * len(get("E.task", ()))
        + 0.5 * min(len(get("E.spec", ())), 6)
        + min(3.0, features.n_digits / 8)
        + (2.0 if features.code_share > 0 else 0.0)
        # identifiers, commands and queries in `backticks`, and itemised lists: a deliverable's shape
        + 0.5 * min(features.inline_code, 6)
        + 0.5 * min(features.list_items, 6)
    )
    top_other = max(c_vote, e_vote)
    # a clear direction may be slightly outvoted; one choice about one subject must win outright
    if (a_vote >= 4.0 and a_vote >= top_other - 1.0) or (a_vote >= 3.0 and a_vote > top_other):
        tier: Tier = "A"
        rule = "A.direction_on_system" if features.n_questions == 0 else "A.direction_question"
    elif e_vote >= c_vote and e_vote > 0:
        tier, rule = "E", "E.concrete_work"
    elif c_vote > 0:
        tier, rule = "C", "C.dialogue"
    else:
        tier, rule = "C", "C.default_no_markers"
    ranked = sorted((a_vote, c_vote, e_vote), reverse=True)
    margin = ranked[0] - ranked[1]
    confidence = 0.4 if ranked[0] == 0 else min(0.95, 0.5 + 0.08 * margin)
    votes = {"A": round(a_vote, 2), "C": round(c_vote, 2), "E": round(e_vote, 2)}
    return TierDecision(tier, rule, round(confidence, 2), votes)


# ---------------------------------------------------------------- signals


def score_novelty(ctx: MessageContext) -> SignalScore:
    """Novelty: a new idea, angle or approach. Idea markers say an approach is put forward; the share of
    terms unseen in the conversation says whether it is new to it. Questioning a premise and carrying a
    technique over from another field are new angles by definition: in a message whose terms are mostly
    new to the conversation (term novelty 50 or more), each adds 20."""
    strong = ctx.hits.get("novelty.idea", ())
    weak = ctx.hits.get("novelty.weak_idea", ())
    angle = 0
    if ctx.novelty >= 50:
        families = ctx.hits.keys()
        if "assumption_challenge.premise" in families:
            angle += 20
        if "cross_domain_synthesis.field" in families and "cross_domain_synthesis.bridge" in families:
            angle += 20
    if not strong and not weak:
        return SignalScore(_clamp(min(30, ctx.novelty * 0.3) + angle), _NO_EXTRA)
    score = 30 * min(len(strong), 2) + 12 * min(len(weak), 3) + ctx.novelty * 0.3 + angle
    return SignalScore(_clamp(score), _NO_EXTRA)


def score_solution_quality(ctx: MessageContext) -> SignalScore:
    """Solution quality: a proposal (or a recommendation) that weighs trade-offs, risks or fallbacks."""
    trade = ctx.hits.get("solution_quality.tradeoff", ())
    proposal = ctx.hits.get("solution_quality.proposal", ())
    if not trade:
        return SignalScore(0, {})
    score = 18 * min(len(trade), 4) + (12 if proposal else 0)
    return SignalScore(_clamp(score), _NO_EXTRA)


def score_assumption_challenge(ctx: MessageContext) -> SignalScore:
    """Assumption challenge: questions the premise (do we need it at all? the right metric?)."""
    strong = ctx.hits.get("assumption_challenge.premise", ())
    weak = ctx.hits.get("assumption_challenge.weak", ())
    if not strong and not weak:
        return SignalScore(0, {})
    # a weak marker ("at all", "why not") alone is often rhetoric; it needs company or a question
    score = 45 * min(len(strong), 2) + 25 * min(len(weak), 2) + (10 if ctx.features.n_questions else 0)
    return SignalScore(_clamp(score), _NO_EXTRA)


_STRONG_CORRECTION = frozenset(
    {
        "correction", "is wrong", "was wrong", "were wrong", "conflicts with", "never defined",
        "needs a fix", "doesn't hold", "mixed up", "i mixed up", "didn't add up", "i claimed",
        "that's not right", "i don't think that's right", "correction to my", "i was wrong", "would lose",
        "would drop", "are wrong", "not <figure>", "overstated", "my mistake", "won't work", "doesn't work",
        "don't work", "needs fixing", "lost writes", "small gap", "one small thing", "one real problem",
        "is void", "not a real", "the wrong", "won't hold", "will miss", "doesn't match",
        "check the arithmetic", "overstates", "understates", "can't work as written", "nowhere near",
        "it's on us", "my bad", "need fixing", "can't stand", "that figure is", "reopens", "the 2.5x is off",
        "theory is out", "isn't the cause", "that one's on me", "i got that wrong",
    }
)  # fmt: skip


def _corrected_message(ctx: MessageContext, self_correction: bool) -> str | None:
    """Which earlier message is corrected: the sender's own latest one for a self-correction, else the one
    replied to, else the recent message sharing most content terms with this one."""
    history = ctx.history
    if not history:
        return None
    if self_correction:
        for past in reversed(history):
            if past.agent == ctx.agent:
                return past.message_id
    reply_to = ctx.reply_to
    if reply_to and any(p.message_id == reply_to for p in history):
        return reply_to
    if len(history) == 1:
        return history[0].message_id
    terms = ctx.features.content_terms
    # the last 6, newest first: on a tie the newest wins
    best = max(islice(reversed(history), 6), key=lambda p: len(p.terms & terms))
    return best.message_id


def score_error_correction(ctx: MessageContext) -> SignalScore:
    """Error correction: names a flaw in an earlier claim, plan or code and says what is right."""
    markers = ctx.hits.get("error_correction.flaw", ())
    if not markers:
        return SignalScore(0, {})
    strong = sum(1 for m in markers if m in _STRONG_CORRECTION)
    self_correction = bool(ctx.hits.get("error_correction.self"))
    # owning the mistake ("my bad", "I mixed up") makes a flaw named beside it a correction
    score = 25 * (len(markers) - strong) + 45 * strong + (20 if self_correction else 0)
    if score <= 40:
        return SignalScore(_clamp(score), _NO_EXTRA)
    corrects = _corrected_message(ctx, self_correction)
    return SignalScore(_clamp(score), {"corrects": corrects, "self": self_correction})


def score_cross_domain(ctx: MessageContext) -> SignalScore:
    """Cross-domain synthesis: a technique from a named field carried into ours ("borrow from audio").

    A named field and a bridge make it; without a field the lexicon knows, two explicit bridges ("network
    engineers solved this long ago ... borrow") do too: fields are too many to list them all."""
    fields = ctx.hits.get("cross_domain_synthesis.field", ())
    bridges = ctx.hits.get("cross_domain_synthesis.bridge", ())
    if not fields:
        explicit = [b for b in bridges if b in _EXPLICIT_BRIDGES]
        return SignalScore(_clamp(25 * min(len(explicit), 2)), _NO_EXTRA)
    score = 25 * min(len(fields), 2) + 25 * min(len(bridges), 2)
    return SignalScore(_clamp(score), _NO_EXTRA)


#: Bridges that say on their own that a technique comes from elsewhere (unlike "like a" or "the way").
_EXPLICIT_BRIDGES = frozenset(
    {"borrow", "borrowing", "borrowed", "borrowed from", "idea from", "analogue", "the analogue",
     "the equivalent", "inspired by", "solved this", "solved this long ago", "the same problem",
     "same problem", "dealt with", "have dealt with", "by analogy", "analogy", "take a page from",
     "standard practice in", "trick from", "technique from", "in the same way", "works like"}
)  # fmt: skip


def score_specialization(ctx: MessageContext) -> SignalScore:
    """Specialization recognition: strengths or roles attributed to named agents, or work divided by them."""
    strengths = ctx.hits.get("specialization_recognition.strength", ())
    if not strengths:
        return SignalScore(0, {})
    joined = ctx.features.joined
    # a known name as a word, or "Claude's specs" (which names Claude too); one pass over the few names
    names = sorted(
        {n for n in DEFAULT_AGENT_NAMES.union(ctx.senders) if f" {n} " in joined or f" {n}'s " in joined}
    )
    score = 30 * min(len(strengths), 3) + (15 * min(len(names), 2) if names else 0)
    return SignalScore(_clamp(score), {"agents": names} if names else _NO_EXTRA)


#: The signal steps, in the order of ``SIGNAL_NAMES``.
SIGNAL_STEPS: dict[str, Callable[[MessageContext], SignalScore]] = {
    "novelty": score_novelty,
    "solution_quality": score_solution_quality,
    "assumption_challenge": score_assumption_challenge,
    "error_correction": score_error_correction,
    "cross_domain_synthesis": score_cross_domain,
    "specialization_recognition": score_specialization,
}
if tuple(SIGNAL_STEPS) != SIGNAL_NAMES:  # pragma: no cover - guards the contract at import time
    raise RuntimeError("SIGNAL_STEPS must follow schemas.SIGNAL_NAMES")

#: signal -> the marker families without which its step scores 0 and adds no evidence (each step's first
#: test); ``tag_text`` skips the call when none of them matched. Novelty has none: term novelty alone
#: gives it a score.
SIGNAL_GATES: dict[str, tuple[str, ...]] = {
    "novelty": (),
    "solution_quality": ("solution_quality.tradeoff",),
    "assumption_challenge": ("assumption_challenge.premise", "assumption_challenge.weak"),
    "error_correction": ("error_correction.flaw",),
    "cross_domain_synthesis": ("cross_domain_synthesis.field", "cross_domain_synthesis.bridge"),
    "specialization_recognition": ("specialization_recognition.strength",),
}
_SIGNAL_PLAN = tuple((name, step, SIGNAL_GATES[name]) for name, step in SIGNAL_STEPS.items())


def emergence(scores: Iterable[int]) -> int:
    """A message's emergence: its strongest signal plus a quarter of each other signal that is at least
    weak (> 20), capped at 100. One very strong signal is very strong emergence; several moderate signals
    together count more than one."""
    values = list(scores)
    if not values:
        return 0
    top = max(values)
    if top <= 20:  # no signal is even weak: nothing to add (the sum below would be 0)
        return _clamp(top)
    others = sum([s for s in values if s > 20]) - top
    return _clamp(top + 0.25 * others)


def aggregate_emergence(message_scores: Iterable[int]) -> dict[str, float]:
    """A conversation's or a day's emergence from its messages' emergence scores.

    Returns ``{"mean": ..., "share_present": ..., "messages": n}``: the mean score (so long conversations
    are not favoured) and the share of messages whose emergence is above 40 (signal present).
    """
    values = list(message_scores)
    if not values:
        return {"mean": 0.0, "share_present": 0.0, "messages": 0}
    present = sum(1 for v in values if v > 40)
    return {
        "mean": round(sum(values) / len(values), 1),
        "share_present": round(present / len(values), 3),
        "messages": len(values),
    }


# ---------------------------------------------------------------- the compiled core

CoreChoice = Literal["auto", "compiled", "python"]
_CORE_CHOICES: tuple[CoreChoice, ...] = ("auto", "compiled", "python")


def core_choice(value: str | None = None) -> CoreChoice:
    """``value`` (default ``$ACED_TAG_CORE``, else ``"auto"``) as a :data:`CoreChoice`; ``ValueError``
    with one readable line for anything else."""
    raw = os.environ.get("ACED_TAG_CORE", "auto") if value is None else value
    choice = raw.strip().lower() or "auto"
    if choice not in _CORE_CHOICES:
        raise ValueError(f"ACED_TAG_CORE must be one of {', '.join(_CORE_CHOICES)}, not {raw!r}")
    return choice


def core_available() -> bool:
    """Whether the compiled core (``daemon/tagging/_core.pyx``) was built for this install."""
    return _core is not None


def require_core(choice: CoreChoice | None = None) -> CoreChoice:
    """:func:`core_choice`, and a ``ValueError`` (one readable line) when it is ``"compiled"`` on an
    install whose core was not built."""
    choice = core_choice(choice)
    if choice == "compiled" and _core is None:
        raise ValueError(
            "ACED_TAG_CORE=compiled, but the compiled tagger core was not built "
            "(reinstall with a C compiler and the Python headers: pip install -e .)"
        )
    return choice


def build_core(index: MarkerIndex, tier_model: TierModel | None, choice: CoreChoice | None = None) -> Any:
    """The compiled pipeline for ``index`` and ``tier_model``, or ``None`` where the Python steps run
    (``choice`` ``"python"``, or ``"auto"`` without a built core)."""
    choice = require_core(choice)
    if choice == "python" or _core is None:
        return None
    if "error_correction.flaw" not in {family for family, _ in index.ranked}:
        # the core lists a corrected figure under that family; lexicons without it run in Python
        if choice == "compiled":
            raise ValueError("the compiled tagger core needs lexicons with an error_correction.flaw family")
        return None
    # what the steps ask of a marker's text, asked once here: the core reads one flag per marker
    flags = []
    for family, marker in index.ranked:
        flag = 0
        if family == "A.choice":
            flag |= (_core.FLAG_ASKING if marker in _ASKING_CHOICE else 0) | (
                _core.FLAG_PROPOSING if marker in _PROPOSING else 0
            )
        elif family == "A.ratify" and marker == "approved":  # see _only_approvals
            flag |= _core.FLAG_APPROVED
        elif family == "error_correction.flaw" and marker in _STRONG_CORRECTION:
            flag |= _core.FLAG_STRONG
        elif family == "cross_domain_synthesis.bridge" and marker in _EXPLICIT_BRIDGES:
            flag |= _core.FLAG_EXPLICIT
        flags.append(flag)
    if NOT_FIGURE not in _STRONG_CORRECTION:  # pragma: no cover - the core counts it as strong
        raise RuntimeError("the compiled core assumes a corrected figure is a strong correction")
    return _core.Core(
        extract=extract,
        not_figure_search=_NOT_FIGURE.search,
        not_figure=NOT_FIGURE,
        stopwords=STOPWORDS,
        agent_names=DEFAULT_AGENT_NAMES,
        scan_chars=SCAN_CHARS,
        patterns=index.patterns,
        ranked=index.ranked,
        flags=flags,
        model_version=tier_model.version if tier_model is not None else None,
        tables=tier_model.tables() if tier_model is not None else None,
    )


# ---------------------------------------------------------------- the tagger


class RulesTagger:
    """Deterministic rules tagger (implements :class:`daemon.tagging.base.Tagger`).

    Keeps, per conversation, at most ``history`` earlier messages and an LRU of at most
    ``max_conversations`` conversations. Never reads ``sender_tags``.
    """

    #: see :func:`rules_version`
    version: str = RULES_VERSION

    def __init__(
        self,
        history: int = 20,
        max_conversations: int = 10_000,
        index: MarkerIndex = DEFAULT_INDEX,
        tier_model: TierModel | Literal["default"] | None = "default",
        core: CoreChoice | None = None,
    ) -> None:
        """``history``: earlier messages remembered per conversation; ``max_conversations``: LRU bound on
        conversations held in memory; ``index``: the compiled marker lexicons; ``tier_model``: the linear
        model that makes the final tier decision from the rules' evidence (``"default"``: the one shipped
        in ``tier_model.json``; ``None``: the hand-weighted votes decide); ``core``: which implementation of
        the steps runs, ``"compiled"`` (``_core.pyx``; an error where it was not built), ``"python"`` or
        ``"auto"`` (the compiled one where it was built); ``None``: ``$ACED_TAG_CORE``, else ``"auto"``.
        Both give the same tags."""
        self._cache = HistoryCache(history, max_conversations)
        self._index = index
        #: the linear model that makes the final tier decision (None: the hand-weighted votes decide)
        self._tier_model = default_model() if tier_model == "default" else tier_model
        self.version = rules_version(self._tier_model is not None)
        self._core = build_core(index, self._tier_model, core)

    @property
    def compiled(self) -> bool:
        """Whether the compiled core runs the steps (else the Python ones do)."""
        return self._core is not None

    @property
    def conversations_held(self) -> int:
        """How many conversations are in memory (at most ``max_conversations``)."""
        return len(self._cache)

    def prime(self, conversation_id: str, history: Sequence[AgentMessage]) -> None:
        """Forget what is held for ``conversation_id`` and load ``history`` (oldest first) instead."""
        self.prime_fields(conversation_id, [message_fields(m) for m in history])

    def prime_fields(self, conversation_id: str, history: Sequence[MessageFields]) -> None:
        """:meth:`prime` from ``(message_id, agent, conversation_id, reply_to, content)`` rows (what the
        daemon's tagger process receives)."""
        hist = self._cache.reset(conversation_id)
        for message_id, agent, _, _, content in history[-hist.max_messages :] if hist.max_messages else ():
            hist.add(PastMessage(message_id, agent, extract(content).content_terms))

    def tag_batch(self, messages: Sequence[AgentMessage]) -> list[Tags | None]:
        """Tag ``messages`` in order; a message that cannot be tagged gets ``None`` and a log line."""
        out: list[Tags | None] = []
        # A batch allocates many small, acyclic containers (evidence dicts, marker lists) that reference
        # counting frees; letting the cyclic collector run in the middle of it only re-scans every live
        # object of the process (a quarter of the tagging time in bench/tagging_speed.py). Pause it for
        # the batch and restore the previous state; the next allocation after the batch lets it catch up.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            tag_text = self.tag_text
            for message in messages:
                try:
                    # positional: what tag_one does, less its call and the keyword mapping
                    out.append(
                        tag_text(
                            message.content,
                            message.conversation_id,
                            message.message_id,
                            message.agent,
                            message.reply_to,
                        )
                    )
                except Exception as exc:  # the ingest path must never fail because of one odd message
                    log.warning(
                        "tagging_failed",
                        message_id=message.message_id,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    out.append(None)
        finally:
            if paused:
                gc.enable()
        return out

    def tag_one(self, message: AgentMessage) -> Tags:
        """Tag one message against its conversation's history, then add it to that history."""
        return self.tag_text(
            content=message.content,
            conversation_id=message.conversation_id,
            message_id=message.message_id,
            agent=message.agent,
            reply_to=message.reply_to,
        )

    def tag_text(
        self, content: str, conversation_id: str, message_id: str, agent: str, reply_to: str | None = None
    ) -> Tags:
        """Tag raw fields (what ``aced tag`` reads) and remember the message in its conversation."""
        tier, rule, confidence, scores, novelty, emergence_score, evidence = self._tag(
            content, conversation_id, message_id, agent, reply_to
        )
        return Tags.model_validate(
            {
                "tier": tier,
                "tier_rule": rule,
                "tier_confidence": confidence,
                "signals": dict(zip(SIGNAL_NAMES, scores, strict=True)),
                "novelty": novelty,
                "emergence": emergence_score,
                "tagger_version": self.version,
                "evidence": evidence,
            }
        )

    def tag_rows(self, rows: Iterable[MessageFields]) -> list[TagRow | str]:
        """Tag ``(message_id, agent, conversation_id, reply_to, content)`` rows in order, straight into the
        store's form (:data:`daemon.store.base.TagRow`): what the daemon's tagger process runs.

        The same tags as :meth:`tag_text` (a test compares them on every labelled message) without building
        a ``Tags`` model the store would only take apart again; a message that cannot be tagged gets the
        error's text instead of a row.
        """
        out: list[TagRow | str] = []
        version = self.version
        tag = self._tag
        dumps = orjson.dumps
        paused = gc.isenabled()  # see tag_batch
        if paused:
            gc.disable()
        try:
            if self._core is not None:  # the same loop, compiled
                return cast(
                    list[TagRow | str], self._core.tag_rows(rows, self._cache, version, dumps, PastMessage)
                )
            for message_id, agent, conversation_id, reply_to, content in rows:
                try:
                    tier, rule, confidence, scores, novelty, emergence_score, evidence = tag(
                        content, conversation_id, message_id, agent, reply_to
                    )
                    evidence_json = dumps(evidence).decode()
                    # the six scores in SIGNAL_NAMES order, which is the row's order
                    out.append(
                        (version, tier, rule, confidence, novelty, emergence_score, *scores, evidence_json)
                    )
                except Exception as exc:  # one odd message must not cost the batch its tags
                    out.append(f"{type(exc).__name__}: {exc}")
        finally:
            if paused:
                gc.enable()
        return out

    def _tag(
        self, content: str, conversation_id: str, message_id: str, agent: str, reply_to: str | None
    ) -> tuple[Tier, str, float, SignalScores, int, int, dict[str, Any]]:
        """The pipeline for one message: (tier, rule, confidence, signal scores in ``SIGNAL_NAMES``
        order, novelty, emergence, evidence). Remembers the message in its conversation.

        Runs the compiled core where there is one, else :meth:`_tag_python`: the same steps, the same tags.
        """
        hist = self._cache.get(conversation_id)
        core = self._core
        if core is None:
            return self._tag_python(hist, content, message_id, agent, reply_to)
        tier, rule, confidence, scores, novelty, emergence_score, evidence, terms = core.tag(
            content, message_id, agent, reply_to, hist
        )
        # tuple.__new__: the PastMessage without the Python-level __new__ a NamedTuple call goes through
        hist.add(_new_tuple(PastMessage, (message_id, agent, terms)), terms_seen=True)
        return tier, rule, confidence, scores, novelty, emergence_score, evidence

    def _tag_python(
        self, hist: ConversationHistory, content: str, message_id: str, agent: str, reply_to: str | None
    ) -> tuple[Tier, str, float, SignalScores, int, int, dict[str, Any]]:
        """:meth:`_tag` in Python: the reference the compiled core (``_core.pyx``) is tested against."""
        features = extract(content)
        hits = self._index.match(features)
        # term_novelty's figures, counted while the terms join the history's seen set (hist.add below is told
        # so): one set operation instead of two. Were a later step to raise, the terms would count as seen
        # for the conversation's next messages though this one is not remembered; no step raises on content.
        terms = features.content_terms
        unseen = hist.unseen_then_seen(terms) if terms else 0
        n_terms = len(terms)
        novelty = _novelty_score(unseen, n_terms) if terms else 0
        ctx = MessageContext(message_id, agent, reply_to, features, hits, novelty, hist.messages, hist.agents)
        decision = classify_tier(features, hits)
        tier, rule, confidence = decision.tier, decision.rule, decision.confidence
        model_evidence: dict[str, Any] | None = None
        if self._tier_model is not None:
            model = self._tier_model.decide(features, hits, decision.votes, decision.tier)
            model_evidence = model.evidence
            if model.tier != tier:
                # the model overrode the hand rules: say so in the rule, keep the rules' verdict as evidence
                model_evidence["rules_said"] = [tier, rule]
                tier, rule = cast(Tier, model.tier), "tier_model." + model.tier
            confidence = round(model.confidence, 2)
        scores: dict[str, int] = {}
        signal_evidence: dict[str, Any] = {}
        families = hits.keys()
        for name, step, gate in _SIGNAL_PLAN:
            if gate and families.isdisjoint(gate):
                scores[name] = 0  # what the step returns without its markers
                continue
            result = step(ctx)
            scores[name] = result.score
            if result.evidence:
                signal_evidence[name] = result.evidence
        evidence: dict[str, Any] = {
            "tier_votes": decision.votes,
            **({"tier_model": model_evidence} if model_evidence is not None else {}),
            "markers": hits,
            "signals": signal_evidence,
            "novelty": {"unseen_terms": unseen, "terms": n_terms, "history": len(ctx.history)},
        }
        if features.quoted_lines:
            evidence["quoted_lines_ignored"] = features.quoted_lines
        if features.truncated:
            evidence["scanned_chars"] = SCAN_CHARS
        hist.add(PastMessage(message_id, agent, terms), terms_seen=True)
        values = cast(SignalScores, tuple(scores.values()))
        return tier, rule, confidence, values, novelty, emergence(values), evidence
