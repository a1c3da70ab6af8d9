"""Every Redis key and stream name aced uses, in one place.

Producers (``agents/``) and the daemon must agree on these names; keeping them here, in the package that
depends on nothing of ours, is what makes that agreement checkable.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

#: The consumer group every daemon instance joins. Created at id ``0`` so nothing published before the
#: daemon first ran is skipped.
CONSUMER_GROUP = "aced"

#: Agent names double as stream-name suffixes, so they are restricted to characters that are safe in a key
#: and in a ``SCAN MATCH`` pattern.
AGENT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_AGENT_RE = re.compile(AGENT_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """The names of aced's streams and keys under one configurable prefix (default ``aced``)."""

    prefix: str = "aced"

    def agent_stream(self, agent: str) -> str:
        """Return the stream an agent publishes to: ``<prefix>:agent:<agent>``."""
        if not _AGENT_RE.match(agent):
            raise ValueError(f"invalid agent name {agent!r}: must match {AGENT_NAME_PATTERN}")
        return f"{self.prefix}:agent:{agent}"

    @property
    def agent_stream_pattern(self) -> str:
        """``SCAN MATCH`` pattern that discovers every agent stream, so a new agent needs no config."""
        return f"{self.prefix}:agent:*"

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - StreamKeys is frozen and lives as long as the process
    def agent_of(self, stream: str) -> str | None:
        """Return the agent name encoded in an agent stream's name, or None if it is not one."""
        head = f"{self.prefix}:agent:"
        if not stream.startswith(head):
            return None
        agent = stream[len(head) :]
        return agent if _AGENT_RE.match(agent) else None

    @property
    def control(self) -> str:
        """Commands for the daemon (training launches, later issues)."""
        return f"{self.prefix}:control"

    @property
    def events(self) -> str:
        """What the daemon emits: status changes, dead letters, training progress, standups."""
        return f"{self.prefix}:events"

    @property
    def deadletter(self) -> str:
        """Rejected entries, each with its reason and its original fields."""
        return f"{self.prefix}:deadletter"

    def health(self, consumer: str) -> str:
        """Per-consumer health hash, refreshed by the daemon with a TTL so a dead daemon's key expires."""
        return f"{self.prefix}:health:{consumer}"

    @property
    def health_pattern(self) -> str:
        """``SCAN MATCH`` pattern for every daemon's health key."""
        return f"{self.prefix}:health:*"


#: The single field of a stream entry that carries the JSON envelope, so any language can publish.
DATA_FIELD = "data"
