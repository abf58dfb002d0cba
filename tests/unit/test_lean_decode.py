"""``AvroDeserializer.decode_event`` (the worker's read) returns what ``decode`` returns, but for
canonical event ids kept as strings, and fails exactly as ``decode`` fails on every bad body."""

from __future__ import annotations

import io
import json
import random
import uuid
from typing import Any

import fastavro
import pytest

from hub.contract.errors import ContractError
from hub.contract.schemas import SchemaKind, load_schema, parsed_schema
from hub.contract.serde import AvroDeserializer, _lean_plan, frame
from tests.unit.test_avro_checks import PAYLOADS, avro_record


class Registry:
    def __init__(self, *schemas: dict[str, Any]) -> None:
        self.texts = {i + 1: json.dumps(s) for i, s in enumerate(schemas)}

    def schema_by_id(self, schema_id: int) -> str:
        return self.texts[schema_id]


KINDS = (SchemaKind.DOSSIER_EVENT, SchemaKind.FEEDBACK_EVENT)
FEEDBACK = ("ServiceRated", "ComplaintFiled")


def encoded(event_type: str, **changes: Any) -> bytes:
    kind = SchemaKind.FEEDBACK_EVENT if event_type in FEEDBACK else SchemaKind.DOSSIER_EVENT
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema(kind), {**avro_record(event_type), **changes})
    return frame(KINDS.index(kind) + 1, buf.getvalue())


def outcome(decode: Any, data: bytes) -> Any:
    try:
        return decode(data)
    except ContractError as exc:
        return type(exc), str(exc)


def canonical(record: Any) -> Any:
    return {**record, "event_id": str(record["event_id"])}


DESERIALIZER = AvroDeserializer(Registry(*(load_schema(k) for k in KINDS)))  # type: ignore[arg-type]


def test_the_hub_schemas_get_a_lean_plan() -> None:
    for kind in KINDS:
        plan = _lean_plan(load_schema(kind))
        assert plan is not None
        assert [name for name, _ in plan.top] == ["event_id", "occurred_at", "recorded_at"]


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_same_record_as_decode(event_type: str) -> None:
    data = encoded(event_type)
    schema_id, lean = DESERIALIZER.decode_event(data)
    _, full = DESERIALIZER.decode(data)
    assert type(lean["event_id"]) is str
    assert lean == canonical(full)
    assert lean["payload"][1] == full["payload"][1]
    assert schema_id == KINDS.index(SchemaKind.FEEDBACK_EVENT if event_type in FEEDBACK else
                                    SchemaKind.DOSSIER_EVENT) + 1  # fmt: skip


def test_a_non_canonical_event_id_comes_as_fastavro_gives_it() -> None:
    data = encoded("DossierRefused", event_id="6F1C2A0E-4B7D-5C1E-9A53-48A0B1D6E940")
    assert DESERIALIZER.decode_event(data) == DESERIALIZER.decode(data)
    assert isinstance(DESERIALIZER.decode_event(data)[1]["event_id"], uuid.UUID)
    bad = encoded("DossierRefused", event_id="not-a-uuid")
    assert outcome(DESERIALIZER.decode_event, bad) == outcome(DESERIALIZER.decode, bad)
    assert isinstance(outcome(DESERIALIZER.decode, bad), tuple)


@pytest.mark.parametrize("event_type", ["DossierSubmitted", "DossierReceived", "StepStarted"])
def test_every_truncation_and_corruption_fails_the_same_way(event_type: str) -> None:
    data = encoded(event_type)
    rng = random.Random(13)
    bodies = [data[:n] for n in range(len(data))] + [data + b"\x00", data + b"xyz"]
    for _ in range(400):
        corrupt = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            corrupt[rng.randrange(5, len(data))] = rng.randrange(256)
        bodies.append(bytes(corrupt))
    for body in bodies:
        lean = outcome(DESERIALIZER.decode_event, body)
        full = outcome(DESERIALIZER.decode, body)
        if isinstance(full, tuple) and isinstance(full[1], dict):
            assert lean[0] == full[0]
            assert canonical(lean[1]) == canonical(full[1])
        else:
            assert lean == full


def test_a_reader_schema_or_plain_payloads_read_the_ordinary_way() -> None:
    data = encoded("DossierRefused")
    schema = load_schema(SchemaKind.DOSSIER_EVENT)
    registry = Registry(schema)
    for deserializer in (
        AvroDeserializer(registry, schema),  # type: ignore[arg-type]
        AvroDeserializer(registry, return_record_name=False),  # type: ignore[arg-type]
    ):
        assert deserializer.decode_event(data) == deserializer.decode(data)


@pytest.mark.parametrize("millis", [2**62, -(2**62)])
def test_a_timestamp_beyond_any_calendar_is_a_dead_letter_not_a_crash(millis: int) -> None:
    # Any Kafka client can write a timestamp-millis no datetime holds; fastavro then raises
    # OverflowError, which must become the record's dead letter, not stop the worker.
    from datetime import UTC, datetime

    from hub.reference import load_reference
    from hub.settings import HubSettings
    from hub.worker.processor import Processor

    data = encoded("DossierSubmitted", occurred_at=millis)
    with pytest.raises(ContractError, match="does not match schema id"):
        DESERIALIZER.decode(data)
    processor = Processor(HubSettings(), load_reference(), DESERIALIZER, {})
    effects = processor.handle(
        topic="dossier.events", partition=0, offset=7, key=b"k", value=data, headers=[],
        state=None, now=datetime.now(UTC),
    )  # fmt: skip
    assert effects.outcome == "dead-letter"
    assert effects.dead_letter is not None and effects.dead_letter.source_offset == 7
    assert "OverflowError" in effects.dead_letter.detail
