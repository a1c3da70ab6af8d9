"""aced's public data models: the envelope, the record, dead letters and events.

This package depends on nothing else of aced's, so producers in any process can import it.
"""

from schemas.deadletter import DeadLetter, RejectReason
from schemas.envelope import (
    DEFAULT_MAX_CONTENT_BYTES,
    MAX_METADATA_BYTES,
    SCHEMA_VERSION,
    AgentMessage,
    Attachment,
)
from schemas.events import Event, TrainingProgress
from schemas.keys import CONSUMER_GROUP, DATA_FIELD, StreamKeys
from schemas.record import SIGNAL_NAMES, SIGNAL_PRESENT_ABOVE, Record, Signals, Tags, Tier

__all__ = [
    "CONSUMER_GROUP",
    "DATA_FIELD",
    "DEFAULT_MAX_CONTENT_BYTES",
    "MAX_METADATA_BYTES",
    "SCHEMA_VERSION",
    "SIGNAL_NAMES",
    "SIGNAL_PRESENT_ABOVE",
    "AgentMessage",
    "Attachment",
    "DeadLetter",
    "Event",
    "Record",
    "RejectReason",
    "Signals",
    "StreamKeys",
    "Tags",
    "Tier",
    "TrainingProgress",
]
