"""The locked persistence schema: envelope rules, the record's flat form, stream names, and the docs and
checked-in JSON Schemas that describe them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from schemas import (
    DEFAULT_MAX_CONTENT_BYTES,
    MAX_METADATA_BYTES,
    AgentMessage,
    Attachment,
    DeadLetter,
    Event,
    Record,
    Signals,
    StreamKeys,
    Tags,
    TrainingProgress,
)
from schemas.jsonschema import render_json_schemas

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "schema.md"

#: Models whose examples docs/schema.md may show, by the name a heading uses for them.
DOC_MODELS: dict[str, type[BaseModel]] = {
    "AgentMessage": AgentMessage,
    "Attachment": Attachment,
    "Record": Record,
    "Tags": Tags,
    "Signals": Signals,
    "DeadLetter": DeadLetter,
    "Event": Event,
    "TrainingProgress": TrainingProgress,
}


def envelope(**overrides: Any) -> dict[str, Any]:
    """A valid envelope as a JSON-ready dict; keyword arguments replace or add fields."""
    data: dict[str, Any] = {
        "message_id": "01JD3Z7K2W8QF6T9V4XG5M1N0P",
        "agent": "claude",
        "role": "agent",
        "conversation_id": "conv-1",
        "content": "let us check the loss curve",
        "created_at": "2026-11-26T21:14:03Z",
    }
    data.update(overrides)
    return data


def parse(data: dict[str, Any], context: dict[str, Any] | None = None) -> AgentMessage:
    """Validate as the daemon does: from the JSON bytes of the ``data`` field."""
    return AgentMessage.model_validate_json(json.dumps(data), context=context)


def error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> set[tuple[Any, ...]]:
    return {tuple(e["loc"]) for e in exc.value.errors()}


# --------------------------------------------------------------------------------------------- envelope


def test_minimal_message_is_valid_with_defaults() -> None:
    message = parse(envelope())
    assert message.schema_version == 1
    assert message.reply_to is None
    assert message.attachments == []
    assert message.metadata == {}
    assert message.sender_tags is None
    assert message.created_at == datetime(2026, 11, 26, 21, 14, 3, tzinfo=UTC)


def test_wire_form_round_trips() -> None:
    message = parse(envelope(metadata={"k": [1, "é"]}, sender_tags={"tier": "A"}))
    assert AgentMessage.model_validate_json(message.to_wire()) == message


def test_naive_datetime_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        parse(envelope(created_at="2026-11-26T21:14:03"))
    assert error_locs(exc) == {("created_at",)}


def test_naive_python_datetime_rejected() -> None:
    data = envelope(created_at=datetime(2026, 11, 26, 21, 14, 3))
    with pytest.raises(ValidationError):
        AgentMessage.model_validate(data, strict=False)


@pytest.mark.parametrize(
    ("sent", "utc"),
    [
        ("2026-11-26T22:14:03+01:00", datetime(2026, 11, 26, 21, 14, 3, tzinfo=UTC)),
        ("2026-11-26T16:14:03.5-05:00", datetime(2026, 11, 26, 21, 14, 3, 500000, tzinfo=UTC)),
        ("2026-11-27T02:44:03+05:30", datetime(2026, 11, 26, 21, 14, 3, tzinfo=UTC)),
    ],
)
def test_other_timezones_converted_to_utc(sent: str, utc: datetime) -> None:
    message = parse(envelope(created_at=sent))
    assert message.created_at == utc
    assert message.created_at.utcoffset() == timedelta(0)
    assert orjson.loads(message.to_wire())["created_at"].endswith("Z")


def test_python_datetime_in_other_timezone_converted() -> None:
    sent = datetime(2026, 11, 26, 22, 14, 3, tzinfo=timezone(timedelta(hours=1)))
    message = AgentMessage(**{**envelope(), "created_at": sent})
    assert message.created_at.tzinfo == UTC
    assert message.created_at == sent


@pytest.mark.parametrize("content", ["", " ", "\n\t  \r\n"])
def test_empty_or_blank_content_rejected(content: str) -> None:
    with pytest.raises(ValidationError, match="no attachments"):
        parse(envelope(content=content))


@pytest.mark.parametrize("content", ["", "   "])
def test_empty_content_allowed_with_attachment(content: str) -> None:
    message = parse(envelope(content=content, attachments=[{"name": "a.png", "media_type": "image/png"}]))
    assert message.content == content
    assert message.attachments[0].name == "a.png"


def test_content_at_limit_accepted_over_limit_rejected() -> None:
    assert parse(envelope(content="a" * DEFAULT_MAX_CONTENT_BYTES))
    with pytest.raises(ValidationError, match="over the limit") as exc:
        parse(envelope(content="a" * (DEFAULT_MAX_CONTENT_BYTES + 1)))
    assert error_locs(exc) == {("content",)}


def test_content_limit_counts_utf8_bytes_not_characters() -> None:
    # "é" is 2 bytes: this is well under the limit in characters, over it in bytes.
    chars = DEFAULT_MAX_CONTENT_BYTES // 2 + 1
    content = "é" * chars
    assert len(content) < DEFAULT_MAX_CONTENT_BYTES
    with pytest.raises(ValidationError, match=f"{chars * 2} bytes"):
        parse(envelope(content=content))
    assert parse(envelope(content="é" * (DEFAULT_MAX_CONTENT_BYTES // 2)))
    # "✓" is 3 bytes, "🦀" is 4.
    with pytest.raises(ValidationError):
        parse(envelope(content="✓" * (DEFAULT_MAX_CONTENT_BYTES // 3 + 1)))
    with pytest.raises(ValidationError):
        parse(envelope(content="🦀" * (DEFAULT_MAX_CONTENT_BYTES // 4 + 1)))


def test_content_limit_configurable_through_context() -> None:
    context = {"max_content_bytes": 10}
    assert parse(envelope(content="0123456789"), context=context)
    with pytest.raises(ValidationError, match="limit of 10 bytes"):
        parse(envelope(content="0123456789a"), context=context)
    with pytest.raises(ValidationError):
        parse(envelope(content="ééééé1"), context=context)  # 6 characters, 11 bytes
    # A larger limit lets through what the default refuses.
    big = "a" * (DEFAULT_MAX_CONTENT_BYTES + 1)
    assert parse(envelope(content=big), context={"max_content_bytes": DEFAULT_MAX_CONTENT_BYTES * 2})


@pytest.mark.parametrize("field", ["metadata", "sender_tags"])
def test_json_objects_over_64_kib_rejected(field: str) -> None:
    # {"k":"xxx..."} is 8 bytes plus the string.
    at_limit = {"k": "x" * (MAX_METADATA_BYTES - 8)}
    assert len(orjson.dumps(at_limit)) == MAX_METADATA_BYTES
    assert parse(envelope(**{field: at_limit}))
    with pytest.raises(ValidationError, match="over the limit") as exc:
        parse(envelope(**{field: {"k": "x" * (MAX_METADATA_BYTES - 7)}}))
    assert error_locs(exc) == {(field,)}


@pytest.mark.parametrize("field", ["metadata", "sender_tags"])
def test_json_objects_the_store_cannot_encode_are_validation_errors(field: str) -> None:
    # Regression: an integer beyond 64 bits used to raise TypeError out of validation (and out of intake).
    with pytest.raises(ValidationError, match="not storable as JSON") as exc:
        parse(envelope(**{field: {"n": 2**64}}))
    assert error_locs(exc) == {(field,)}
    with pytest.raises(ValidationError):
        AgentMessage.model_validate({**envelope(), field: {"s": {1, 2}}}, strict=False)


@pytest.mark.parametrize(
    "agent",
    ["", "Claude", "my agent", "-claude", "_x", ".x", "claude:x", "claude*", "a" * 65, "clé", "claude\n"],
)
def test_bad_agent_names_rejected(agent: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse(envelope(agent=agent))
    assert error_locs(exc) == {("agent",)}


@pytest.mark.parametrize("agent", ["claude", "gemini-2.5", "a", "0", "agent_7.b-c", "a" * 64])
def test_good_agent_names_accepted(agent: str) -> None:
    assert parse(envelope(agent=agent)).agent == agent


@pytest.mark.parametrize("message_id", ["", "has space", " lead", "tab\there", "x" * 129, "é-id", "nl\n"])
def test_bad_message_ids_rejected(message_id: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse(envelope(message_id=message_id))
    assert error_locs(exc) == {("message_id",)}


def test_reply_to_follows_message_id_rules() -> None:
    assert parse(envelope(reply_to="01JD3Z7K2W8QF6T9V4XG5M1N0Q")).reply_to == "01JD3Z7K2W8QF6T9V4XG5M1N0Q"
    with pytest.raises(ValidationError):
        parse(envelope(reply_to="has space"))


@pytest.mark.parametrize("conversation_id", ["", "   ", "x" * 129])
def test_bad_conversation_ids_rejected(conversation_id: str) -> None:
    with pytest.raises(ValidationError):
        parse(envelope(conversation_id=conversation_id))


def test_role_must_be_known() -> None:
    for role in ("agent", "human", "system"):
        assert parse(envelope(role=role)).role == role
    with pytest.raises(ValidationError):
        parse(envelope(role="assistant"))


@pytest.mark.parametrize("version", [2, 0, -1, True, False, "1", 1.5, None])
def test_other_schema_versions_rejected(version: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        parse(envelope(schema_version=version))
    assert error_locs(exc) == {("schema_version",)}


def test_schema_version_1_accepted_explicitly() -> None:
    assert parse(envelope(schema_version=1)).schema_version == 1


@pytest.mark.parametrize("extra", ["conversation", "metdata", "tags", "Content"])
def test_extra_field_rejected(extra: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse(envelope(**{extra: "x"}))
    errors = exc.value.errors()
    assert [(e["type"], e["loc"]) for e in errors] == [("extra_forbidden", (extra,))]


def test_misspelt_required_field_rejected_not_stored_empty() -> None:
    data = envelope()
    data["conversation"] = data.pop("conversation_id")
    with pytest.raises(ValidationError) as exc:
        parse(data)
    assert error_locs(exc) == {("conversation",), ("conversation_id",)}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("content", 5),
        ("content", None),
        ("content", ["text"]),
        ("created_at", 1_700_000_000),
        ("created_at", 1_700_000_000.5),
        ("message_id", 42),
        ("conversation_id", 7),
        ("metadata", []),
        ("metadata", "{}"),
        ("attachments", {"name": "a"}),
    ],
)
def test_wrong_types_rejected(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        parse(envelope(**{field: value}))
    assert field in {loc[0] for loc in error_locs(exc)}


def test_required_fields() -> None:
    for field in ("message_id", "agent", "role", "conversation_id", "content", "created_at"):
        data = envelope()
        del data[field]
        with pytest.raises(ValidationError) as exc:
            parse(data)
        assert error_locs(exc) == {(field,)}, field


@pytest.mark.parametrize(
    "attachment",
    [
        {"name": "", "media_type": "image/png"},
        {"name": "a"},
        {"name": "a", "media_type": "image/png", "sha256": "ABC"},
        {"name": "a", "media_type": "image/png", "size_bytes": -1},
        {"name": "a", "media_type": "image/png", "size_bytes": "10"},
        {"name": "a", "media_type": "image/png", "url": "misspelt"},
    ],
)
def test_bad_attachments_rejected(attachment: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse(envelope(attachments=[attachment]))


def test_too_many_attachments_rejected() -> None:
    one = {"name": "a", "media_type": "text/plain"}
    assert parse(envelope(attachments=[one] * 64))
    with pytest.raises(ValidationError):
        parse(envelope(attachments=[one] * 65))


def test_envelope_is_frozen() -> None:
    message = parse(envelope())
    with pytest.raises(ValidationError):
        message.content = "changed"


# ------------------------------------------------------------------------------------------------ record


def make_record(**overrides: Any) -> Record:
    values: dict[str, Any] = {
        "envelope": parse(
            envelope(
                content="héllo ✓",
                metadata={"nested": {"a": [1, 2.5, None, True]}},
                sender_tags={"tier": "C"},
                attachments=[{"name": "p.diff", "media_type": "text/x-diff", "size_bytes": 3}],
                reply_to="01JD3Z7K2W8QF6T9V4XG5M1N0A",
            )
        ),
        "stream": "aced:agent:claude",
        "entry_id": "1795734843120-0",
        "received_at": datetime(2026, 11, 26, 21, 14, 4, 250000, tzinfo=UTC),
        "committed_at": datetime(2026, 11, 26, 21, 14, 4, 300000, tzinfo=UTC),
        "delivery_count": 2,
        "content_sha256": "a" * 64,
        "tags": Tags(
            tier="C",
            tier_rule="collab:handoff",
            tier_confidence=0.75,
            signals=Signals(novelty=50, error_correction=90),
            novelty=33,
            emergence=20,
            tagger_version="rules-1",
            evidence={"tier": ["let us"]},
        ),
    }
    values.update(overrides)
    return Record(**values)


def test_record_flat_has_envelope_fields_at_top_level() -> None:
    record = make_record()
    flat = record.flat()
    assert "envelope" not in flat
    assert flat["message_id"] == record.envelope.message_id
    assert flat["content"] == "héllo ✓"
    assert flat["created_at"] == "2026-11-26T21:14:03Z"
    assert flat["stream"] == "aced:agent:claude"
    assert flat["delivery_count"] == 2
    assert flat["tags"]["signals"]["error_correction"] == 90
    assert set(flat) == set(AgentMessage.model_fields) | (set(Record.model_fields) - {"envelope"})


@pytest.mark.parametrize("tagged", [True, False])
def test_record_flat_round_trip_through_json(tagged: bool) -> None:
    record = make_record() if tagged else make_record(tags=None, committed_at=None)
    line = orjson.dumps(record.flat())
    back = Record.from_flat(orjson.loads(line))
    assert back == record
    assert back.flat() == record.flat()


def test_record_from_flat_rejects_unknown_fields() -> None:
    flat = make_record().flat()
    flat["surprise"] = 1
    with pytest.raises(ValidationError):
        Record.from_flat(flat)


def test_record_from_flat_honours_content_limit_context() -> None:
    flat = make_record().flat()
    assert Record.from_flat(flat, context={"max_content_bytes": 100})
    with pytest.raises(ValidationError):
        Record.from_flat(flat, context={"max_content_bytes": 5})


@pytest.mark.parametrize(
    ("field", "value"),
    [("entry_id", "abc"), ("delivery_count", 0), ("content_sha256", "A" * 64), ("content_sha256", "a" * 63)],
)
def test_record_rules(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        make_record(**{field: value})


def test_signals_and_scores_bounded() -> None:
    with pytest.raises(ValidationError):
        Signals(novelty=101)
    with pytest.raises(ValidationError):
        Signals(novelty=-1)
    with pytest.raises(ValidationError):
        Signals.model_validate({"creativity": 50})
    assert Signals().model_dump() == dict.fromkeys(Signals.model_fields, 0)


# -------------------------------------------------------------------------------------------- stream keys


def test_stream_keys_default_names() -> None:
    keys = StreamKeys()
    assert keys.agent_stream("claude") == "aced:agent:claude"
    assert keys.agent_stream_pattern == "aced:agent:*"
    assert keys.control == "aced:control"
    assert keys.events == "aced:events"
    assert keys.deadletter == "aced:deadletter"
    assert keys.health("host-1") == "aced:health:host-1"
    assert keys.health_pattern == "aced:health:*"


def test_stream_keys_custom_prefix() -> None:
    keys = StreamKeys("team7")
    assert keys.agent_stream("gemini") == "team7:agent:gemini"
    assert keys.events == "team7:events"
    assert keys.deadletter == "team7:deadletter"


@pytest.mark.parametrize("agent", ["Claude", "a b", "", "x*", "a" * 65])
def test_agent_stream_rejects_bad_names(agent: str) -> None:
    with pytest.raises(ValueError, match="invalid agent name"):
        StreamKeys().agent_stream(agent)


@pytest.mark.parametrize(
    ("stream", "agent"),
    [
        ("aced:agent:claude", "claude"),
        ("aced:agent:gemini-2.5", "gemini-2.5"),
        ("aced:agent:", None),
        ("aced:agent:Bad", None),
        ("aced:agent:a:b", None),
        ("aced:events", None),
        ("other:agent:claude", None),
        ("acedx:agent:claude", None),
    ],
)
def test_agent_of(stream: str, agent: str | None) -> None:
    assert StreamKeys().agent_of(stream) == agent


def test_agent_of_inverts_agent_stream() -> None:
    keys = StreamKeys("p")
    for agent in ("claude", "a", "x_y.z-1"):
        assert keys.agent_of(keys.agent_stream(agent)) == agent


# ------------------------------------------------------------------------------ docs and checked-in files


def doc_examples() -> list[tuple[str, int, str]]:
    """Every ```json block of docs/schema.md: (the nearest heading above it, its first line, its text)."""
    heading = ""
    examples: list[tuple[str, int, str]] = []
    lines = DOC.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.strip() == "```json":
            start = i + 1
            end = lines.index("```", start)
            examples.append((heading, start + 1, "\n".join(lines[start:end])))
            i = end
        i += 1
    return examples


def model_named_by(heading: str) -> str:
    named = [name for name in DOC_MODELS if re.search(rf"\b{name}\b", heading)]
    assert len(named) == 1, f"heading {heading!r} above a JSON example must name exactly one model"
    return named[0]


def test_docs_show_an_example_for_every_model() -> None:
    shown = {model_named_by(heading) for heading, _, _ in doc_examples()}
    assert {"AgentMessage", "Attachment", "Record", "Tags", "Signals", "DeadLetter", "Event"} <= shown


@pytest.mark.parametrize(("heading", "line", "text"), doc_examples(), ids=lambda v: str(v)[:24])
def test_doc_example_is_valid(heading: str, line: int, text: str) -> None:
    """docs/schema.md:<line> holds a valid example of the model its heading names."""
    DOC_MODELS[model_named_by(heading)].model_validate_json(text)


def test_doc_documents_every_reject_reason_and_field() -> None:
    from schemas import RejectReason

    text = DOC.read_text(encoding="utf-8")
    for reason in RejectReason:
        assert f"| `{reason.value}` |" in text, reason
    for model in DOC_MODELS.values():
        if model is TrainingProgress:
            continue
        for field in model.model_fields:
            assert f"| `{field}` |" in text, f"{model.__name__}.{field}"


def test_checked_in_json_schemas_are_current() -> None:
    rendered = render_json_schemas()
    on_disk = {
        p.name: p.read_text(encoding="utf-8") for p in (REPO / "schemas" / "json").glob("*.schema.json")
    }
    assert set(on_disk) == set(rendered), "run `aced schema export` and commit schemas/json/"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"schemas/json/{name} is stale: run `aced schema export`"
