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
    fv["q"] = 1.0 if features.n_questions else 0.0
    fv["digits"] = min(3.0, features.n_digits / 8)
    fv["code"] = 1.0 if features.code_share > 0 else 0.0
    fv["inline"] = min(features.inline_code, 6) / 3
    fv["list"] = min(features.list_items, 6) / 3
    fv["len"] = _log1p(features.n_chars) / 7
    if words:
        for token in set(features.tokens):
            fv["w:" + token] = 1.0
    return fv


class TierModel:
    """A trained linear tier model: ``score[t] = bias[t] + sum(value * weight[feature][t])``."""

    __slots__ = ("_by_token", "_other", "_vocab", "bias", "version", "weights")

    def __init__(self, version: str, bias: tuple[float, float, float], weights: dict[str, tuple[float, ...]]):
        """``weights``: feature -> (weight for A, C, E); features not listed weigh nothing."""
        if len(bias) != len(TIERS) or any(len(w) != len(TIERS) for w in weights.values()):
            raise ValueError("a tier model needs three weights per feature and three biases")
        self.version = version
        self.bias = bias
        self.weights = weights
        # Word features are most of a message's features and all have the value 1. Only score differences
        # matter (softmax does not change when one number is added to all three scores), so each word is
        # kept as one complex number, (A - E) + (C - E)j: one C-level sum adds both differences up.
        words = {k[2:]: w for k, w in weights.items() if k.startswith("w:")}
        self._by_token = {t: complex(w[0] - w[2], w[1] - w[2]) for t, w in words.items()}
        self._vocab = frozenset(self._by_token)
        self._other = {k: w for k, w in weights.items() if not k.startswith("w:")}

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
        fv = tier_features(features, {}, votes, rules_tier, words=False)
        for family, markers in hits.items():
            fv["fam:" + family] = _log1p(len(markers))
            for marker in markers:
                fv["m:" + marker] = 1.0
        a, c, e = self.bias
        other = self._other
        used: list[tuple[str, float, tuple[float, ...]]] = []
        for feature, value in fv.items():
            w = other.get(feature)
            if w is not None:
                a += value * w[0]
                c += value * w[1]
                e += value * w[2]
                used.append((feature, value, w))
        by_token = self._by_token
        z = sum(map(by_token.__getitem__, self._vocab.intersection(features.tokens)), 0j)
        return self._decision((a - e + z.real, c - e + z.imag, 0.0), used, z)

    def decide_features(self, fv: Mapping[str, float]) -> ModelDecision:
        """:meth:`decide` from a feature dict (what training sees): the reference the fast path is tested
        against."""
        a, c, e = self.bias
        used: list[tuple[str, float, tuple[float, ...]]] = []
        z = 0j
        for feature, value in fv.items():
            w = self.weights.get(feature)
            if w is None:
                continue
            if feature.startswith("w:"):
                z += value * complex(w[0] - w[2], w[1] - w[2])
            else:
                a += value * w[0]
                c += value * w[1]
                e += value * w[2]
                used.append((feature, value, w))
        return self._decision((a - e + z.real, c - e + z.imag, 0.0), used, z)

    def _decision(
        self,
        scores: tuple[float, float, float],
        used: list[tuple[str, float, tuple[float, ...]]],
        words: complex,
    ) -> ModelDecision:
        """``scores``: A and C relative to E (E is 0); ``words``: what the words added to them."""
        a, c, e = scores
        best = 0 if a >= c and a >= e else (1 if c >= e else 2)
        top = max(scores)
        total = sum(math.exp(s - top) for s in scores)
        # What pushed hardest towards the chosen tier: each feature's contribution to its score above the
        # mean of the other two; the words (dozens, each small) are listed together as "words".
        o1, o2 = (best + 1) % 3, (best + 2) % 3
        candidates = [(v * (w[best] - (w[o1] + w[o2]) / 2), f) for f, v, w in used]
        word_scores = (words.real, words.imag, 0.0)
        candidates.append((word_scores[best] - (word_scores[o1] + word_scores[o2]) / 2, "words"))
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
