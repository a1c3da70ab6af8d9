"""What the daemon persists: the envelope plus delivery facts and computed tags."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas._types import Score, UtcDatetime
from schemas.envelope import AgentMessage

Tier = Literal["A", "C", "E"]

#: The six emergence signals, in their documented order (see docs/emergence_signals.md).
SIGNAL_NAMES: tuple[str, ...] = (
    "novelty",
    "solution_quality",
    "assumption_challenge",
    "error_correction",
    "cross_domain_synthesis",
    "specialization_recognition",
)

#: A signal counts as present when its score is above this threshold.
SIGNAL_PRESENT_ABOVE = 40


class Signals(BaseModel):
    """The six emergence signals, each 0..100 (0-20 absent, 21-40 weak, 41-60 moderate, 61-80 strong,
    81-100 very strong)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    novelty: Score = Field(default=0, description="Introduces a concept or angle new to the conversation.")
    solution_quality: Score = Field(default=0, description="Proposes a solution and weighs trade-offs.")
    assumption_challenge: Score = Field(default=0, description="Questions a premise, not just execution.")
    error_correction: Score = Field(
        default=0, description="Finds a flaw in an earlier claim and corrects it."
    )
    cross_domain_synthesis: Score = Field(default=0, description="Combines techniques from distinct fields.")
    specialization_recognition: Score = Field(
        default=0, description="Attributes distinct strengths or roles to agents, or divides work by them."
    )


class Tags(BaseModel):
    """aced's own tags for one message, produced by one tagger version. Kept beside ``sender_tags``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tier: Tier = Field(description="ACE tier: A architectural, C collaborative, E execution.")
    tier_rule: str = Field(description="The rule that decided the tier, for people to check.")
    tier_confidence: float = Field(ge=0.0, le=1.0, description="How sure the tagger is of the tier.")
    signals: Signals = Field(description="The six emergence signals.")
    novelty: Score = Field(description="Novelty against the conversation's history (share of unseen terms).")
    emergence: Score = Field(description="Aggregate of the six signals.")
    tagger_version: str = Field(min_length=1, max_length=64, description="Which tagger produced these tags.")
    evidence: dict[str, Any] = Field(
        default_factory=dict, description="Why: matched markers per tier and signal, corrected message ids."
    )


class Record(BaseModel):
    """One recorded message: the envelope, where and when it arrived, and its tags."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    envelope: AgentMessage = Field(description="The message exactly as validated.")
    stream: str = Field(description="The stream it was read from.")
    entry_id: str = Field(pattern=r"^\d+-\d+$", description="Its Redis stream entry id.")
    received_at: UtcDatetime = Field(description="When the daemon read it.")
    committed_at: UtcDatetime | None = Field(
        default=None, description="When the store transaction holding it committed (set by the store)."
    )
    delivery_count: int = Field(
        ge=1, description="How many times Redis had delivered it when it was recorded."
    )
    content_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the UTF-8 content.")
    tags: Tags | None = Field(default=None, description="The current tags; None if tagging is off.")

    def flat(self) -> dict[str, Any]:
        """The record as one flat JSON object: envelope fields at top level, then the delivery facts.

        This is the line format of ``aced export`` and what ``aced import`` reads back.
        """
        out = self.envelope.model_dump(mode="json")
        out.update(self.model_dump(mode="json", exclude={"envelope"}))
        return out

    @classmethod
    def from_flat(cls, data: dict[str, Any], context: dict[str, Any] | None = None) -> Record:
        """Inverse of :meth:`flat`."""
        envelope_keys = AgentMessage.model_fields.keys()
        envelope = AgentMessage.model_validate(
            {k: v for k, v in data.items() if k in envelope_keys}, strict=False, context=context
        )
        rest = {k: v for k, v in data.items() if k not in envelope_keys}
        return cls.model_validate({**rest, "envelope": envelope})
