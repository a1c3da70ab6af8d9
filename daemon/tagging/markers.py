"""Step 2 of the rules pipeline: marker lexicons and the index that finds them in one pass.

A marker is a word or a phrase, matched on whole tokens (never substrings). Instead of running one regex per
marker, every marker is indexed by one *anchor* token (its longest word): a message's token set is
intersected with the anchor set in C, and only the few phrases whose anchor occurs are checked against the
message's joined tokens. The cost therefore barely depends on how many markers the lexicons hold.

The lexicons are the recognition guide of ``docs/ace_tiers.md`` and ``docs/emergence_signals.md`` in
machine form; change both together and bump ``RULES_VERSION`` in ``rules.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import chain

from daemon.tagging.text import STOPWORDS, TextFeatures, tokenize

#: family -> markers. Families starting with "a.", "c.", "e." vote for a tier; the others feed signals.
LEXICONS: dict[str, tuple[str, ...]] = {
    # -- A: choosing, proposing or ratifying a direction
    "A.ratify": (
        "decision",
        "we decide",
        "decided",
        "approved",
        "the direction is",
        "let's settle",
        "settle the approach",
        "lock this in",
        "ship it",
        "convinced",
        "standard path",
        "the standard from now on",
        "off the table",
        "becomes the default",
    ),
    "A.choice": (
        "should we use",
        "should we",
        "or do we",
        "do we keep",
        "i'd go with",
        "go with",
        "we go with",
        "i propose",
        "propose we",
        "proposal",
        "i lean",
        "direction",
        "ratify",
        "rules it out",
        "the standard",
        "strategy",
        "for the quarter",
        "i'd keep",
        "we revisit",
        "where should",
        "how should we",
        "from day one",
        "recommendation",
        "the approach",
        "hybrid",
        "stay",
        "stays",
        "alternative",
        "we could",
        "do we need",
        "do we even need",
        "instead of",
        "right output",
        "the real fix",
        "i'd rather",
        "i'd still",
        "i'd add",
        "i'd swap",
        "my vote",
        "or should we",
        "how should",
        "pick",
        "choose",
        "candidates",
        "what if",
        "belongs",
    ),
    "A.system": (
        "architecture",
        "architectural",
        "infrastructure",
        "broker",
        "transport",
        "redis",
        "kafka",
        "sqlite",
        "postgresql",
        "postgres",
        "database",
        "message queue",
        "pipeline",
        "foundation model",
        "fine-tune",
        "product",
        "scope",
        "roadmap",
        "production",
        "backend",
        "framework",
        "technology",
        "http",
        "endpoint",
        "cache",
        "schedule them",
        "scheduler",
        "fair-share",
        "output format",
        "store",
        "service",
        "approach",
        "meshes",
        "model",
        "daemon",
        "eval",
        "distil",
        "always-on",
        "strategy",
        "next quarter",
        "this quarter",
        "the quarter",
        "the record",
        "licence",
        "license",
        "fine tuning",
        "fine-tuned",
        "pretrained",
        "from scratch",
        "stream",
        "streams",
        "ingest",
        "dashboard",
        "plugin",
        "multi-host",
    ),
    # -- C: dialogue that integrates perspectives
    "C.agree": (
        "agree",
        "agreed",
        "i agree",
        "fair",
        "good point",
        "fair question",
        "fair challenge",
        "i like",
        "interesting",
        "makes sense",
        "fine with me",
        "sensible",
        "nice idea",
        "good compromise",
        "even better",
        "will do",
        "i'd support",
        "possibly",
        "ok but",
    ),
    "C.concern": (
        "concern",
        "worry",
        "worries",
        "i worry",
        "not sure",
        "i don't think",
        "doubt",
        "wonder",
        "i wonder",
        "proxy",
        "risk",
        "silos",
        "within noise",
        "i wouldn't",
        "don't feel strongly",
        "redundant",
        "odd one out",
        "i'd leave it out",
        "weakness",
    ),
    "C.question": (
        "what do you think",
        "do we want",
        "should the",
        "question",
        "what happened",
        "what should change",
        "what do",
        "how did",
        "do we risk",
        "are we",
        "is it",
        "why not",
    ),
    "C.reflection": (
        "retro",
        "work together",
        "worked together",
        "what worked",
        "didn't work",
        "teamwork",
        "blind spots",
        "over-explain",
        "collaboration",
        "process problem",
        "honestly",
        "in retrospect",
        "reasoning",
        "postmortem",
        "what happened",
        "looking back",
        "reviewing each other",
        "roles",
        "right call",
        "great work",
    ),
    "C.synthesis": ("both", "middle ground", "compromise", "combine", "defaults, not rules", "rather than"),
    # -- E: concrete work
    "E.status": (
        "status",
        "merged",
        "done",
        "fixed",
        "pushed",
        "tests pass",
        "ci green",
        "queued",
        "running",
        "eta",
        "deployed",
        "applied",
        "implemented",
        "implementing",
        "tested",
        "went well",
        "tests green",
        "test added",
        "is up",
        "dropped from",
        "back to",
        "tried it",
        "updated",
        "cache build",
        "timeline",
        "confirmed",
        "switched",
        "persisted",
        "ablation",
        "seeds",
    ),
    "E.task": (
        "i'll",
        "i will",
        "will take",
        "i'll take",
        "on it",
        "action items",
        "tasks",
        "todo",
        "estimates",
        "sprint plan",
        "board",
        "checklist",
        "test plan",
        "pr",
        "ack",
        "by friday",
        "by wednesday",
        "by tuesday",
        "tonight",
        "tomorrow",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "draft",
        "please review",
        "who takes what",
        "deployment",
        "rollout",
        "i'll write",
        "pairing",
        "should take",
        "i'll draft",
        "rerun",
        "add a unit test",
        "write it up",
    ),
    "E.spec": (
        "spec",
        "class",
        "def",
        "post",
        "config",
        "parameters",
        "lr",
        "batch",
        "iterations",
        "weight decay",
        "tests",
        "unit test",
        "test",
        "argument",
        "returns",
        "response",
        "body",
        "mib",
        "gb",
        "tb",
        "ms",
        "it/s",
        "xreadgroup",
        "xautoclaim",
        "xtrim",
        "systemd",
        "restart",
        "pragma",
        "begin immediate",
        "command",
        "flag",
        "metrics",
        "json",
        "png",
        "file",
        "branch",
        "commit",
        "merge",
        "set",
        "cap",
        "clamp",
        "fix",
        "seed",
        "key",
        "step",
    ),
    # -- signals
    "novelty.idea": (
        "what if",
        "one more idea",
        "new idea",
        "an idea",
        "idea from",
        "alternative",
        "alternatively",
        "i propose",
        "we could",
        "hybrid",
        "middle ground",
        "equivalent",
        "analogue",
        "i'd go further",
        "borrow",
        "borrowing",
        "treat it as",
        "treat it like",
        "here's a",
        "i propose we",
        "could use",
        "what do the users",
        "that could explain",
        "et si",
        "approche différente",
        "let's also treat",
        "we could require",
        "proposal:",
    ),
    "novelty.weak_idea": (
        "another",
        "maybe",
        "should probably",
        "would give us",
        "we'd add",
        "specialist",
        "more sensitive",
        "adaptively",
        "i'd go with",
        "instead",
        "proposal",
        "idea",
    ),
    "solution_quality.tradeoff": (
        "trade-off",
        "tradeoff",
        "cost",
        "costs",
        "at the cost of",
        "risk",
        "the risk",
        "fallback",
        "cheaper",
        "downside",
        "weakness",
        "we lose",
        "safer",
        "rather than",
        "plenty",
        "negligible",
        "but",
        "would buy us",
        "in that case",
        "expensive",
        "we'd need",
        "without",
        "so we don't",
        "lower rate",
        "i'd start with",
        "for now",
        "keeps",
        "keep",
        "which removes",
        "instead",
        "is right for",
        "need a",
        "would need",
        "more stable",
        "worries me",
        "the cost",
        "last resort",
        "nice to have",
    ),
    "solution_quality.proposal": (
        "i'd",
        "let's",
        "we could",
        "i propose",
        "option",
        "alternative",
        "should",
        "i'd rather",
        "i'd keep",
        "i'd start",
        "a middle ground",
        "go with",
        "we'd",
        "my vote",
    ),
    "assumption_challenge.premise": (
        "are we sure",
        "do we need",
        "do we even",
        "wrong problem",
        "right thing",
        "are we measuring",
        "is it fair",
        "premise",
        "over-engineering",
        "shouldn't we ask",
        "the real fix",
        "isn't the lever",
        "actually do",
        "even sure",
        "even keep",
        "fair benchmark",
        "easy case",
        "right output",
        "before we lock",
        "do we even need",
        "should the daemon even",
        "needed at all",
        "still the right",
    ),
    "assumption_challenge.weak": (
        "at all",
        "why not",
        "i'm not sure",
        "i don't think",
        "something else",
        "proxy",
        "really",
    ),
    "error_correction.flaw": (
        "correction",
        "bug",
        "is wrong",
        "was wrong",
        "were wrong",
        "not right",
        "that's not right",
        "conflicts with",
        "would lose",
        "won't invalidate",
        "needs a fix",
        "never defined",
        "doesn't hold",
        "can't start before",
        "mixed up",
        "i claimed",
        "smaller than i said",
        "didn't add up",
        "isn't the",
        "that's not a",
        "by accident",
        "careful",
        "re-spawns",
        "looks fresh",
        "otherwise",
        "not 500",
        "would lose them",
        "the slowdown isn't",
        "i don't think that's right",
        "lost per epoch",
        "only on one gpu",
        "wait",
        "would drop",
        "stale",
        "the wrong",
    ),
    "error_correction.self": (
        "i mixed up",
        "i claimed",
        "my numbers",
        "i had the",
        "correction to my",
        "i was wrong",
    ),
    "cross_domain_synthesis.bridge": (
        "borrow",
        "borrowing",
        "borrowed",
        "idea from",
        "from robotics",
        "analogue",
        "equivalent",
        "inspired by",
        "treat it as",
        "treat it like",
        "treat the",
        "like a",
        "like spot",
        "like cfs",
        "like masked",
        "comme en",
        "from speech",
        "from nlp",
        "from audio",
        "from multi-view",
        "really a",
        "the way",
        "like in",
        "from video",
        "from 3d",
    ),
    "cross_domain_synthesis.field": (
        "economics",
        "market",
        "auction",
        "robotics",
        "next-best-view",
        "control theory",
        "integrator",
        "signal processing",
        "signal-processing",
        "audio",
        "speech",
        "speech recognition",
        "specaugment",
        "operating systems",
        "kernel",
        "cfs",
        "nlp",
        "transformers",
        "masked autoencoders",
        "compiler",
        "compilers",
        "lexer",
        "lexers",
        "biology",
        "physics",
        "inpainting",
        "video",
        "multi-view stereo",
        "3d scanning",
        "traitement du signal",
        "image",
        "games",
        "game engine",
        "game engines",
        "finance",
        "statistics",
        "epidemiology",
        "linguistics",
        "pid",
    ),
    "specialization_recognition.strength": (
        "better at",
        "best",
        "faster than",
        "much faster",
        "strongest",
        "strength",
        "strengths",
        "knows",
        "owns",
        "role",
        "roles",
        "specialist",
        "good at",
        "careful",
        "more careful",
        "breadth",
        "depth",
        "by strength",
        "splitting",
        "split",
        "focus on",
        "better writer",
        "blind spots",
        "quicker",
        "slower",
        "you spotted",
        "i knew",
        "do best",
        "where i've been strongest",
        "does best",
        "scouts",
        "i tend to",
    ),
}

#: Agent and person names a message may credit; names seen in a conversation's history are added at run time.
DEFAULT_AGENT_NAMES = frozenset({"claude", "gemini", "gpt", "codex", "llama", "mistral"})


#: Words too frequent to anchor a phrase on (with STOPWORDS): a phrase anchored on "with" would be checked
#: in nearly every message.
_FREQUENT = frozenset(
    """
    with from like would should could keep right even need before write tests test is it on for the what
    are that go do we i'd i'll let's you're it's we're that's good point really first also new time
    """.split()
)


def _anchor(tokens: tuple[str, ...]) -> str:
    """The word a phrase is indexed by: its longest word that is not frequent, else its longest word."""
    return max(tokens, key=lambda t: (t not in _FREQUENT and t not in STOPWORDS, len(t)))


class MarkerIndex:
    """All lexicons compiled into an anchor index; :meth:`match` finds every marker in one pass.

    The evidence order is fixed by the anchors: markers are listed by (anchor, family, marker), where the
    anchor is the word :func:`_anchor` indexes a phrase by (a one-word marker is its own anchor). Every marker
    gets its *rank* in that order once, here; :meth:`match` collects the ranks of the markers it finds in any
    order, sorts those few integers and groups them by family. That frees the lookups from walking the anchors
    in order, so one-word markers come out of a set intersection and a C-level chain instead of a Python loop.
    """

    __slots__ = ("_phrase_keys", "_phrases", "_ranked", "_single_keys", "_singles")

    def __init__(self, lexicons: Mapping[str, Iterable[str]]) -> None:
        """Index ``lexicons`` (family -> markers); markers are tokenised exactly like message text."""
        entries: set[tuple[str, str, str, str, tuple[str, ...]]] = set()
        for family, markers in lexicons.items():
            for marker in markers:
                toks = tokenize(marker)
                if not toks:
                    raise ValueError(f"marker {marker!r} of {family} has no word in it")
                # A one-word marker is found by the set intersection alone (its phrase is ""); a phrase is
                # then confirmed on the joined tokens, which only happens when its rarest-looking word occurs.
                anchor = toks[0] if len(toks) == 1 else _anchor(toks)
                phrase = "" if len(toks) == 1 else " " + " ".join(toks) + " "
                entries.add((anchor, family, " ".join(toks), phrase, toks))
        singles: dict[str, list[int]] = {}
        phrase_ranks: dict[str, list[int]] = {}  # a phrase may be a marker of several families
        phrases: dict[str, dict[str, frozenset[str]]] = {}
        ranked: list[tuple[str, str]] = []
        for rank, (anchor, family, marker, phrase, toks) in enumerate(sorted(entries)):
            ranked.append((family, marker))
            if phrase:
                phrase_ranks.setdefault(phrase, []).append(rank)
                phrases.setdefault(anchor, {})[phrase] = frozenset(toks)
            else:
                singles.setdefault(anchor, []).append(rank)
        self._ranked = tuple(ranked)
        self._singles = {k: tuple(v) for k, v in singles.items()}
        self._single_keys = frozenset(singles)
        # All of a phrase's words must be among the message's tokens before the (dearer) substring search
        # runs: a frequent anchor ("with" of "go with") then rarely costs a search through the message.
        self._phrases = {
            anchor: tuple((phrase, words, tuple(phrase_ranks[phrase])) for phrase, words in by_phrase.items())
            for anchor, by_phrase in phrases.items()
        }
        self._phrase_keys = frozenset(phrases)

    def match(self, features: TextFeatures) -> dict[str, list[str]]:
        """family -> markers found in ``features``, in a fixed order (families with no hit are absent)."""
        token_set = features.token_set
        # one-word markers: every rank of every marker word present, without a Python-level loop
        ranks = list(chain.from_iterable(map(self._singles.__getitem__, token_set & self._single_keys)))
        joined = features.joined
        for phrase, words, phrase_ranks in chain.from_iterable(
            map(self._phrases.__getitem__, token_set & self._phrase_keys)
        ):
            if words <= token_set and phrase in joined:
                ranks += phrase_ranks
        # Sorted ranks: set iteration order depends on the per-process string hash seed, and the evidence
        # must be the same in every process.
        ranks.sort()
        return _group(ranks, self._ranked)


def _group(ranks: list[int], ranked: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    """family -> markers of the sorted ``ranks``, families in order of their first marker."""
    out: dict[str, list[str]] = {}
    for rank in ranks:
        family, marker = ranked[rank]
        found = out.get(family)
        if found is None:
            out[family] = [marker]
        else:
            found.append(marker)
    return out


#: The index the rules tagger uses.
DEFAULT_INDEX = MarkerIndex(LEXICONS)
