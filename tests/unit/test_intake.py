"""The worker's one-pass intake (``hub.worker.intake.fast_event``) only ever agrees.

It may decline a record (None: the exact path runs), but an event it returns must equal what
the exact path (``from_record`` then ``Processor._boundary_check``) returns for the same record,
and it must accept the ordinary valid records, or the worker silently loses its fast path.
"""

from __future__ import annotations

import io
import unicodedata
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest

from connectors.scenarios import VN, dossier_life
from hub.contract.inbound import (
    _PAYLOAD_CHECKS,
    DEFAULT_MAX_FUTURE_SKEW,
    to_avro_record,
    validate_dossier_event,
)
from hub.contract.schemas import SchemaKind, parsed_schema
from hub.domain.events import DomainEvent, EventShapeError, from_record
from hub.worker.intake import FIELDS, fast_event
from hub.worker.processor import _ms
from tests.unit.test_avro_checks import (
    CASES,
    NEW_PROCEDURE,
    NOW,
    PAYLOADS,
    PROCESSOR,
    avro_record,
)


def exact(record: Any, now: datetime = NOW) -> DomainEvent | str:
    try:
        event = from_record(record)
    except EventShapeError as exc:
        return f"invalid-shape: {exc}"
    checked = PROCESSOR._boundary_check(record, event, now)
    return checked if not isinstance(checked, list) else f"validation: {checked}"


def fast(record: Any, now: datetime = NOW) -> DomainEvent | None:
    return fast_event(
        record,
        latest=now + DEFAULT_MAX_FUTURE_SKEW,
        procedure_effective_from=PROCESSOR._procedure_since,
        recorded_default=_ms(now),
    )


def roundtrip(record: dict[str, Any]) -> Any:
    """The record as the worker gets it: through fastavro (UUIDs, UTC datetimes, symbols)."""
    schema = parsed_schema(SchemaKind.DOSSIER_EVENT)
    if record["event_type"] in ("ServiceRated", "ComplaintFiled"):
        schema = parsed_schema(SchemaKind.FEEDBACK_EVENT)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, schema, None, return_record_name=True)


def agrees(record: Any, now: datetime = NOW) -> DomainEvent | None:
    got = fast(record, now)
    if got is not None:
        want = exact(record, now)
        assert type(got) is type(want)
        assert got == want
    return got


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
    if isinstance(exact(record), str):
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
