"""Tagging: ACE tier, six emergence signals, novelty and emergence for every message.

``make_tagger`` builds what the daemon calls on the ingest path (rules, or none). Model backends (an LLM
through a ``complete`` callable, or a local classifier) are slower and run off the ingest path through
:class:`daemon.tagging.model.AsyncModelTagger`, which adds their tags later as a second tag version.
"""

from __future__ import annotations

from daemon.tagging.base import NoOpTagger, Tagger
from daemon.tagging.rules import RULES_VERSION, CoreChoice, RulesTagger, aggregate_emergence, emergence

__all__ = [
    "RULES_VERSION",
    "NoOpTagger",
    "RulesTagger",
    "Tagger",
    "UnknownTaggerError",
    "aggregate_emergence",
    "emergence",
    "make_tagger",
]


class UnknownTaggerError(ValueError):
    """``make_tagger`` was asked for a tagger that does not exist."""


def make_tagger(name: str, history: int, tier_model: bool = True, core: CoreChoice = "auto") -> Tagger:
    """Build the ingest-path tagger.

    ``name``: ``"rules"`` (the deterministic rules tagger) or ``"none"`` (records stored without tags).
    ``history``: how many earlier messages per conversation the tagger remembers (``Settings.tag_history``);
    ``tier_model``: the linear tier model decides the tier (``Settings.tier_model``); ``core``: which
    implementation runs the rules' steps (``Settings.tag_core``).
    Raises :class:`UnknownTaggerError` for any other name.
    """
    if history < 0:
        raise ValueError("history must be >= 0")
    if name == "rules":
        return RulesTagger(history=history, tier_model="default" if tier_model else None, core=core)
    if name == "none":
        return NoOpTagger()
    raise UnknownTaggerError(f"unknown tagger {name!r}: expected 'rules' or 'none'")
