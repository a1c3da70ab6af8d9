"""A model backend: an LLM tags messages through a ``complete(prompt) -> str`` callable.

Off by default and never on the ingest path: the daemon runs it through
:class:`daemon.tagging.model.AsyncModelTagger`, which stores its tags later as a second tag version. The
Claude and Gemini adapters in ``agents/`` provide the callable; tests pass a deterministic function.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import structlog

from daemon.tagging.definitions import ANSWER_FORMAT, DEFINITIONS, DEFINITIONS_VERSION
from daemon.tagging.rules import emergence
from schemas import SIGNAL_NAMES, SIGNAL_PRESENT_ABOVE, AgentMessage, Signals, Tags, Tier

log = structlog.get_logger()

#: Longest message text put in a prompt; the rest is cut with a marker (a prompt is not a data dump).
PROMPT_MESSAGE_CHARS = 4000
#: Longest text of each earlier message shown as context.
PROMPT_CONTEXT_CHARS = 600

_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
#: Score given to a signal a model lists as present without a number (the middle of "strong").
_LISTED_SIGNAL_SCORE = 70
_TIERS: dict[str, Tier] = {"A": "A", "C": "C", "E": "E"}


class Completion(Protocol):
    """Sends a prompt to a model and returns its text answer. May raise on transport errors."""

    def __call__(self, prompt: str) -> str:
        """The model's answer to ``prompt``."""


class AnswerError(ValueError):
    """A model answer that cannot be turned into Tags; the message says why."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more characters cut]"


def render_message(message: AgentMessage, context: Sequence[AgentMessage] = ()) -> str:
    """The message to tag with its short context, as plain text (shared by prompts and fine-tune data)."""
    lines = []
    if context:
        lines.append("Earlier in the conversation (oldest first):")
        for past in context:
            lines.append(f"[{past.message_id}] {past.agent}: {_clip(past.content, PROMPT_CONTEXT_CHARS)}")
        lines.append("")
    lines.append(f"Message to tag [{message.message_id}] from {message.agent} ({message.role}):")
    lines.append(_clip(message.content, PROMPT_MESSAGE_CHARS))
    return "\n".join(lines)


def build_prompt(message: AgentMessage, context: Sequence[AgentMessage] = ()) -> str:
    """The full prompt: the locked definitions, the message with its context, the answer format."""
    return f"{DEFINITIONS}\n{render_message(message, context)}\n\n{ANSWER_FORMAT}\n"


def _json_object(text: str) -> dict[str, Any]:
    """The first JSON object in a model answer: inside a code fence if there is one, else the first
    ``{`` that starts a valid object."""
    candidates = [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        start = candidate.find("{")
        while start != -1:
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                start = candidate.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    raise AnswerError("no JSON object in the answer")


def _score(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnswerError(f"signal {name} is {value!r}, not a number")
    if not 0 <= value <= 100:
        raise AnswerError(f"signal {name} is {value}, outside 0..100")
    return round(value)


def parse_answer(text: str, version: str, model: str = "") -> Tags:
    """Turn a model's answer into Tags of ``version``; raise :class:`AnswerError` saying what is wrong.

    Accepts the JSON object bare, in a code fence or amid prose; ``signals`` either as an object of the six
    scores (missing ones count 0) or as a list of the names present (each then scores 70). The tier must be
    one of A, C, E (case-insensitive); unknown signal names are an error, not silently dropped.
    """
    data = _json_object(text)
    raw_tier = data.get("tier")
    tier = _TIERS.get(raw_tier.strip().upper()) if isinstance(raw_tier, str) else None
    if tier is None:
        raise AnswerError(f"tier is {raw_tier!r}, not one of A, C, E")
    raw = data.get("signals", {})
    scores = dict.fromkeys(SIGNAL_NAMES, 0)
    if isinstance(raw, Mapping):
        for name, value in raw.items():
            if name not in scores:
                raise AnswerError(f"unknown signal {name!r}")
            scores[name] = _score(name, value)
    elif isinstance(raw, list):
        for name in raw:
            if name not in scores:
                raise AnswerError(f"unknown signal {name!r}")
            scores[name] = _LISTED_SIGNAL_SCORE
    else:
        raise AnswerError("signals is neither an object nor a list")
    novelty = data.get("novelty", scores["novelty"])
    reason = data.get("reason")
    evidence: dict[str, Any] = {"model": model} if model else {}
    if isinstance(reason, str) and reason:
        evidence["reason"] = reason[:500]
    return Tags(
        tier=tier,
        tier_rule="llm",
        tier_confidence=0.5,
        signals=Signals(**scores),
        novelty=_score("novelty", novelty),
        emergence=emergence(scores.values()),
        tagger_version=version,
        evidence=evidence,
    )


class LLMTagger:
    """Tags one message at a time through ``complete``; implements ``ModelBackend``.

    ``model`` names the model in the tag version, ``llm-<model>-<definitions version>``. An answer that
    cannot be parsed, or a ``complete`` that raises, gives ``None`` and one log line with the reason.
    """

    def __init__(self, complete: Completion, model: str) -> None:
        """``complete``: the model call; ``model``: a short model name (letters, digits, ``.-_``)."""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,40}", model):
            raise ValueError(f"model name {model!r} must be 1-40 letters, digits, '.', '-' or '_'")
        self.complete = complete
        self.model = model
        self.version = f"llm-{model}-{DEFINITIONS_VERSION}"

    def tag(self, message: AgentMessage, context: Sequence[AgentMessage] = ()) -> Tags | None:
        """Tags for ``message`` given its recent ``context`` (oldest first), or ``None`` (logged)."""
        prompt = build_prompt(message, context)
        try:
            answer = self.complete(prompt)
        except Exception as exc:  # a transport or quota error is this message's failure, not the caller's
            log.warning(
                "llm_tag_failed", message_id=message.message_id, model=self.model, reason=f"complete: {exc}"
            )
            return None
        try:
            return parse_answer(answer, self.version, self.model)
        except (AnswerError, ValueError) as exc:
            log.warning(
                "llm_answer_invalid",
                message_id=message.message_id,
                model=self.model,
                reason=str(exc),
                answer=answer[:200],
            )
            return None


def label_json(tags: Tags) -> str:
    """The compact label a fine-tuned model is trained to answer: tier and the signals present."""
    present = [name for name in SIGNAL_NAMES if getattr(tags.signals, name) > SIGNAL_PRESENT_ABOVE]
    return json.dumps({"tier": tags.tier, "signals": present}, separators=(",", ":"))
