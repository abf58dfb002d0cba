"""The compiled Avro writer writes what fastavro writes, byte for byte."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import fastavro
import pytest

from hub.contract.errors import EncodeError
from hub.contract.samples import sample_records
from hub.contract.schemas import SchemaKind, load_schema, versions
from hub.contract.serde import (
    AvroSerializer,
    UnsupportedSchemaError,
    compile_writer,
)
from hub.domain.lifecycle import CurrentStep
from hub.outputs import AlertRecord, StatusRecord

COMPILED = [SchemaKind.DOSSIER_STATUS, SchemaKind.DOSSIER_ALERT]


def fastavro_bytes(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kind", "version"), [(k, v) for k in COMPILED for v in versions(k)], ids=str
)
def test_every_branch_and_symbol_is_written_as_fastavro_does(
    kind: SchemaKind, version: int
) -> None:
    schema = load_schema(kind, version)
    write = compile_writer(schema)
    records = sample_records(schema)
    assert records
    for record in records:
        assert write(record) == fastavro_bytes(schema, record)
        # the hub's own records give a record branch as a plain dict, not (name, fields)
        plain = {k: v[1] if isinstance(v, tuple) else v for k, v in record.items()}
        assert write(plain) == fastavro_bytes(schema, record)


def as_object(value: Any) -> Any:
    """A record as an object with its fields as attributes (nested records too)."""
    if isinstance(value, tuple):
        value = value[1]
    if isinstance(value, dict):
        return SimpleNamespace(**{k: as_object(v) for k, v in value.items()})
    return value


@pytest.mark.parametrize(
    ("kind", "version"), [(k, v) for k in COMPILED for v in versions(k)], ids=str
)
def test_a_record_read_from_attributes_is_written_as_fastavro_does(
    kind: SchemaKind, version: int
) -> None:
    schema = load_schema(kind, version)
    write = compile_writer(schema, attributes=True)
    for record in sample_records(schema):
        assert write(as_object(record)) == fastavro_bytes(schema, record)
    with pytest.raises(AttributeError):
        write(SimpleNamespace())  # no defaults from attributes: every field must be there


def test_the_output_records_are_their_schemas_fields() -> None:
    """The worker writes ``StatusRecord`` objects with the attribute writer: their fields
    must be the schema's, and the step its ``CurrentStep``'s."""
    schema = load_schema(SchemaKind.DOSSIER_STATUS)
    assert StatusRecord.__struct_fields__ == tuple(f["name"] for f in schema["fields"])
    step = next(f for f in schema["fields"] if f["name"] == "step")["type"][1]
    assert {f["name"] for f in step["fields"]} <= set(CurrentStep.__struct_fields__)
    alert = load_schema(SchemaKind.DOSSIER_ALERT)
    assert AlertRecord.__struct_fields__ == tuple(f["name"] for f in alert["fields"])


NUMBERS = {
    "type": "record",
    "name": "Numbers",
    "fields": [
        {"name": "n", "type": "long"},
        {"name": "i", "type": "int"},
        {"name": "d", "type": "double"},
        {"name": "f", "type": "float"},
        {"name": "ok", "type": "boolean"},
        {"name": "raw", "type": "bytes"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "maybe", "type": ["null", "long"], "default": None},
    ],
}


@pytest.mark.parametrize(
    "n", [0, 1, -1, 63, 64, -64, -65, 2**31 - 1, -(2**31), 2**62, 2**63 - 1, -(2**63)]
)
def test_numbers_and_times_match_fastavro(n: int) -> None:
    record = {
        "n": n, "i": n % 2**31, "d": n / 3, "f": 0.5, "ok": n > 0, "raw": b"\x00\xff",
        "at": datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC),
        "us": datetime(2025, 8, 5, 1, 2, 3, 456_789, tzinfo=UTC),
        "day": date(2025, 8, 5), "tags": ["a", "Nguyễn"] * (n % 3), "maybe": None if n % 2 else n,
    }  # fmt: skip
    assert compile_writer(NUMBERS)(record) == fastavro_bytes(NUMBERS, record)


def test_a_missing_optional_field_takes_its_default_like_fastavro() -> None:
    record: dict[str, Any] = {"n": 1, "i": 2, "d": 0.0, "f": 0.0, "ok": True, "raw": b""}
    record |= {"at": 0, "us": 0, "day": 0, "tags": []}  # no "maybe": its default, None
    assert compile_writer(NUMBERS)(record) == fastavro_bytes(NUMBERS, record)


@pytest.mark.parametrize(
    "field_type",
    [
        {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        {"type": "long", "logicalType": "local-timestamp-millis"},
        {"type": "int", "logicalType": "time-millis"},
        {"type": "map", "values": "string"},
        {"type": "fixed", "name": "Sixteen", "size": 16},
        ["null", "string", "long"],
    ],
    ids=str,
)
def test_what_is_not_compiled_is_left_to_fastavro(field_type: Any) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": field_type}]}
    with pytest.raises(UnsupportedSchemaError):
        compile_writer(schema)


def test_the_input_events_are_left_to_fastavro() -> None:
    with pytest.raises(UnsupportedSchemaError):
        compile_writer(load_schema(SchemaKind.DOSSIER_EVENT))  # a union of many payloads


def test_a_record_that_does_not_fit_is_an_encode_error() -> None:
    serializer = AvroSerializer(None, "t-value", load_schema(SchemaKind.DOSSIER_ALERT))  # type: ignore[arg-type]
    record = sample_records(load_schema(SchemaKind.DOSSIER_ALERT))[0]
    with pytest.raises(EncodeError):
        serializer.encode_body({**record, "kind": "NOT_A_KIND"})
    with pytest.raises(EncodeError):
        serializer.encode_body({**record, "dossier_code": 5})
