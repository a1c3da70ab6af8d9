"""Step 4b of the rules pipeline: a linear model that makes the final tier decision from the rules' evidence.

The hand-weighted votes of :func:`daemon.tagging.rules.classify_tier` carry over poorly to writers the rules
were not tuned on (see ``tests/data/tagging/README.md``). This step keeps everything the rules compute (the
markers found, the votes, the rules' own tier, the shape of the message) and adds the words of the message,
and lets a multinomial logistic regression weigh them. The weights are learned from the labelled
development files only (``python -m daemon.tagging.train_tier_model``), are shipped as
``tier_model.json``, and are applied with plain Python arithmetic: deterministic, no numpy at run time.

Every decision carries its evidence: the rules' tier and rule, the model's three scores, and the features
that pushed hardest towards the chosen tier.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from itertools import chain
from typing import Any, NamedTuple

from daemon.tagging.text import TextFeatures

TIERS = ("A", "C", "E")
_log1p = math.log1p


class ModelDecision(NamedTuple):
    """The model's tier, its probability, and why."""

    tier: str
    confidence: float  #: softmax probability of ``tier``
    evidence: dict[str, Any]


def tier_features(
    features: TextFeatures,
    hits: Mapping[str, list[str]],
    votes: Mapping[str, float],
    rules_tier: str,
    words: bool = True,
) -> dict[str, float]:
    """The model's input for one message: marker families (log counts), each marker, the rules' votes and
    tier, the message's shape, and (``words``) each distinct word (presence)."""
    fv: dict[str, float] = {}
    for family, markers in hits.items():
        fv["fam:" + family] = _log1p(len(markers))
        for marker in markers:
            fv["m:" + marker] = 1.0
    for tier in TIERS:
        vote = votes.get(tier)
        fv["vote:" + tier] = vote / 4 if vote is not None else 0.0
    fv["rule:" + rules_tier] = 1.0
    fv.update(zip(_SHAPE, _shape_values(features), strict=True))
    if words:
        for token in set(features.tokens):
            fv["w:" + token] = 1.0
    return fv


#: The message's shape, as features: a question, figures, code, inline code, list items, length.
_SHAPE = ("q", "digits", "code", "inline", "list", "len")


def _shape_values(features: TextFeatures) -> tuple[float, float, float, float, float, float]:
    """The values of the :data:`_SHAPE` features, in that order."""
    return (
        1.0 if features.n_questions else 0.0,
        min(3.0, features.n_digits / 8),
        1.0 if features.code_share > 0 else 0.0,
        min(features.inline_code, 6) / 3,
        min(features.list_items, 6) / 3,
        _log1p(features.n_chars) / 7,
    )


class TierModel:
    """A trained linear tier model: ``score[t] = bias[t] + sum(value * weight[feature][t])``.

    Only score differences matter (softmax does not change when one number is added to all three scores), so
    each weight is kept as one complex number, (A - E) + (C - E)j: one multiply-add per feature, and one
    C-level sum for the words, which are most of a message's features and all have the value 1.
    """

    __slots__ = (
        "_bias", "_by_family", "_by_marker", "_by_token", "_rules", "_shape", "_votes",
        "bias", "version", "weights",
    )  # fmt: skip

    def __init__(self, version: str, bias: tuple[float, float, float], weights: dict[str, tuple[float, ...]]):
        """``weights``: feature -> (weight for A, C, E); features not listed weigh nothing."""
        if len(bias) != len(TIERS) or any(len(w) != len(TIERS) for w in weights.values()):
            raise ValueError("a tier model needs three weights per feature and three biases")
        self.version = version
        self.bias = bias
        self.weights = weights
        self._bias = complex(bias[0] - bias[2], bias[1] - bias[2])
        as_complex = {k: complex(w[0] - w[2], w[1] - w[2]) for k, w in weights.items()}
        # keyed by the word, marker or family itself, so that no "w:" / "m:" / "fam:" string is built per use
        # (a word that weighs nothing is left out: it would add nothing to the sum either way)
        self._by_token = {k[2:]: z for k, z in as_complex.items() if k.startswith("w:") and z}
        # (feature name, weight): the pair decide() records as evidence, built once here instead of per use
        self._by_marker = {k[2:]: (k, z) for k, z in as_complex.items() if k.startswith("m:")}
        self._by_family = {k[4:]: (k, z) for k, z in as_complex.items() if k.startswith("fam:")}
        # the weights of the other features in tier_features' order (None: the model does not use it)
        self._votes = tuple((t, as_complex.get("vote:" + t)) for t in TIERS)
        self._rules = {t: ("rule:" + t, as_complex.get("rule:" + t)) for t in TIERS}
        self._shape = tuple(as_complex.get(k) for k in _SHAPE)

    def tables(self) -> dict[str, Any]:
        """The weights as the compiled core (``daemon/tagging/_core.pyx``) reads them: by family, by marker
        and by word, then the vote, rule and shape weights (``None``: not used) and the bias, all as
        (A - E) + (C - E)j."""
        return {
            "by_family": self._by_family,
            "by_marker": self._by_marker,
            "by_token": self._by_token,
            "votes": tuple(w for _, w in self._votes),
            "rules": tuple(self._rules[t][1] for t in TIERS),
            "shape": self._shape,
            "bias": self._bias,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TierModel:
        """Inverse of :meth:`to_json`."""
        return cls(
            str(data["version"]),
            (float(data["bias"][0]), float(data["bias"][1]), float(data["bias"][2])),
            {k: (float(w[0]), float(w[1]), float(w[2])) for k, w in data["weights"].items()},
        )

    def to_json(self, **meta: Any) -> dict[str, Any]:
        """The model as a JSON object (``meta``: how it was trained, stored beside it)."""
        return {"version": self.version, **meta, "bias": list(self.bias), "weights": self.weights}

    def decide(
        self,
        features: TextFeatures,
        hits: Mapping[str, list[str]],
        votes: Mapping[str, float],
        rules_tier: str,
    ) -> ModelDecision:
        """The tier with the highest score for one message (the first of equals, in A, C, E order): the same
        result as :meth:`decide_features` of :func:`tier_features`, without building that dict."""
        z = self._bias
        used: list[tuple[str, complex]] = []
        by_family, by_marker = self._by_family.get, self._by_marker.get
        for family, markers in hits.items():
            named = by_family(family)
            if named is not None:
                contribution = _log1p(len(markers)) * named[1]
                z += contribution
                used.append((named[0], contribution))
        # a marker is one feature even when it belongs to two families (as in tier_features); they are added
        # in the order of the evidence, not of a set, so that the float sum does not depend on the string
        # hash seed (and the compiled core, daemon/tagging/_core.pyx, adds them in the same order)
        for marker in dict.fromkeys(chain.from_iterable(hits.values())):
            named = by_marker(marker)
            if named is not None:
                z += named[1]
                used.append(named)
        # The other features, added in tier_features' order (a feature whose value is 0 adds nothing and
        # pushes towards no tier, so it is left out of the evidence's candidates too).
        for tier, w in self._votes:
            vote = votes.get(tier)
            if w is not None and vote:
                contribution = vote / 4 * w
                z += contribution
                used.append(("vote:" + tier, contribution))
        rule_name, w = self._rules[rules_tier]
        if w is not None:
            z += w
            used.append((rule_name, w))
        for name, value, w in zip(_SHAPE, _shape_values(features), self._shape, strict=True):
            if w is not None and value:
                contribution = value * w
                z += contribution
                used.append((name, contribution))
        # each distinct word once, in the order of its first occurrence (see the markers above), added one by
        # one: sum() may compensate rounding errors in later Pythons, the compiled core does not
        words = 0j
        for w in filter(None, map(self._by_token.get, dict.fromkeys(features.tokens))):
            words += w
        return self._decision(z + words, used, words)

    def decide_features(self, fv: Mapping[str, float]) -> ModelDecision:
        """:meth:`decide` from a feature dict (what training sees): the reference the fast path is tested
        against."""
        z = self._bias
        used: list[tuple[str, complex]] = []
        words = 0j
        for feature, value in fv.items():
            w = self.weights.get(feature)
            if w is None:
                continue
            contribution = value * complex(w[0] - w[2], w[1] - w[2])
            if feature.startswith("w:"):
                words += contribution
            else:
                z += contribution
                used.append((feature, contribution))
        return self._decision(z + words, used, words)

    def _decision(self, z: complex, used: list[tuple[str, complex]], words: complex) -> ModelDecision:
        """``z``: the scores of A and C relative to E (E is 0); ``words``: what the words added to them."""
        a, c = z.real, z.imag
        best = 0 if a >= c and a >= 0.0 else (1 if c >= 0.0 else 2)
        top = max(a, c, 0.0)
        total = math.exp(a - top) + math.exp(c - top) + math.exp(-top)
        # What pushed hardest towards the chosen tier; the words (dozens, each small) count together. The push
        # of (A - E) + (C - E)j towards A is re - im/2, towards C im - re/2, towards E -(re + im)/2.
        used.append(("words", words))
        if best == 0:
            candidates = [(w.real - w.imag / 2, f) for f, w in used]
        elif best == 1:
            candidates = [(w.imag - w.real / 2, f) for f, w in used]
        else:
            candidates = [(-(w.real + w.imag) / 2, f) for f, w in used]
        candidates.sort(reverse=True)
        evidence = {
            "model": self.version,
            "scores_vs_E": {"A": round(a, 2), "C": round(c, 2)},
            "top": [[f, round(p, 2)] for p, f in candidates[:3] if p > 0],
        }
        return ModelDecision(TIERS[best], 1.0 / total, evidence)


@lru_cache(maxsize=1)
def default_model() -> TierModel:
    """The model shipped with the package (``daemon/tagging/tier_model.json``)."""
    text = resources.files("daemon.tagging").joinpath("tier_model.json").read_text(encoding="utf-8")
    return TierModel.from_json(json.loads(text))
