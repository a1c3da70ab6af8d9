"""Step 0 of the rules pipeline: what the tagger remembers of each conversation, bounded in both directions.

Per conversation it keeps at most ``max_messages`` recent messages (id, sender, content terms); since a
message is only scanned up to ``text.SCAN_CHARS``, that also bounds the terms held. Across conversations an
LRU keeps at most ``max_conversations``; a conversation that falls out is treated as new when it comes back
(``prime`` can reload it).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import NamedTuple


class PastMessage(NamedTuple):
    """What is remembered of one earlier message (a NamedTuple: built once per message, cheaply)."""

    message_id: str
    agent: str
    terms: frozenset[str]


class ConversationHistory:
    """The recent past of one conversation."""

    __slots__ = ("_adds", "agents", "max_messages", "messages", "seen")

    def __init__(self, max_messages: int) -> None:
        """Remember at most ``max_messages`` earlier messages (0: remember none)."""
        self.max_messages = max_messages
        self.messages: deque[PastMessage] = deque(maxlen=max(max_messages, 0))
        #: everyone who spoke in the conversation, even before the window (names are few)
        self.agents: set[str] = set()
        #: union of the terms of the remembered messages, rebuilt every ``max_messages`` additions: between
        #: rebuilds it may still hold terms of up to ``max_messages`` messages that already left the window,
        #: which keeps novelty at one set operation per message instead of one per remembered message.
        self.seen: set[str] = set()
        self._adds = 0

    def unseen(self, terms: frozenset[str]) -> int:
        """How many of ``terms`` the remembered messages did not use."""
        return len(terms.difference(self.seen))

    def unseen_then_seen(self, terms: frozenset[str]) -> int:
        """:meth:`unseen` of ``terms``, which then count as seen: what ``add`` of a message with these terms
        does to :attr:`seen`, so ``add(message, terms_seen=True)`` must follow.

        One set operation instead of two: how much ``seen`` grows is how many of ``terms`` it lacked.
        """
        if self.max_messages <= 0:
            return len(terms)
        seen = self.seen
        before = len(seen)
        seen |= terms
        return len(seen) - before

    def add(self, message: PastMessage, terms_seen: bool = False) -> None:
        """Remember ``message`` as the newest one; the deque drops the oldest past ``max_messages``.

        ``terms_seen``: :meth:`unseen_then_seen` already added its terms to :attr:`seen`.
        """
        self.agents.add(message.agent)
        if self.max_messages <= 0:
            return
        self.messages.append(message)
        self._adds += 1
        if self._adds >= self.max_messages:
            self.seen = set().union(*[m.terms for m in self.messages])
            self._adds = 0
        elif not terms_seen:
            self.seen |= message.terms


class HistoryCache:
    """LRU map conversation_id -> :class:`ConversationHistory`."""

    __slots__ = ("_items", "max_conversations", "max_messages")

    def __init__(self, max_messages: int, max_conversations: int = 10_000) -> None:
        """Bounds: messages kept per conversation, conversations kept in memory."""
        if max_conversations < 1:
            raise ValueError("max_conversations must be at least 1")
        if max_messages < 0:
            raise ValueError("max_messages must be >= 0")
        self.max_messages = max_messages
        self.max_conversations = max_conversations
        self._items: OrderedDict[str, ConversationHistory] = OrderedDict()

    def get(self, conversation_id: str) -> ConversationHistory:
        """The conversation's history (created empty if unknown), marked most recently used."""
        hist = self._items.get(conversation_id)
        if hist is None:
            hist = ConversationHistory(self.max_messages)
            self._items[conversation_id] = hist
            if len(self._items) > self.max_conversations:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(conversation_id)
        return hist

    def reset(self, conversation_id: str) -> ConversationHistory:
        """Forget a conversation and return its new, empty history."""
        self._items.pop(conversation_id, None)
        return self.get(conversation_id)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._items
