"""The worker's precompiled boundary checks say exactly what the pydantic models said.

``Processor._boundary_check`` used to turn every Avro record into the connectors' pydantic
model and back (record -> model -> Avro dict -> domain event). It now runs
``hub.contract.inbound.check_avro_record`` on the typed record instead. These tests run a table
of bad (and oddly spelled but valid) records through both, and require the same problems
(path, rule, message, in order) or, for valid records, the same normalised domain event.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from hub.contract.event_types import FeedbackEventType
from hub.contract.inbound import (
    _PAYLOAD_CHECKS,
    DossierPayload,
    FeedbackPayload,
    FieldProblem,
    InboundDossierEvent,
    InboundFeedbackEvent,
    to_avro_record,
    validate_dossier_event,
    validate_feedback_event,
)
from hub.contract.serde import AvroDeserializer
from hub.domain.events import DomainEvent, from_record
from hub.reference import load_reference
from hub.settings import HubSettings
from hub.worker.processor import Processor

NOW = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
JUSTICE = "000.00.03.H40"
CODE = "000.00.03.H40-260310-0001"
CRIMINAL_RECORD = "2.000488"  # in force since 2010
NEW_PROCEDURE = "1.012790"  # in force from 2024-08-01
T = "2026-03-10T09:00:00+07:00"

PAYLOADS: dict[str, dict[str, Any]] = {
    "DossierSubmitted": {"procedure_code": CRIMINAL_RECORD, "channel": 2,
                         "applicant_name": "Nguyễn Văn An", "applicant_id_number": "040199001234",
                         "submitted_at": T},
    "DossierReceived": {"received_at": T, "appointment_date": "2026-03-20", "official": "Cán bộ"},
    "DossierRefused": {"reason": "Thiếu giấy tờ"},
    "SupplementRequested": {"reason": "Bổ sung", "requested_at": T},
    "DossierSupplemented": {"supplemented_at": T},
    "FinancialObligationRequested": {"amount_vnd": 200000, "description": "Lệ phí"},
    "FinancialObligationPaid": {"paid_at": T},
    "StepStarted": {"step_no": 1, "step_name": "Thẩm định", "official": "Chuyên viên",
                    "unit": "Phòng", "step_deadline": "2026-03-15"},
    "StepCompleted": {"step_no": 1, "content": "Đủ điều kiện"},
    "DossierTransferred": {"from_agency_code": JUSTICE, "to_agency_code": "000.00.09.H40",
                           "reason": "Liên thông"},
    "DossierProcessed": {"result_summary": "Đã giải quyết", "electronic_result": True},
    "ResultReturned": {"returned_at": T},
    "ProcessingStopped": {"reason": "Dừng"},
    "DossierWithdrawn": {"reason": "Rút"},
    "ApologyIssued": {"new_appointment_date": "2026-03-25", "reason": "Chậm"},
    "ServiceRated": {"score": 4, "comment": "Tốt"},
    "ComplaintFiled": {"subject": "Chậm", "content": "Công dân phản ánh"},
}  # fmt: skip
FEEDBACK = {t.value for t in FeedbackEventType}


def processor() -> Processor:
    class NoRegistry:
        def schema_by_id(self, schema_id: int) -> str:
            raise AssertionError("no decoding in these tests")

    return Processor(HubSettings(), load_reference(), AvroDeserializer(NoRegistry()), {})  # type: ignore[arg-type]


PROCESSOR = processor()


def avro_record(event_type: str) -> dict[str, Any]:
    """A valid record of ``event_type`` as the worker decodes it from the Avro topic."""
    data = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, event_type)),
        "event_type": event_type,
        "occurred_at": T,
        "source_system": "one-stop-justice",
        "agency_code": JUSTICE,
        "dossier_code": CODE,
        "traceparent": None,
        "payload": dict(PAYLOADS[event_type]),
    }
    validate = validate_feedback_event if event_type in FEEDBACK else validate_dossier_event
    model = validate(data, now=NOW)
    assert isinstance(model, InboundDossierEvent | InboundFeedbackEvent), model
    return to_avro_record(model, recorded_at=NOW, schema_version=1)


def old_boundary_check(
    record: Mapping[str, Any], now: datetime
) -> DomainEvent | list[FieldProblem]:
    """The worker's check before issue 13, verbatim: the pydantic model round trip."""
    payload = record.get("payload")
    shaped: dict[str, Any] = {
        name: value
        for name, value in record.items()
        if name not in ("recorded_at", "schema_version", "payload")
    }
    shaped["event_id"] = str(shaped.get("event_id"))
    shaped["payload"] = payload[1] if isinstance(payload, tuple) else payload
    model: InboundDossierEvent | InboundFeedbackEvent | list[FieldProblem]
    if shaped.get("event_type") in FEEDBACK:
        model = validate_feedback_event(shaped, now=now)
    else:
        model = validate_dossier_event(
            shaped, now=now, procedure_effective_from=PROCESSOR._procedure_since
        )
    if isinstance(model, list):
        return model
    normalised = to_avro_record(
        model,
        recorded_at=record.get("recorded_at") or now,
        schema_version=int(record.get("schema_version") or 1),
    )
    return from_record(normalised)


def new_boundary_check(
    record: Mapping[str, Any], now: datetime
) -> DomainEvent | list[FieldProblem]:
    return PROCESSOR._boundary_check(record, from_record(record), now)


Edit = Callable[[dict[str, Any], dict[str, Any]], None]


def env(name: str, value: Any) -> Edit:
    return lambda record, body: record.__setitem__(name, value)


def pay(name: str, value: Any) -> Edit:
    return lambda record, body: body.__setitem__(name, value)


def both(*edits: Edit) -> Edit:
    def edit(record: dict[str, Any], body: dict[str, Any]) -> None:
        for one in edits:
            one(record, body)

    return edit


NFD = unicodedata.normalize("NFD", "  Nguyễn Thị Ánh ")
OLD = datetime(2014, 6, 1, 3, tzinfo=UTC)
JULY_2024 = datetime(2024, 7, 1, tzinfo=UTC)  # before NEW_PROCEDURE
CASES: list[tuple[str, str, Edit]] = [
    ("valid as it is", "DossierSubmitted", both()),
    ("occurred_at an hour ahead", "DossierSubmitted", env("occurred_at", NOW + timedelta(hours=1))),
    ("occurred_at within the skew", "StepStarted", env("occurred_at", NOW + timedelta(minutes=4))),
    ("occurred_at before the floor", "DossierReceived", env("occurred_at", OLD)),
    ("occurred_at with microseconds", "DossierRefused",
     env("occurred_at", NOW - timedelta(microseconds=1234567))),
    ("source_system too long", "DossierRefused", env("source_system", "s" * 101)),
    ("source_system NFD with spaces", "DossierRefused", env("source_system", NFD)),
    ("dossier code with an impossible date", "DossierRefused",
     env("dossier_code", "000.00.03.H40-261341-0001")),
    ("dossier code too long", "DossierRefused", env("dossier_code", CODE + "9" * 60)),
    ("traceparent malformed", "DossierRefused", env("traceparent", "not-a-trace")),
    ("traceparent blank", "DossierRefused", env("traceparent", "   ")),
    ("traceparent too long", "DossierRefused", env("traceparent", "0" * 56)),
    ("event id spelt in capitals", "DossierRefused",
     env("event_id", "6F1C2A0E-4B7D-5C1E-9A53-48A0B1D6E940")),
    ("recorded_at and schema_version absent", "DossierRefused",
     both(lambda r, b: r.pop("recorded_at"), lambda r, b: r.pop("schema_version"))),
    ("applicant name too long (PII)", "DossierSubmitted", pay("applicant_name", "A" * 201)),
    ("applicant name NFD", "DossierSubmitted", pay("applicant_name", NFD)),
    ("id number blank", "DossierSubmitted", pay("applicant_id_number", "  ")),
    ("id number too long (PII)", "DossierSubmitted", pay("applicant_id_number", "1" * 65)),
    ("unknown procedure", "DossierSubmitted", pay("procedure_code", "1.999999")),
    ("submitted before the procedure took effect", "DossierSubmitted",
     both(pay("procedure_code", NEW_PROCEDURE), env("occurred_at", JULY_2024),
          pay("submitted_at", JULY_2024))),
    ("submission time alone before the procedure", "DossierSubmitted",
     both(pay("procedure_code", NEW_PROCEDURE), pay("submitted_at", JULY_2024))),
    ("submitted_at ahead", "DossierSubmitted", pay("submitted_at", NOW + timedelta(days=1))),
    ("official blank", "DossierReceived", pay("official", "")),
    ("official too long", "DossierReceived", pay("official", "x" * 201)),
    ("appointment before the floor", "DossierReceived", pay("appointment_date", date(2014, 1, 1))),
    ("received_at before the floor", "DossierReceived", pay("received_at", OLD)),
    ("reason empty", "DossierRefused", pay("reason", "")),
    ("reason blank", "DossierTransferred", pay("reason", "   ")),
    ("reason too long", "SupplementRequested", pay("reason", "r" * 4001)),
    ("requested_at ahead", "SupplementRequested", pay("requested_at", NOW + timedelta(hours=2))),
    ("description empty", "FinancialObligationRequested", pay("description", "")),
    ("step name empty", "StepStarted", pay("step_name", "")),
    ("official too long", "StepStarted", pay("official", "o" * 201)),
    ("unit NFD", "StepStarted", pay("unit", NFD)),
    ("step number beyond int32", "StepStarted", pay("step_no", 2**31)),
    ("step deadline before the floor", "StepStarted", pay("step_deadline", date(2014, 12, 31))),
    ("step content empty", "StepCompleted", pay("content", "")),
    ("result summary too long", "DossierProcessed", pay("result_summary", "r" * 4001)),
    ("returned_at before the floor", "ResultReturned", pay("returned_at", OLD)),
    ("apology date before the floor", "ApologyIssued", pay("new_appointment_date", OLD.date())),
    ("comment blank", "ServiceRated", pay("comment", " ")),
    ("comment too long (PII)", "ServiceRated", pay("comment", "c" * 4001)),
    ("complaint subject too long", "ComplaintFiled", pay("subject", "s" * 201)),
    ("complaint content empty (PII)", "ComplaintFiled", pay("content", "")),
    ("complaint ahead", "ComplaintFiled", env("occurred_at", NOW + timedelta(days=3))),
    ("an extra payload field", "StepCompleted", pay("remark", "x")),
    ("an extra PII-named payload field", "StepStarted", pay("content", "x")),
    ("an extra envelope field", "DossierRefused", env("priority", 1)),
    ("payload names another event type", "DossierRefused", pay("event_type", "DossierWithdrawn")),
    ("payload repeats its event type", "DossierRefused", pay("event_type", "DossierRefused")),
    ("many problems at once", "StepStarted",
     both(env("source_system", "s" * 101), pay("step_name", ""), pay("unit", "u" * 201),
          env("traceparent", "x"), pay("remark", 1), env("extra", 2),
          env("occurred_at", NOW + timedelta(hours=1)))),
    ("problems and a procedure date", "DossierSubmitted",
     both(pay("procedure_code", NEW_PROCEDURE), pay("submitted_at", JULY_2024),
          pay("applicant_name", "A" * 201))),
]  # fmt: skip


@pytest.mark.parametrize(("name", "event_type", "edit"), CASES, ids=[c[0] for c in CASES])
def test_the_precompiled_checks_say_what_the_models_said(
    name: str, event_type: str, edit: Edit
) -> None:
    record = avro_record(event_type)
    record_name, body = record["payload"]
    body = dict(body)
    record["payload"] = (record_name, body)
    edit(record, body)
    old = old_boundary_check(record, NOW)
    new = new_boundary_check(record, NOW)
    assert new == old
    if isinstance(old, list):
        assert old, "a rejected record names at least one problem"


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_every_event_type_passes_unchanged(event_type: str) -> None:
    record = avro_record(event_type)
    assert new_boundary_check(record, NOW) == old_boundary_check(record, NOW) == from_record(record)


def test_each_table_lists_exactly_its_models_fields() -> None:
    """A field added to a model must get its check here too (and the other way round)."""
    for union in (DossierPayload, FeedbackPayload):
        for model in union.__origin__.__args__:  # type: ignore[attr-defined]
            tag = model.model_fields["event_type"].default
            fields = [name for name in model.model_fields if name != "event_type"]
            assert [name for name, _ in _PAYLOAD_CHECKS[tag]] == fields
    assert set(_PAYLOAD_CHECKS) == set(PAYLOADS)
