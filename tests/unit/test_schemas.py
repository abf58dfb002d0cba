"""Specification of the Avro schema files (schemas/) and hub.contract.schemas."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import fastavro
import pytest

from hub.contract.event_types import DossierEventType, FeedbackEventType
from hub.contract.inbound import (
    Channel,
    InboundDossierEvent,
    InboundFeedbackEvent,
    to_avro_record,
    validate_dossier_event,
    validate_feedback_event,
)
from hub.contract.schemas import (
    NAMESPACE,
    SCHEMA_DIR,
    SchemaError,
    SchemaKind,
    full_name,
    load_schema,
    parsed_schema,
    pii_fields,
    versions,
)
from tests.unit.test_inbound import (
    NOW,
    dossier_event,
    feedback_event,
    procedure_effective_from,
)

ENVELOPE = [
    "event_id",
    "event_type",
    "occurred_at",
    "recorded_at",
    "source_system",
    "agency_code",
    "dossier_code",
    "schema_version",
    "traceparent",
]

TOP_LEVEL_NAMES = {
    SchemaKind.DOSSIER_EVENT: "DossierEvent",
    SchemaKind.FEEDBACK_EVENT: "FeedbackEvent",
    SchemaKind.DOSSIER_STATUS: "DossierStatusChanged",
    SchemaKind.DOSSIER_ALERT: "DossierAlert",
}

EXPECTED_PII = {
    SchemaKind.DOSSIER_EVENT: {
        "payload.DossierSubmitted.applicant_name",
        "payload.DossierSubmitted.applicant_id_number",
    },
    SchemaKind.FEEDBACK_EVENT: {"payload.ServiceRated.comment", "payload.ComplaintFiled.content"},
    SchemaKind.DOSSIER_STATUS: {"applicant_name"},
    SchemaKind.DOSSIER_ALERT: set(),
}

RECORDED_AT = datetime(2025, 8, 5, 3, 0, 0, 987654, tzinfo=UTC)


def all_schema_files() -> list[tuple[SchemaKind, int]]:
    return [(kind, v) for kind in SchemaKind for v in versions(kind)]


def walk_fields(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field of every record reachable from ``schema``, with a dotted path."""
    if isinstance(schema, list):
        for branch in schema:
            yield from walk_fields(branch, path)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            for field in schema["fields"]:
                field_path = f"{path}{schema['name']}.{field['name']}"
                yield field_path, field
                yield from walk_fields(field["type"], f"{field_path}:")
        elif schema.get("type") in {"array", "map"}:
            yield from walk_fields(schema.get("items", schema.get("values")), path)


def named_types(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, list):
        for branch in schema:
            yield from named_types(branch)
    elif isinstance(schema, dict):
        if schema.get("type") in {"record", "enum", "fixed"}:
            yield schema
        if schema.get("type") == "record":
            for field in schema["fields"]:
                yield from named_types(field["type"])


def union_branch_names(kind: SchemaKind) -> list[str]:
    payload = next(f for f in load_schema(kind)["fields"] if f["name"] == "payload")
    return [branch["name"] for branch in payload["type"]]


def round_trip(kind: SchemaKind, record: dict[str, Any]) -> dict[str, Any]:
    schema = parsed_schema(kind)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    buffer.seek(0)
    result = fastavro.schemaless_reader(buffer, schema, None, return_record_name=True)
    assert isinstance(result, dict)
    assert buffer.read() == b"", "reader must consume exactly what the writer wrote"
    return result


# --- files and loading ------------------------------------------------------------------------


def test_every_kind_has_version_1_and_nothing_unexpected() -> None:
    for kind in SchemaKind:
        assert versions(kind)[0] == 1
        assert versions(kind) == list(range(1, len(versions(kind)) + 1)), "no gaps"
    folders = {p.name for p in SCHEMA_DIR.iterdir() if p.is_dir()}
    assert folders == {k.value for k in SchemaKind}
    assert all(p.parent.name in folders for p in SCHEMA_DIR.rglob("*.avsc"))


@pytest.mark.parametrize(("kind", "version"), all_schema_files())
def test_every_schema_file_parses(kind: SchemaKind, version: int) -> None:
    raw = json.loads((SCHEMA_DIR / kind / f"v{version}.avsc").read_text(encoding="utf-8"))
    assert raw == load_schema(kind, version)
    fastavro.parse_schema(raw)
    assert raw["type"] == "record"
    assert raw["namespace"] == NAMESPACE
    assert raw["name"] == TOP_LEVEL_NAMES[kind]


def test_latest_is_the_default() -> None:
    for kind in SchemaKind:
        assert load_schema(kind) == load_schema(kind, versions(kind)[-1])
        assert load_schema(kind.value) == load_schema(kind)


def test_parsed_schema_is_cached() -> None:
    assert parsed_schema(SchemaKind.DOSSIER_EVENT) is parsed_schema(SchemaKind.DOSSIER_EVENT)
    assert parsed_schema(SchemaKind.DOSSIER_EVENT, 1)["name"] == f"{NAMESPACE}.DossierEvent"


def test_missing_version_or_kind_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        load_schema(SchemaKind.DOSSIER_EVENT, 999)
    with pytest.raises(SchemaError):
        load_schema("no-such-kind")


def test_full_name() -> None:
    assert full_name("DossierSubmitted") == "vn.gov.nghean.hub.DossierSubmitted"
    assert full_name("vn.gov.nghean.hub.DossierSubmitted") == "vn.gov.nghean.hub.DossierSubmitted"


# --- documentation and shape ------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "version"), all_schema_files())
def test_every_field_and_named_type_has_a_doc(kind: SchemaKind, version: int) -> None:
    schema = load_schema(kind, version)
    fields = list(walk_fields(schema))
    assert len(fields) > len(ENVELOPE)
    undocumented = [path for path, field in fields if not str(field.get("doc", "")).strip()]
    assert undocumented == []
    assert [t["name"] for t in named_types(schema) if not str(t.get("doc", "")).strip()] == []


@pytest.mark.parametrize(("kind", "version"), all_schema_files())
def test_optional_fields_are_null_first_with_null_default(kind: SchemaKind, version: int) -> None:
    for path, field in walk_fields(load_schema(kind, version)):
        field_type = field["type"]
        if isinstance(field_type, list) and "null" in field_type:
            assert field_type[0] == "null", path
            assert len(field_type) == 2, path
            assert "default" in field and field["default"] is None, path


def test_envelope_is_identical_in_all_four() -> None:
    envelopes = {kind: load_schema(kind)["fields"][: len(ENVELOPE)] for kind in SchemaKind}
    reference = envelopes[SchemaKind.DOSSIER_EVENT]
    assert [f["name"] for f in reference] == ENVELOPE
    for kind, fields in envelopes.items():
        assert fields == reference, kind


def test_envelope_types() -> None:
    fields = {f["name"]: f for f in load_schema(SchemaKind.DOSSIER_EVENT)["fields"]}
    assert fields["event_id"]["type"] == {"type": "string", "logicalType": "uuid"}
    for name in ("occurred_at", "recorded_at"):
        assert fields[name]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert fields["schema_version"]["type"] == "int"
    assert fields["traceparent"]["type"] == ["null", "string"]


def test_dossier_event_union_branches_are_the_event_types() -> None:
    assert union_branch_names(SchemaKind.DOSSIER_EVENT) == [t.value for t in DossierEventType]


def test_feedback_event_union_branches_are_the_event_types() -> None:
    assert union_branch_names(SchemaKind.FEEDBACK_EVENT) == [t.value for t in FeedbackEventType]


def test_payload_is_the_last_field() -> None:
    for kind in (SchemaKind.DOSSIER_EVENT, SchemaKind.FEEDBACK_EVENT):
        names = [f["name"] for f in load_schema(kind)["fields"]]
        assert names == [*ENVELOPE, "payload"]


def test_channel_enum_matches_the_code() -> None:
    symbols = [c.value for c in Channel]
    assert symbols == ["IN_PERSON", "ONLINE", "POSTAL"]
    assert [c.code for c in Channel] == [1, 2, 3]
    for kind in (SchemaKind.DOSSIER_EVENT, SchemaKind.DOSSIER_STATUS):
        enums = [t for t in named_types(load_schema(kind)) if t["type"] == "enum"]
        channel = next(t for t in enums if t["name"] == "Channel")
        assert channel["symbols"] == symbols


def test_alert_enums() -> None:
    schema = load_schema(SchemaKind.DOSSIER_ALERT)
    enums = {t["name"]: t["symbols"] for t in named_types(schema) if t["type"] == "enum"}
    assert enums["AlertKind"] == ["DUE_SOON", "OVERDUE", "APOLOGY_OWED"]
    assert enums["AlertScope"] == ["DOSSIER", "STEP"]


@pytest.mark.parametrize("kind", list(SchemaKind))
def test_pii_fields_are_exactly_the_expected_set(kind: SchemaKind) -> None:
    assert pii_fields(load_schema(kind)) == EXPECTED_PII[kind]
    assert pii_fields(parsed_schema(kind)) == EXPECTED_PII[kind]


def test_pii_marks_are_booleans() -> None:
    for kind, version in all_schema_files():
        for path, field in walk_fields(load_schema(kind, version)):
            assert field.get("pii", False) in (True, False), path


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", [t.value for t in DossierEventType])
def test_dossier_event_round_trips(event_type: str) -> None:
    event = validate_dossier_event(
        dossier_event(event_type), now=NOW, procedure_effective_from=procedure_effective_from
    )
    assert isinstance(event, InboundDossierEvent), event
    record = to_avro_record(event, recorded_at=RECORDED_AT, schema_version=1)
    assert record["payload"][0] == f"{NAMESPACE}.{event_type}"
    assert round_trip(SchemaKind.DOSSIER_EVENT, record) == record


@pytest.mark.parametrize("event_type", [t.value for t in FeedbackEventType])
def test_feedback_event_round_trips(event_type: str) -> None:
    event = validate_feedback_event(feedback_event(event_type), now=NOW)
    assert isinstance(event, InboundFeedbackEvent), event
    record = to_avro_record(event, recorded_at=RECORDED_AT, schema_version=1)
    assert round_trip(SchemaKind.FEEDBACK_EVENT, record) == record


def test_round_trip_with_optional_fields_null() -> None:
    data = dossier_event(traceparent=None)
    del data["payload"]["applicant_id_number"]
    event = validate_dossier_event(data, now=NOW, procedure_effective_from=procedure_effective_from)
    assert isinstance(event, InboundDossierEvent)
    record = to_avro_record(event, recorded_at=RECORDED_AT, schema_version=1)
    assert record["traceparent"] is None
    assert record["payload"][1]["applicant_id_number"] is None
    assert round_trip(SchemaKind.DOSSIER_EVENT, record) == record


def test_to_avro_record_conventions() -> None:
    event = validate_dossier_event(
        dossier_event(), now=NOW, procedure_effective_from=procedure_effective_from
    )
    assert isinstance(event, InboundDossierEvent)
    record = to_avro_record(event, recorded_at=RECORDED_AT, schema_version=3)
    name, payload = record["payload"]
    assert name == "vn.gov.nghean.hub.DossierSubmitted"
    assert "event_type" not in payload
    assert payload["channel"] == "ONLINE"
    # 08:15:30.123 in Vinh, as UTC, milliseconds kept.
    assert payload["submitted_at"] == datetime(2025, 8, 5, 1, 15, 30, 123000, tzinfo=UTC)
    assert record["recorded_at"] == datetime(2025, 8, 5, 3, 0, 0, 987000, tzinfo=UTC)
    assert record["schema_version"] == 3
    assert record["event_id"] == uuid.UUID("3f1c2b9e-6d1a-4c7e-9a4b-1e2f3a4b5c6d")
    assert [k for k in record if k != "payload"] == ENVELOPE


def test_to_avro_record_rejects_naive_recorded_at() -> None:
    event = validate_dossier_event(
        dossier_event(), now=NOW, procedure_effective_from=procedure_effective_from
    )
    assert isinstance(event, InboundDossierEvent)
    with pytest.raises(ValueError, match="timezone"):
        to_avro_record(event, recorded_at=datetime(2025, 8, 5), schema_version=1)


def _envelope(event_type: str) -> dict[str, Any]:
    return {
        "event_id": uuid.UUID("6c8f2f0e-1f7b-5d2a-9a57-2b1d7a0c4e11"),
        "event_type": event_type,
        "occurred_at": datetime(2025, 8, 5, 1, 15, 31, tzinfo=UTC),
        "recorded_at": datetime(2025, 8, 5, 1, 15, 32, 5000, tzinfo=UTC),
        "source_system": "hub-processor",
        "agency_code": "000.00.12.H40",
        "dossier_code": "000.00.12.H40-250805-0001",
        "schema_version": 1,
        "traceparent": None,
    }


def test_status_record_round_trips() -> None:
    record = _envelope("DossierStatusChanged") | {
        "procedure_code": "1.001193",
        "channel": "ONLINE",
        "status": "PROCESSING",
        "portal_status_code": 4,
        "previous_status": "RECEIVED",
        "agency_code_handling": "000.00.15.H40",
        "received_at": datetime(2025, 8, 5, 1, 30, tzinfo=UTC),
        "appointment_date": date(2025, 8, 19),
        "finished_at": None,
        "returned_at": None,
        "step": (
            f"{NAMESPACE}.DossierStep",
            {
                "step_no": 2,
                "step_name": "Thẩm định hồ sơ",
                "official": "Lê Văn Cường",
                "unit": "Phòng Hành chính tư pháp",
                "started_at": datetime(2025, 8, 5, 2, 0, tzinfo=UTC),
                "step_deadline": None,
            },
        ),
        "applicant_name": "Nguyễn Thị Hồng Nhung",
        "cause_event_id": uuid.UUID("3f1c2b9e-6d1a-4c7e-9a4b-1e2f3a4b5c6d"),
    }
    assert round_trip(SchemaKind.DOSSIER_STATUS, record) == record


def test_alert_record_round_trips() -> None:
    record = _envelope("DossierAlert") | {
        "kind": "DUE_SOON",
        "scope": "STEP",
        "step_no": 2,
        "deadline": date(2025, 8, 12),
        "detected_at": datetime(2025, 8, 11, 1, 0, tzinfo=UTC),
    }
    assert round_trip(SchemaKind.DOSSIER_ALERT, record) == record
