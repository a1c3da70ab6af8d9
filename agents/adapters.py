"""Agent adapters: each names its agent and therefore its stream.

The LLM integration itself (calling Claude or Gemini and publishing the answer) is a later issue; an
adapter today is how that code will say something into the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from agents.publisher import Publisher, build_message
from schemas import AgentMessage, StreamKeys


class AgentAdapter:
    """Publishes what one agent says. Subclasses fix ``agent_name``."""

    agent_name: ClassVar[str]

    def __init__(self, publisher: Publisher, keys: StreamKeys | None = None) -> None:
        self._publisher = publisher
        self._keys = keys or StreamKeys()

    @property
    def stream(self) -> str:
        """The stream this agent publishes to."""
        return self._keys.agent_stream(self.agent_name)

    async def say(
        self,
        conversation_id: str,
        content: str,
        *,
        reply_to: str | None = None,
        sender_tags: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> AgentMessage:
        """Publish one message from this agent and return its envelope."""
        message = build_message(
            self.agent_name,
            conversation_id,
            content,
            reply_to=reply_to,
            sender_tags=sender_tags,
            metadata=metadata,
        )
        await self._publisher.publish(message)
        return message


class ClaudeAdapter(AgentAdapter):
    """Anthropic's Claude, publishing to ``<prefix>:agent:claude``."""

    agent_name = "claude"


class GeminiAdapter(AgentAdapter):
    """Google's Gemini, publishing to ``<prefix>:agent:gemini``."""

    agent_name = "gemini"
