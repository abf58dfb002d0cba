"""Specification of the inbound JSON boundary (hub.contract.inbound)."""

from __future__ import annotations

import copy
import json
import unicodedata
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from hub.contract.event_types import DossierEventType, FeedbackEventType
from hub.contract.inbound import (
    MAX_CODE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SOURCE_SYSTEM_LENGTH,
    MAX_TEXT_LENGTH,
    Channel,
    DossierSubmittedPayload,
    FieldProblem,
    InboundDossierEvent,
    InboundFeedbackEvent,
    validate_dossier_event,
    validate_feedback_event,
)

# 10:00 in Vinh on 5 August 2025.
NOW = datetime(2025, 8, 5, 3, 0, tzinfo=UTC)
PROCEDURES = {"1.001193": date(2020, 1, 1), "2.000123": date(2025, 7, 1)}


def procedure_effective_from(code: str) -> date | None:
    return PROCEDURES.get(code)


VALID_DOSSIER_PAYLOADS: dict[str, dict[str, Any]] = {
    "DossierSubmitted": {
        "procedure_code": "1.001193",
        "channel": 2,
        "applicant_name": "Nguyễn Thị Hồng Nhung",
        "applicant_id_number": "040190001234",
        "submitted_at": "2025-08-05T08:15:30.123+07:00",
    },
    "DossierReceived": {
        "received_at": "2025-08-05T08:30:00+07:00",
        "appointment_date": "2025-08-19",
        "official": "Trần Văn Bình",
    },
    "DossierRefused": {"reason": "Hồ sơ không thuộc thẩm quyền giải quyết"},
    "SupplementRequested": {
        "reason": "Bổ sung bản sao giấy khai sinh",
        "requested_at": "2025-08-05T09:00:00+07:00",
    },
    "DossierSupplemented": {"supplemented_at": "2025-08-05T09:30:00+07:00"},
    "FinancialObligationRequested": {"amount_vnd": 150000, "description": "Lệ phí cấp bản sao"},
    "FinancialObligationPaid": {"paid_at": "2025-08-05T09:45:00+07:00"},
    "StepStarted": {
        "step_no": 2,
        "step_name": "Thẩm định hồ sơ",
        "official": "Lê Văn Cường",
        "unit": "Phòng Hành chính tư pháp",
        "step_deadline": "2025-08-12",
    },
    "StepCompleted": {"step_no": 2, "content": "Đã thẩm định, đủ điều kiện"},
    "DossierTransferred": {
        "from_agency_code": "000.00.12.H40",
        "to_agency_code": "000.00.15.H40",
        "reason": "Thủ tục liên thông",
    },
    "DossierProcessed": {"result_summary": "Cấp phiếu lý lịch tư pháp", "electronic_result": True},
    "ResultReturned": {"returned_at": "2025-08-05T02:50:00Z"},
    "ProcessingStopped": {"reason": "Người nộp không bổ sung đúng hạn"},
    "DossierWithdrawn": {"reason": "Công dân rút hồ sơ"},
    "ApologyIssued": {"new_appointment_date": "2025-08-26", "reason": "Chờ ý kiến liên ngành"},
}

VALID_FEEDBACK_PAYLOADS: dict[str, dict[str, Any]] = {
    "ServiceRated": {"score": 5, "comment": "Cán bộ hướng dẫn tận tình"},
    "ComplaintFiled": {"subject": "Trễ hẹn trả kết quả", "content": "Hồ sơ của tôi bị trễ hẹn"},
}


def dossier_event(event_type: str = "DossierSubmitted", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": "3f1c2b9e-6d1a-4c7e-9a4b-1e2f3a4b5c6d",
        "event_type": event_type,
        "occurred_at": "2025-08-05T08:15:31+07:00",
        "source_system": "one-stop-department-justice",
        "agency_code": "000.00.12.H40",
        "dossier_code": "000.00.12.H40-250805-0001",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "payload": copy.deepcopy(VALID_DOSSIER_PAYLOADS[event_type]),
    }
    data.update(overrides)
    return data


def feedback_event(event_type: str = "ServiceRated", **overrides: Any) -> dict[str, Any]:
    data = dossier_event(payload={})
    data.update(
        event_type=event_type,
        payload=copy.deepcopy(VALID_FEEDBACK_PAYLOADS[event_type]),
        traceparent=None,
    )
    data.update(overrides)
    return data


def valid_dossier(data: dict[str, Any]) -> InboundDossierEvent:
    result = validate_dossier_event(
        data, now=NOW, procedure_effective_from=procedure_effective_from
    )
    assert isinstance(result, InboundDossierEvent), result
    return result


def problems(data: dict[str, Any], **kwargs: Any) -> list[FieldProblem]:
    kwargs.setdefault("now", NOW)
    kwargs.setdefault("procedure_effective_from", procedure_effective_from)
    result = validate_dossier_event(data, **kwargs)
    assert isinstance(result, list), "expected problems, got a valid event"
    assert result, "a failed validation must report at least one problem"
    return result


def assert_problem(found: list[FieldProblem], path: str, rule: str) -> None:
    assert any(p.path == path and p.rule == rule for p in found), (
        f"no ({path!r}, {rule!r}) in {[(p.path, p.rule) for p in found]}"
    )


def with_payload(event_type: str = "DossierSubmitted", **fields: Any) -> dict[str, Any]:
    data = dossier_event(event_type)
    data["payload"].update(fields)
    return data


# --- valid events -----------------------------------------------------------------------------


def test_examples_cover_every_event_type() -> None:
    assert set(VALID_DOSSIER_PAYLOADS) == {t.value for t in DossierEventType}
    assert set(VALID_FEEDBACK_PAYLOADS) == {t.value for t in FeedbackEventType}


@pytest.mark.parametrize("event_type", [t.value for t in DossierEventType])
def test_valid_dossier_event_of_every_type(event_type: str) -> None:
    event = valid_dossier(dossier_event(event_type))
    assert event.event_type == event_type
    assert event.payload.event_type == event_type
    assert event.dossier_code == "000.00.12.H40-250805-0001"


@pytest.mark.parametrize("event_type", [t.value for t in FeedbackEventType])
def test_valid_feedback_event_of_every_type(event_type: str) -> None:
    event = validate_feedback_event(feedback_event(event_type), now=NOW)
    assert isinstance(event, InboundFeedbackEvent), event
    assert event.event_type == event_type
    assert event.payload.event_type == event_type


def test_json_text_is_accepted() -> None:
    result = validate_dossier_event(
        json.dumps(dossier_event()), now=NOW, procedure_effective_from=procedure_effective_from
    )
    assert isinstance(result, InboundDossierEvent)


def test_payload_may_repeat_the_event_type() -> None:
    data = dossier_event()
    data["payload"]["event_type"] = "DossierSubmitted"
    valid_dossier(data)


def test_payload_with_a_different_event_type_is_rejected() -> None:
    data = dossier_event()
    data["payload"]["event_type"] = "DossierRefused"
    assert_problem(problems(data), "payload.event_type", "event_type_mismatch")


def test_nfd_name_is_normalised_to_nfc() -> None:
    nfc = "Nguyễn Thị Hồng Nhung"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    from_nfd = valid_dossier(with_payload(applicant_name=f"  {nfd}\n"))
    from_nfc = valid_dossier(with_payload(applicant_name=nfc))
    assert isinstance(from_nfd.payload, DossierSubmittedPayload)
    assert from_nfd.payload.applicant_name == nfc
    assert from_nfd == from_nfc


def test_length_is_counted_after_nfc() -> None:
    # 200 NFC characters are 400 code points in NFD: still within the limit.
    name = "ễ" * MAX_NAME_LENGTH
    event = valid_dossier(with_payload(applicant_name=unicodedata.normalize("NFD", name)))
    assert isinstance(event.payload, DossierSubmittedPayload)
    assert event.payload.applicant_name == name


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (1, Channel.IN_PERSON),
        (2, Channel.ONLINE),
        (3, Channel.POSTAL),
        ("3", Channel.POSTAL),
        ("ONLINE", Channel.ONLINE),
        (" in_person ", Channel.IN_PERSON),
    ],
)
def test_channel_accepts_code_or_name(given: object, expected: Channel) -> None:
    event = valid_dossier(with_payload(channel=given))
    assert isinstance(event.payload, DossierSubmittedPayload)
    assert event.payload.channel is expected
    assert expected.code in (1, 2, 3)


def test_dossier_code_prefix_may_differ_from_agency_code() -> None:
    # A transferred dossier keeps the code issued by the first agency.
    valid_dossier(dossier_event("StepStarted", agency_code="000.00.15.H40"))


def test_optional_fields_may_be_missing_null_or_blank() -> None:
    data = dossier_event("DossierReceived", traceparent=None)
    del data["payload"]["appointment_date"]
    data["payload"]["official"] = "   "
    event = valid_dossier(data)
    assert event.traceparent is None
    assert event.payload.model_dump(exclude={"event_type", "received_at"}) == {
        "appointment_date": None,
        "official": None,
    }


def test_limits_are_inclusive() -> None:
    valid_dossier(
        with_payload(
            applicant_name="a" * MAX_NAME_LENGTH, applicant_id_number="9" * MAX_CODE_LENGTH
        )
    )
    valid_dossier(with_payload("DossierRefused", reason="r" * MAX_TEXT_LENGTH))
    valid_dossier(dossier_event(source_system="s" * MAX_SOURCE_SYSTEM_LENGTH))


def test_timestamp_slightly_ahead_within_skew_is_accepted() -> None:
    valid_dossier(dossier_event(occurred_at=(NOW + timedelta(minutes=4)).isoformat()))


# --- problems ---------------------------------------------------------------------------------


def test_missing_payload_field() -> None:
    data = dossier_event()
    del data["payload"]["submitted_at"]
    found = problems(data)
    assert_problem(found, "payload.submitted_at", "missing")
    assert len(found) == 1


def test_missing_envelope_field() -> None:
    data = dossier_event()
    del data["dossier_code"]
    assert_problem(problems(data), "dossier_code", "missing")


def test_missing_payload() -> None:
    data = dossier_event()
    del data["payload"]
    assert_problem(problems(data), "payload", "missing")


def test_all_problems_are_reported_at_once() -> None:
    data = dossier_event(agency_code="H40", source_system="")
    del data["payload"]["channel"]
    found = {(p.path, p.rule) for p in problems(data)}
    assert {
        ("agency_code", "pattern"),
        ("source_system", "too_short"),
        ("payload.channel", "missing"),
    } <= found


@pytest.mark.parametrize(
    ("event_type", "path", "value"),
    [
        ("StepStarted", "payload.step_no", "second"),
        ("StepStarted", "payload.step_no", True),
        ("StepStarted", "payload.step_name", 42),
        ("DossierProcessed", "payload.electronic_result", "perhaps"),
        ("FinancialObligationRequested", "payload.amount_vnd", 1.5),
        ("DossierReceived", "payload.received_at", "yesterday"),
        ("DossierReceived", "payload.appointment_date", "19/08/2025"),
        ("DossierSubmitted", "event_id", "not-a-uuid"),
        ("DossierSubmitted", "payload", "not an object"),
    ],
)
def test_wrong_type(event_type: str, path: str, value: object) -> None:
    data = dossier_event(event_type)
    if path.startswith("payload."):
        data["payload"][path.removeprefix("payload.")] = value
    else:
        data[path] = value
    assert_problem(problems(data), path, "type")


def test_not_an_object_at_all() -> None:
    assert_problem(problems([1, 2, 3]), "", "type")  # type: ignore[arg-type]


def test_invalid_json_text() -> None:
    result = validate_dossier_event("{not json", now=NOW)
    assert isinstance(result, list)
    assert_problem(result, "", "json")


@pytest.mark.parametrize(
    ("event_type", "path", "value"),
    [
        ("DossierSubmitted", "payload.applicant_name", "a" * (MAX_NAME_LENGTH + 1)),
        ("DossierSubmitted", "payload.applicant_id_number", "9" * (MAX_CODE_LENGTH + 1)),
        ("StepStarted", "payload.unit", "u" * (MAX_NAME_LENGTH + 1)),
        ("DossierRefused", "payload.reason", "r" * (MAX_TEXT_LENGTH + 1)),
        ("StepCompleted", "payload.content", "c" * (MAX_TEXT_LENGTH + 1)),
        ("DossierSubmitted", "source_system", "s" * (MAX_SOURCE_SYSTEM_LENGTH + 1)),
        ("DossierSubmitted", "agency_code", "000.00.12.H40" + "0" * MAX_CODE_LENGTH),
    ],
)
def test_oversized_field(event_type: str, path: str, value: str) -> None:
    data = dossier_event(event_type)
    if path.startswith("payload."):
        data["payload"][path.removeprefix("payload.")] = value
    else:
        data[path] = value
    found = problems(data)
    assert_problem(found, path, "too_long")
    message = next(p.message for p in found if p.path == path)
    assert "at most" in message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("agency_code", "000.00.12.h40"),
        ("agency_code", "00.00.12.H40"),
        ("agency_code", "000.00.12.H40 X"),
        ("agency_code", "٠٠٠.٠٠.١٢.H40"),  # Arabic-Indic digits are not digits here
        ("dossier_code", "000.00.12.H40-250805-001"),
        ("dossier_code", "000.00.12.H40-2508-0001"),
        ("dossier_code", "H40-250805-0001"),
        ("dossier_code", "000.00.12.H40-251399-0001"),  # month 13
        ("payload.procedure_code", "4.001193"),
        ("payload.procedure_code", "1.00119"),
        ("payload.procedure_code", "1001193"),
    ],
)
def test_malformed_code(path: str, value: str) -> None:
    data = dossier_event()
    if path.startswith("payload."):
        data["payload"][path.removeprefix("payload.")] = value
    else:
        data[path] = value
    assert_problem(problems(data), path, "pattern")


def test_malformed_transfer_agency_code() -> None:
    data = with_payload("DossierTransferred", to_agency_code="Sở Tư pháp")
    assert_problem(problems(data), "payload.to_agency_code", "pattern")


def test_codes_are_stripped_before_the_pattern_check() -> None:
    event = valid_dossier(dossier_event(agency_code=" 000.00.12.H40 "))
    assert event.agency_code == "000.00.12.H40"


@pytest.mark.parametrize(
    ("where", "name"),
    [("top", "recorded_at"), ("top", "schema_version"), ("top", "agencyCode"), ("payload", "note")],
)
def test_extra_field(where: str, name: str) -> None:
    data = dossier_event()
    (data if where == "top" else data["payload"])[name] = "x"
    path = name if where == "top" else f"payload.{name}"
    assert_problem(problems(data), path, "extra")


def test_field_of_another_event_type_is_extra() -> None:
    data = with_payload("DossierRefused", received_at="2025-08-05T08:30:00+07:00")
    assert_problem(problems(data), "payload.received_at", "extra")


def test_unknown_event_type() -> None:
    data = dossier_event()
    data["event_type"] = "DossierLost"
    found = problems(data)
    assert_problem(found, "event_type", "unknown_event_type")
    assert not any(p.path.startswith("payload") for p in found)


def test_missing_event_type_reports_only_that() -> None:
    data = dossier_event()
    del data["event_type"]
    found = problems(data)
    assert [(p.path, p.rule) for p in found] == [("event_type", "missing")]


def test_feedback_type_is_not_a_dossier_event() -> None:
    assert_problem(problems(feedback_event()), "event_type", "unknown_event_type")


def test_naive_timestamp() -> None:
    assert_problem(
        problems(dossier_event(occurred_at="2025-08-05T08:15:31")), "occurred_at", "timezone"
    )
    data = with_payload("DossierReceived", received_at="2025-08-05T08:30:00")
    assert_problem(problems(data), "payload.received_at", "timezone")


def test_timestamp_far_in_future() -> None:
    data = dossier_event(occurred_at=(NOW + timedelta(minutes=6)).isoformat())
    assert_problem(problems(data), "occurred_at", "in_future")
    data = with_payload("ResultReturned", returned_at="2026-01-01T00:00:00Z")
    assert_problem(problems(data), "payload.returned_at", "in_future")


def test_future_skew_is_configurable() -> None:
    data = dossier_event(occurred_at=(NOW + timedelta(minutes=6)).isoformat())
    result = validate_dossier_event(data, now=NOW, max_future_skew=timedelta(minutes=10))
    assert isinstance(result, InboundDossierEvent)


def test_timestamp_before_floor() -> None:
    data = dossier_event("DossierRefused", occurred_at="2014-12-31T16:59:59Z")  # 23:59 local
    assert_problem(problems(data), "occurred_at", "before_floor")
    data = with_payload("ApologyIssued", new_appointment_date="2014-06-01")
    assert_problem(problems(data), "payload.new_appointment_date", "before_floor")


def test_before_procedure_existed() -> None:
    data = with_payload(procedure_code="2.000123")  # in force from 2025-07-01
    data["occurred_at"] = "2025-06-30T23:00:00+07:00"
    data["payload"]["submitted_at"] = "2025-06-30T22:00:00+07:00"
    assert_problem(problems(data), "occurred_at", "before_procedure")
    data["occurred_at"] = "2025-06-30T17:00:00Z"  # already 1 July in Vinh
    assert_problem(problems(data), "payload.submitted_at", "before_procedure")
    data["payload"]["submitted_at"] = "2025-07-01T00:00:00+07:00"
    valid_dossier(data)


def test_unknown_procedure() -> None:
    found = problems(with_payload(procedure_code="1.999999"))
    assert_problem(found, "payload.procedure_code", "unknown_procedure")
    assert next(p.message for p in found if p.rule == "unknown_procedure") == (
        "unknown procedure code"
    )


def test_without_context_procedure_checks_are_skipped_and_clock_is_real() -> None:
    data = with_payload(procedure_code="1.999999")
    event = InboundDossierEvent.model_validate(data)
    assert event.occurred_at.year == 2025
    with pytest.raises(ValidationError):
        InboundDossierEvent.model_validate(dossier_event(occurred_at="2999-01-01T00:00:00Z"))


def test_context_drives_model_validate() -> None:
    ctx = {"now": NOW, "procedure_effective_from": procedure_effective_from}
    with pytest.raises(ValidationError) as info:
        InboundDossierEvent.model_validate(with_payload(procedure_code="1.999999"), context=ctx)
    assert info.value.errors()[0]["type"] == "unknown_procedure"


@pytest.mark.parametrize("channel", [0, 4, "EMAIL", "", None, True, 2.0])
def test_bad_channel(channel: object) -> None:
    assert_problem(problems(with_payload(channel=channel)), "payload.channel", "enum")


@pytest.mark.parametrize("score", [0, 6, -1])
def test_score_out_of_range(score: int) -> None:
    data = feedback_event()
    data["payload"]["score"] = score
    result = validate_feedback_event(data, now=NOW)
    assert isinstance(result, list)
    assert_problem(result, "payload.score", "out_of_range")


def test_negative_amount() -> None:
    data = with_payload("FinancialObligationRequested", amount_vnd=-1)
    assert_problem(problems(data), "payload.amount_vnd", "out_of_range")


def test_step_numbers_start_at_one() -> None:
    assert_problem(
        problems(with_payload("StepCompleted", step_no=0)), "payload.step_no", "out_of_range"
    )


def test_malformed_traceparent() -> None:
    assert_problem(problems(dossier_event(traceparent="trace-me")), "traceparent", "pattern")


# --- personal data never echoed ---------------------------------------------------------------

SECRET = "Phạm Bí Mật 0401"


@pytest.mark.parametrize(
    "bad",
    [
        lambda d: d["payload"].update(applicant_name=SECRET * 50),
        lambda d: d["payload"].update(applicant_id_number=SECRET * 10),
        lambda d: d["payload"].update(applicant_name=[SECRET]),
        lambda d: d["payload"].update(applicant_id_number={"so": SECRET}),
        lambda d: d["payload"].update(applicant_nam=SECRET),
        lambda d: d["payload"].update(channel=SECRET),
        lambda d: d.update(event_id=SECRET),
    ],
)
def test_no_message_contains_a_submitted_pii_value(bad: Any) -> None:
    data = dossier_event()
    bad(data)
    found = problems(data)
    for problem in found:
        assert SECRET not in problem.message
        assert "Bí Mật" not in problem.message
    with pytest.raises(ValidationError) as info:
        InboundDossierEvent.model_validate(data, context={"now": NOW})
    assert "Bí Mật" not in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        {"score": 5, "comment": SECRET * 400},
        {"score": 5, "comment": 7, "note": SECRET},
        {"subject": "Trễ hẹn", "content": SECRET * 400},
        {"subject": "Trễ hẹn", "content": [SECRET]},
    ],
)
def test_no_feedback_message_contains_a_submitted_pii_value(payload: dict[str, Any]) -> None:
    event_type = "ServiceRated" if "score" in payload else "ComplaintFiled"
    result = validate_feedback_event(feedback_event(event_type, payload=payload), now=NOW)
    assert isinstance(result, list) and result
    for problem in result:
        assert "Bí Mật" not in problem.message
        assert "Bí Mật" not in problem.path
