"""daemon.intake: every raw entry becomes either a Record or a DeadLetter with the right reason code,
and a dead letter keeps the entry's original fields byte for byte."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from daemon.intake import IntakeLimits, RawEntry, intake
from schemas import DATA_FIELD, DEFAULT_MAX_CONTENT_BYTES, DeadLetter, Record, RejectReason, StreamKeys

KEYS = StreamKeys("aced")
LIMITS = IntakeLimits(max_entry_bytes=64 * 1024, max_content_bytes=1024)
NOW = datetime(2026, 11, 26, 21, 14, 5, tzinfo=UTC)
STREAM = "aced:agent:claude"


def envelope(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "message_id": "01JD3Z7K2W8QF6T9V4XG5M1N0P",
        "agent": "claude",
        "role": "agent",
        "conversation_id": "conv-1",
        "content": "héllo ✓, let us check the loss curve",
        "created_at": "2026-11-26T22:14:03+01:00",
    }
    data.update(overrides)
    return data


def entry(data: bytes | None, stream: str = STREAM, extra: dict[bytes, bytes] | None = None) -> RawEntry:
    fields: dict[bytes, bytes] = {} if data is None else {DATA_FIELD.encode(): data}
    fields.update(extra or {})
    return RawEntry(stream=stream, entry_id="1795734843120-7", fields=fields, delivery_count=3)


def run(raw: RawEntry, limits: IntakeLimits = LIMITS) -> Record | DeadLetter:
    return intake(raw, KEYS, limits, NOW, consumer="host-1234")


def rejected(raw: RawEntry, reason: RejectReason, limits: IntakeLimits = LIMITS) -> DeadLetter:
    """Run intake, assert it dead-lettered with ``reason`` and kept everything about the entry."""
    original = {bytes(k): bytes(v) for k, v in raw.fields.items()}
    outcome = run(raw, limits)
    assert isinstance(outcome, DeadLetter), outcome
    assert outcome.reason is reason, outcome.detail
    assert outcome.fields == original
    assert all(type(k) is bytes and type(v) is bytes for k, v in outcome.fields.items())
    assert outcome.stream == raw.stream
    assert outcome.entry_id == raw.entry_id
    assert outcome.delivery_count == raw.delivery_count
    assert outcome.received_at == NOW
    assert outcome.consumer == "host-1234"
    assert outcome.detail
    assert len(outcome.detail) <= 8192
    # What the daemon writes must itself satisfy the public model.
    DeadLetter.model_validate(outcome.model_dump())
    return outcome


def as_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


# ----------------------------------------------------------------------------------------------- valid


def test_valid_entry_becomes_record() -> None:
    raw = entry(as_bytes(envelope()))
    record = run(raw)
    assert isinstance(record, Record)
    assert record.stream == STREAM
    assert record.entry_id == "1795734843120-7"
    assert record.delivery_count == 3
    assert record.received_at == NOW
    assert record.committed_at is None
    assert record.tags is None
    assert record.envelope.message_id == "01JD3Z7K2W8QF6T9V4XG5M1N0P"
    assert record.envelope.created_at == datetime(2026, 11, 26, 21, 14, 3, tzinfo=UTC)
    expected = hashlib.sha256("héllo ✓, let us check the loss curve".encode()).hexdigest()
    assert record.content_sha256 == expected
    # What intake builds (without re-validation) must be a valid Record.
    assert Record.model_validate(record.model_dump()) == record


def test_valid_entry_with_extra_stream_fields_is_recorded() -> None:
    # Other fields on the entry are not the envelope; only `data` is read.
    record = run(entry(as_bytes(envelope()), extra={b"trace": b"abc"}))
    assert isinstance(record, Record)


def test_content_limit_comes_from_the_limits() -> None:
    content = "a" * 2000
    assert isinstance(run(entry(as_bytes(envelope(content=content)))), DeadLetter)
    roomy = IntakeLimits(max_entry_bytes=64 * 1024, max_content_bytes=DEFAULT_MAX_CONTENT_BYTES)
    assert isinstance(run(entry(as_bytes(envelope(content=content))), roomy), Record)


# ------------------------------------------------------------------------------------------ dead letters


def test_missing_data_field() -> None:
    letter = rejected(entry(None, extra={b"payload": b"{}", b"x": b"\xff"}), RejectReason.MISSING_DATA)
    assert "'data'" in letter.detail
    assert "payload" in letter.detail
    assert letter.message_id is None


def test_entry_without_any_field_is_missing_data() -> None:
    rejected(entry(None), RejectReason.MISSING_DATA)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe{}",
        b'{"content": "\xc3\x28"}',  # invalid 2-byte sequence
        as_bytes(envelope())[:-3] + b"\xe2\x82",  # truncated multi-byte character
        "{}".encode("utf-16"),
    ],
)
def test_invalid_utf8(data: bytes) -> None:
    letter = rejected(entry(data), RejectReason.INVALID_UTF8)
    assert "UTF-8" in letter.detail


@pytest.mark.parametrize("escape", ["\\ud800", "\\udbff x", "\\ud83e\\u0041"])
def test_lone_high_surrogate_escape(escape: str) -> None:
    data = as_bytes(envelope()).replace("héllo".encode(), escape.encode())
    letter = rejected(entry(data), RejectReason.INVALID_UTF8)
    assert "surrogate" in letter.detail


def test_surrogate_pair_escape_is_fine() -> None:
    data = as_bytes(envelope()).replace("héllo".encode(), b"\\ud83e\\udd80")
    record = run(entry(data))
    assert isinstance(record, Record)
    assert record.envelope.content.startswith("🦀")


@pytest.mark.parametrize("escape", ["\\udc00", "\\udfff"])
def test_lone_low_surrogate_escape(escape: str) -> None:
    data = as_bytes(envelope()).replace("héllo".encode(), escape.encode())
    rejected(entry(data), RejectReason.INVALID_UTF8)


@pytest.mark.parametrize("data", [b"", b"not json", b'{"message_id": "x",', b"{'single': 1}", b"{} {}"])
def test_not_json(data: bytes) -> None:
    letter = rejected(entry(data), RejectReason.INVALID_JSON)
    assert "not valid JSON" in letter.detail


@pytest.mark.parametrize(
    ("data", "kind"),
    [(b"[1, 2]", "list"), (b'"text"', "str"), (b"42", "int"), (b"null", ""), (b"true", "bool")],
)
def test_json_but_not_an_object(data: bytes, kind: str) -> None:
    letter = rejected(entry(data), RejectReason.INVALID_JSON)
    assert "JSON object" in letter.detail
    assert kind in letter.detail


def test_json_array_of_envelopes_is_rejected() -> None:
    data = json.dumps([envelope()]).encode()
    letter = rejected(entry(data), RejectReason.INVALID_JSON)
    assert "list" in letter.detail


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"created_at": "2026-11-26T21:14:03"}, "created_at"),
        ({"created_at": 1_700_000_000}, "created_at"),
        ({"content": 5}, "content"),
        ({"agent": "Claude"}, "agent"),
        ({"message_id": "has space"}, "message_id"),
        ({"metdata": {}}, "metdata"),
        ({"role": "assistant"}, "role"),
        ({"metadata": {"n": 2**64}}, "metadata"),
        ({"content": ""}, "envelope"),
    ],
)
def test_validation_error_detail_names_the_field(overrides: dict[str, Any], field: str) -> None:
    letter = rejected(entry(as_bytes(envelope(**overrides))), RejectReason.VALIDATION)
    assert letter.detail.startswith(f"{field}: ") or f"; {field}: " in letter.detail, letter.detail
    assert "Value error, " not in letter.detail
    assert letter.message_id == envelope(**overrides)["message_id"] or field == "message_id"


def test_validation_detail_lists_every_broken_field() -> None:
    data = envelope(created_at="yesterday", role="assistant")
    del data["conversation_id"]
    letter = rejected(entry(as_bytes(data)), RejectReason.VALIDATION)
    for field in ("created_at", "role", "conversation_id"):
        assert f"{field}: " in letter.detail


def test_validation_detail_is_bounded() -> None:
    data = envelope(**{f"extra_{i}": i for i in range(40)})
    letter = rejected(entry(as_bytes(data)), RejectReason.VALIDATION)
    assert "and 30 more" in letter.detail


def test_bad_message_id_is_not_captured_when_unreadable() -> None:
    letter = rejected(entry(as_bytes(envelope(message_id=12, content=7))), RejectReason.VALIDATION)
    assert letter.message_id is None


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_unsupported_schema_version_keeps_message_id(version: Any) -> None:
    raw = entry(as_bytes(envelope(schema_version=version)))
    letter = rejected(raw, RejectReason.UNSUPPORTED_SCHEMA_VERSION)
    assert letter.message_id == "01JD3Z7K2W8QF6T9V4XG5M1N0P"
    assert repr(version) in letter.detail


def test_future_version_with_other_fields_is_still_a_version_rejection() -> None:
    # A version-2 envelope may have fields version 1 does not know: the version is the reason.
    data = envelope(schema_version=2, thread={"id": "t"})
    letter = rejected(entry(as_bytes(data)), RejectReason.UNSUPPORTED_SCHEMA_VERSION)
    assert letter.message_id == "01JD3Z7K2W8QF6T9V4XG5M1N0P"


def test_oversized_entry_rejected_unread() -> None:
    limits = IntakeLimits(max_entry_bytes=1024, max_content_bytes=DEFAULT_MAX_CONTENT_BYTES)
    raw = entry(as_bytes(envelope(content="x" * 2000)))
    letter = rejected(raw, RejectReason.OVERSIZED, limits)
    assert "max_entry_bytes=1024" in letter.detail
    assert letter.message_id is None


def test_oversized_entry_counts_every_field() -> None:
    limits = IntakeLimits(max_entry_bytes=1024, max_content_bytes=DEFAULT_MAX_CONTENT_BYTES)
    raw = entry(as_bytes(envelope()), extra={b"padding": b"p" * 1024})
    rejected(raw, RejectReason.OVERSIZED, limits)


def test_oversized_content() -> None:
    raw = entry(as_bytes(envelope(content="é" * 600)))  # 600 characters, 1200 bytes, limit 1024
    letter = rejected(raw, RejectReason.OVERSIZED)
    assert letter.detail.startswith("content: ")
    assert "1200 bytes" in letter.detail
    assert letter.message_id == "01JD3Z7K2W8QF6T9V4XG5M1N0P"


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ("aced:agent:gemini", "'gemini'"),
        ("aced:events", "None"),
        ("other:agent:claude", "None"),
    ],
)
def test_stream_mismatch(stream: str, expected: str) -> None:
    letter = rejected(entry(as_bytes(envelope()), stream=stream), RejectReason.STREAM_MISMATCH)
    assert letter.message_id == "01JD3Z7K2W8QF6T9V4XG5M1N0P"
    assert "'claude'" in letter.detail
    assert f"expected agent {expected}" in letter.detail


def test_dead_letter_keeps_arbitrary_bytes_exactly() -> None:
    fields = {b"data": b"\x00\xff\xfe not json \xc3", b"\xff\xfekey": b"", b"other": bytes(range(256))}
    raw = RawEntry(stream=STREAM, entry_id="1-1", fields=dict(fields), delivery_count=1)
    letter = rejected(raw, RejectReason.INVALID_UTF8)
    assert letter.fields == fields
    assert letter.fields is not raw.fields  # a copy: later changes to the entry do not alter it


def test_intake_never_raises_on_hostile_input() -> None:
    hostile = [
        b"{" * 10_000,
        b"[" * 10_000 + b"]" * 10_000,
        b'{"metadata": ' + b'{"a": ' * 300 + b"1" + b"}" * 301,
        as_bytes(envelope(metadata={"n": 10**30})),
        as_bytes(envelope(sender_tags={"n": -(10**30)})),
        b'{"schema_version": 1e999}',
        b'{"content": NaN}',
        b"\x00" * 100,
    ]
    for data in hostile:
        outcome = run(entry(data))
        assert isinstance(outcome, DeadLetter), data[:40]
        assert outcome.fields[b"data"] == data


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_numbers_in_metadata_are_rejected_not_stored_as_null(number: bytes) -> None:
    data = as_bytes(envelope(metadata={"score": 1.5})).replace(b'"score": 1.5', b'"score": ' + number)
    assert number in data
    letter = rejected(entry(data), RejectReason.INVALID_JSON)
    assert "not standard JSON" in letter.detail and "NaN or Infinity" in letter.detail


def test_the_fast_record_equals_what_model_construct_builds() -> None:
    from daemon.intake import _record

    outcome = run(entry(as_bytes(envelope())))
    assert isinstance(outcome, Record)
    values = dict(outcome.__dict__)
    slow = Record.model_construct(**values)
    assert outcome == slow
    assert outcome.model_fields_set == slow.model_fields_set
    assert outcome.model_dump() == slow.model_dump()
    assert outcome.model_copy(update={"tags": None}) == slow
    assert _record(dict(values)) == slow
    Record.model_validate(outcome.model_dump())  # and it is a valid Record
