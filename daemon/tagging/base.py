"""The tagging step's interface: a tagger turns a message and its conversation's recent history into Tags.

The daemon calls ``tag_batch`` once per batch, on the ingest path, so a tagger must be fast, deterministic
and must never raise for odd content (empty, huge, code, non-English): it returns tags or ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from schemas import AgentMessage, Tags

if TYPE_CHECKING:
    from daemon.store.base import TagRow


class Tagger(Protocol):
    """A pluggable tagging backend."""

    #: Stored with every tag so old and new tags can live side by side.
    version: str

    def tag_batch(self, messages: Sequence[AgentMessage]) -> list[Tags | None]:
        """Tag messages in order; each message's history is what this tagger has seen of its conversation
        (earlier in this batch, earlier batches, or what ``prime`` loaded)."""

    def prime(self, conversation_id: str, history: Sequence[AgentMessage]) -> None:
        """Load a conversation's earlier messages (oldest first) before tagging new ones, e.g. after a
        restart. A tagger that keeps no history may ignore it."""


class PendingTags(Protocol):
    """Tags being computed elsewhere (another process): what a tagger's ``submit_rows`` returns."""

    def result(self, timeout: float | None = None) -> list[TagRow | None]:
        """Each message's tags in the store's form, in order (``None``: that message could not be tagged);
        raises when the batch could not be tagged at all or did not finish within ``timeout`` seconds."""


class NoOpTagger:
    """Tags nothing: records are stored with ``tags = None``."""

    version = "none"

    def tag_batch(self, messages: Sequence[AgentMessage]) -> list[Tags | None]:
        """Return ``None`` for every message."""
        return [None] * len(messages)

    def prime(self, conversation_id: str, history: Sequence[AgentMessage]) -> None:
        """Nothing to remember."""
