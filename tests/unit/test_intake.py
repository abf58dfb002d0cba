"""The worker's one-pass reader (``hub.worker.intake.event_reader``) only ever agrees.

It may decline a message (None: the exact path runs), but an event it reads must equal what
the exact path (``decode_event``, ``from_record``, then ``Processor._boundary_check``) makes of
the same bytes, and it must accept the ordinary valid records, or the worker silently loses its
fast path. Records are written with fastavro, as any producer would; a record fastavro cannot
write never reaches the worker as bytes, and counts as declined.
"""

from __future__ import annotations

import io
import json
import random
import struct
import unicodedata
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest

from connectors.scenarios import VN, dossier_life
from hub.contract.errors import DecodeError
from hub.contract.inbound import (
    _PAYLOAD_CHECKS,
    DEFAULT_MAX_FUTURE_SKEW,
    to_avro_record,
    validate_dossier_event,
)
from hub.contract.schemas import SchemaKind, load_schema, parsed_schema
from hub.contract.serde import AvroDeserializer
from hub.domain.events import DomainEvent, EventShapeError, from_record
from hub.worker.intake import FIELDS, Reader, event_reader
from hub.worker.processor import _ms
from tests.unit.test_avro_checks import (
    CASES,
    NEW_PROCEDURE,
    NOW,
    PAYLOADS,
    PROCESSOR,
    avro_record,
)

FEEDBACK_TYPES = ("ServiceRated", "ComplaintFiled")
#: schema id -> kind, as a registry would number them
KINDS = {1: SchemaKind.DOSSIER_EVENT, 2: SchemaKind.FEEDBACK_EVENT}
READERS: dict[int, Reader | None] = {i: event_reader(load_schema(k)) for i, k in KINDS.items()}


def schema_id_of(record: Any) -> int:
    kind = record.get("event_type") if isinstance(record, dict) else None
    return 2 if kind in FEEDBACK_TYPES else 1


def write(record: Any) -> bytes | None:
    """The framed message a producer would send for ``record``; None if it cannot be written."""
    schema_id = schema_id_of(record)
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, parsed_schema(KINDS[schema_id]), record)
    except Exception:
        return None
    return struct.pack(">bI", 0, schema_id) + buf.getvalue()


class Registry:
    def schema_by_id(self, schema_id: int) -> str:
        return json.dumps(load_schema(KINDS[schema_id]))


DESERIALIZER = AvroDeserializer(Registry())  # type: ignore[arg-type]


def decoded(data: bytes) -> Any:
    """The record the exact path starts from (``decode_event``'s reading of ``data``)."""
    return DESERIALIZER.decode_event(data)[1]


def exact(record: Any, now: datetime = NOW) -> DomainEvent | str:
    try:
        event = from_record(record)
    except EventShapeError as exc:
        return f"invalid-shape: {exc}"
    checked = PROCESSOR._boundary_check(record, event, now)
    return checked if not isinstance(checked, list) else f"validation: {checked}"


def read(data: bytes, now: datetime = NOW) -> DomainEvent | None:
    reader = READERS[struct.unpack(">I", data[1:5])[0]]
    assert reader is not None
    return reader(data, now + DEFAULT_MAX_FUTURE_SKEW, PROCESSOR._procedure_since, _ms(now))


def agrees_on(data: bytes, now: datetime = NOW) -> DomainEvent | None:
    got = read(data, now)
    try:
        record = decoded(data)
    except DecodeError:
        assert got is None  # bytes the exact path cannot decode are never accepted
        return None
    want = exact(record, now)
    if got is not None:
        assert type(got) is type(want)
        assert got == want
    return got


def agrees(record: Any, now: datetime = NOW) -> DomainEvent | None:
    data = write(record)
    return None if data is None else agrees_on(data, now)


def roundtrip(record: dict[str, Any]) -> Any:
    """The record as the worker gets it: through fastavro (UUIDs, UTC datetimes, symbols)."""
    data = write(record)
    assert data is not None
    return fastavro.schemaless_reader(
        io.BytesIO(data[5:]), parsed_schema(KINDS[schema_id_of(record)]), None,
        return_record_name=True,
    )  # fmt: skip


def test_the_readers_are_made_for_the_hubs_schemas() -> None:
    assert all(reader is not None for reader in READERS.values())


def test_the_table_lists_exactly_the_checked_fields() -> None:
    assert {t: [n for n, _ in f] for t, f in FIELDS.items()} == {
        t: [n for n, _ in c] for t, c in _PAYLOAD_CHECKS.items()
    }


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_valid_records_of_every_type_take_the_fast_path(event_type: str) -> None:
    record = roundtrip(avro_record(event_type))
    assert agrees(record) is not None


def test_simulated_dossier_lives_take_the_fast_path() -> None:
    start = datetime(2026, 3, 2, 8, tzinfo=VN)
    now = start + timedelta(days=40)
    code = "000.00.03.H40-260302-0042"
    life = dossier_life(code, "000.00.03.H40", "2.000488", start, supplement=True, rating=None)
    for event in life:
        model = validate_dossier_event(event, now=now)
        assert not isinstance(model, list), model
        record = roundtrip(to_avro_record(model, recorded_at=now, schema_version=1))
        assert agrees(record, now) is not None, event["event_type"]


@pytest.mark.parametrize(("name", "event_type", "edit"), CASES, ids=[c[0] for c in CASES])
def test_the_exact_checks_table(name: str, event_type: str, edit: Any) -> None:
    record = avro_record(event_type)
    record_name, body = record["payload"]
    body = dict(body)
    record["payload"] = (record_name, body)
    edit(record, body)
    got = agrees(record)
    data = write(record)
    if data is not None and isinstance(exact(decoded(data)), str):
        assert got is None


NFD = unicodedata.normalize("NFD", "Nguyễn Thị Ánh")
ODD_VALUES: list[Any] = [
    None, "", " ", " x", "x ", "x", NFD, "Nguyễn", "a" * 65, "a" * 101, "a" * 201, "a" * 4001,
    "000.00.03.H40", "000.00.03.H40\n", "2.000488", "1.999999", "ONLINE", "online", 2, 0, -1, 1,
    5, 6, 2**31, 2**63, True, False, 1.0, b"x", date(2014, 12, 31), date(2026, 3, 1),
    datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1), datetime(2014, 12, 31, 17, tzinfo=UTC),
    datetime(2014, 12, 31, 16, 59, 59, 999000, tzinfo=UTC), NOW + timedelta(minutes=5),
    NOW + timedelta(minutes=5, milliseconds=1), datetime(2026, 3, 1, 0, 0, 0, 1500, tzinfo=UTC),
    datetime(2026, 3, 1, 9, tzinfo=timezone(timedelta(hours=7))), uuid.UUID(int=5),
    "6F1C2A0E-4B7D-5C1E-9A53-48A0B1D6E940", "6f1c2a0e-4b7d-5c1e-9a53-48a0b1d6e940",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "000.00.03.H40-261341-0001",
    "000.00.03.H40-260310-0001", ("x", {}), {},
]  # fmt: skip


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_every_odd_value_in_every_field_is_declined_or_agreed_on(event_type: str) -> None:
    base = roundtrip(avro_record(event_type))
    record_name, body = base["payload"]
    for name in [n for n in base if n != "payload"]:
        for value in ODD_VALUES:
            agrees({**base, name: value})
    for name in [*body, "event_type", "remark"]:
        for value in ODD_VALUES:
            agrees({**base, "payload": (record_name, {**body, name: value})})
    for value in ODD_VALUES:
        agrees({**base, "payload": value})
        agrees({**base, "payload": (value, body)})
    agrees({**base, "payload": body})  # a plain dict: left to the exact path
    agrees({k: v for k, v in base.items() if k != "traceparent"})
    agrees({**base, "extra": 1})


@pytest.mark.parametrize(
    "moved", [(), ("occurred_at",), ("submitted_at",), ("occurred_at", "submitted_at")]
)
def test_submissions_before_their_procedure_are_declined(moved: tuple[str, ...]) -> None:
    base = roundtrip(avro_record("DossierSubmitted"))
    record_name, body = base["payload"]
    body = {**body, "procedure_code": NEW_PROCEDURE}
    record = {**base, "payload": (record_name, body)}
    # the last instant of the day before the procedure took effect, local time, and the first
    for when, accepted in ((datetime(2024, 7, 31, 16, 59, 59, 999000, tzinfo=UTC), False),
                           (datetime(2024, 7, 31, 17, tzinfo=UTC), True)):  # fmt: skip
        if "occurred_at" in moved:
            record["occurred_at"] = when
        if "submitted_at" in moved:
            body["submitted_at"] = when
        got = agrees(record)
        assert (got is not None) == (accepted or not moved)


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_damaged_bytes_are_declined_or_agreed_on(event_type: str) -> None:
    """Truncated, extended and bit-flipped messages: the reader never accepts what the exact
    path cannot decode, and never reads a value other than the exact path's."""
    data = write(roundtrip(avro_record(event_type)))
    assert data is not None and read(data) is not None
    rng = random.Random(event_type)
    for cut in range(5, len(data)):
        assert agrees_on(data[:cut]) is None
    for extra in (b"\x00", b"\x02a", b"\xff" * 11):
        assert agrees_on(data + extra) is None
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(5, len(data))] = rng.randrange(256)
        agrees_on(bytes(damaged))


def writer_schema_with(kind: SchemaKind, edit: Any) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(json.dumps(load_schema(kind)))
    edit(schema)
    return schema


def test_a_writer_schema_with_an_extra_payload_field_is_left_to_the_exact_path() -> None:
    def add_field(schema: dict[str, Any]) -> None:
        payload = next(f for f in schema["fields"] if f["name"] == "payload")
        branch = next(b for b in payload["type"] if b["name"] == "StepCompleted")
        branch["fields"].append({"name": "remark", "type": ["null", "string"], "default": None})

    reader = event_reader(writer_schema_with(SchemaKind.DOSSIER_EVENT, add_field))
    assert reader is not None  # the other event types are still read in one pass
    record = roundtrip(avro_record("StepCompleted"))
    record["payload"][1]["remark"] = None
    body = io.BytesIO()
    fastavro.schemaless_writer(
        body, fastavro.parse_schema(writer_schema_with(SchemaKind.DOSSIER_EVENT, add_field)), record
    )
    data = b"\x00\x00\x00\x00\x09" + body.getvalue()
    assert reader(data, NOW + DEFAULT_MAX_FUTURE_SKEW, None, _ms(NOW)) is None
    started = write(roundtrip(avro_record("StepStarted")))
    assert started is not None
    assert reader(started, NOW + DEFAULT_MAX_FUTURE_SKEW, None, _ms(NOW)) == read(started)


def test_schemas_of_another_shape_get_no_reader() -> None:
    def drop_traceparent(schema: dict[str, Any]) -> None:
        schema["fields"] = [f for f in schema["fields"] if f["name"] != "traceparent"]

    def payload_first(schema: dict[str, Any]) -> None:
        schema["fields"].insert(0, schema["fields"].pop())

    def map_field(schema: dict[str, Any]) -> None:
        next(f for f in schema["fields"] if f["name"] == "source_system")["type"] = {
            "type": "map", "values": "string"
        }  # fmt: skip

    for edit in (drop_traceparent, payload_first, map_field):
        assert event_reader(writer_schema_with(SchemaKind.DOSSIER_EVENT, edit)) is None
    assert event_reader({"type": "string"}) is None
