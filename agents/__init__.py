"""Producers: how agents put messages into the record."""

from agents.adapters import AgentAdapter, ClaudeAdapter, GeminiAdapter
from agents.publisher import Publisher, PublishError, SyncPublisher, build_message, new_message_id

__all__ = [
    "AgentAdapter",
    "ClaudeAdapter",
    "GeminiAdapter",
    "PublishError",
    "Publisher",
    "SyncPublisher",
    "build_message",
    "new_message_id",
]
