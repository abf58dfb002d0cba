"""Specifications of the dossier state machine (hub.domain.lifecycle) and of event decoding."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.contract.event_types import DossierEventType as E
from hub.domain.calendar import WorkingCalendar, YearCalendar
from hub.domain.events import (
    ApologyIssued,
    Channel,
    ComplaintFiled,
    DomainEvent,
    DossierEvent,
    DossierProcessed,
    DossierReceived,
    DossierRefused,
    DossierSubmitted,
    DossierSupplemented,
    DossierTransferred,
    DossierWithdrawn,
    EventShapeError,
    FinancialObligationPaid,
    FinancialObligationRequested,
    ProcessingStopped,
    ResultReturned,
    ServiceRated,
    StepCompleted,
    StepStarted,
    SupplementRequested,
    from_record,
)
from hub.domain.lifecycle import (
    TRANSITIONS,
    Applied,
    DossierState,
    Duplicate,
    LateStep,
    ProcedureRule,
    Rejected,
    RuleContext,
    apply,
    evolve,
)
from hub.domain.status import DossierStatus as S

# --- shared fixtures (imported by the other unit tests) ------------------------------------

AGENCY = "000.00.12.H40"  # the receiving agency
OTHER = "000.00.13.H40"
RETIRED = "000.00.20.H40"  # merged into SUCCESSOR on 2025-03-01
SUCCESSOR = "000.00.21.H40"
MERGER_DATE = date(2025, 3, 1)
DOSSIER = "000.00.12.H40-250805-0001"
PROCEDURE = "1.001193"  # 3 working days, steps 50% / 30% / 20%
LONG_PROCEDURE = "2.000123"  # 15 working days
APPLICANT = "Nguyễn Văn An"

DAYS_OFF_2025 = frozenset(
    {
        date(2025, 1, 1),
        *(date(2025, 1, d) for d in range(27, 32)),
        date(2025, 4, 7),
        date(2025, 4, 30),
        date(2025, 5, 1),
        date(2025, 5, 2),
        date(2025, 9, 1),
        date(2025, 9, 2),
    }
)
DAYS_OFF_2026 = frozenset(
    {
        date(2026, 1, 1),
        *(date(2026, 2, d) for d in range(16, 21)),
        date(2026, 4, 27),
        date(2026, 4, 30),
        date(2026, 5, 1),
        date(2026, 9, 1),
        date(2026, 9, 2),
    }
)


def make_calendar() -> WorkingCalendar:
    return WorkingCalendar(
        {
            2025: YearCalendar(
                year=2025,
                days_off=DAYS_OFF_2025,
                working_weekends=frozenset({date(2025, 4, 26)}),
                source="test",
            ),
            2026: YearCalendar(
                year=2026, days_off=DAYS_OFF_2026, working_weekends=frozenset(), source="test"
            ),
        }
    )


CALENDAR = make_calendar()
PROCEDURES = {
    PROCEDURE: ProcedureRule(working_days=3, step_shares=(0.5, 0.3, 0.2)),
    LONG_PROCEDURE: ProcedureRule(working_days=15, step_shares=(0.2, 0.5, 0.3)),
}


def resolve_agency(code: str, on: date) -> str:
    return SUCCESSOR if code == RETIRED and on >= MERGER_DATE else code


CTX = RuleContext(calendar=CALENDAR, procedure=PROCEDURES.get, resolve_agency=resolve_agency)

T0 = datetime(2025, 8, 5, 2, 0, tzinfo=UTC)  # Tuesday 09:00 local


def at(day: date, hour_local: int = 9) -> datetime:
    """A UTC timestamp for a local (UTC+7) hour on a day."""
    return datetime(day.year, day.month, day.day, hour_local, tzinfo=UTC) - timedelta(hours=7)


def make_event(
    event_type: E, occurred_at: datetime = T0, *, agency: str = AGENCY, **payload: Any
) -> DossierEvent:
    envelope: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": occurred_at,
        "agency_code": agency,
        "dossier_code": DOSSIER,
        "source_system": "test",
    }
    defaults: dict[E, tuple[type[DossierEvent], dict[str, Any]]] = {
        E.SUBMITTED: (
            DossierSubmitted,
            {
                "procedure_code": PROCEDURE,
                "channel": Channel.ONLINE,
                "applicant_name": APPLICANT,
                "applicant_id_number": "040090001234",
                "submitted_at": occurred_at,
            },
        ),
        E.RECEIVED: (
            DossierReceived,
            {"received_at": occurred_at, "appointment_date": None, "official": "Cán bộ A"},
        ),
        E.REFUSED: (DossierRefused, {"reason": f"thiếu giấy tờ của {APPLICANT}"}),
        E.SUPPLEMENT_REQUESTED: (
            SupplementRequested,
            {"reason": "thiếu bản sao", "requested_at": occurred_at},
        ),
        E.SUPPLEMENTED: (DossierSupplemented, {"supplemented_at": occurred_at}),
        E.FINANCIAL_OBLIGATION_REQUESTED: (
            FinancialObligationRequested,
            {"amount_vnd": 150_000, "description": "lệ phí"},
        ),
        E.FINANCIAL_OBLIGATION_PAID: (FinancialObligationPaid, {"paid_at": occurred_at}),
        E.STEP_STARTED: (
            StepStarted,
            {
                "step_no": 1,
                "step_name": "Thẩm định",
                "official": "Trần Thị B",
                "unit": "Phòng Hành chính tư pháp",
                "step_deadline": None,
            },
        ),
        E.STEP_COMPLETED: (StepCompleted, {"step_no": 1, "content": "đã thẩm định"}),
        E.TRANSFERRED: (
            DossierTransferred,
            {"from_agency_code": agency, "to_agency_code": OTHER, "reason": "liên thông"},
        ),
        E.PROCESSED: (
            DossierProcessed,
            {"result_summary": "cấp bản sao", "electronic_result": True},
        ),
        E.RESULT_RETURNED: (ResultReturned, {"returned_at": occurred_at}),
        E.STOPPED: (ProcessingStopped, {"reason": "dừng"}),
        E.WITHDRAWN: (DossierWithdrawn, {"reason": "rút"}),
        E.APOLOGY_ISSUED: (
            ApologyIssued,
            {"new_appointment_date": date(2025, 8, 20), "reason": "quá tải"},
        ),
    }
    cls, fields = defaults[event_type]
    return cls(**envelope, **{**fields, **payload})


def applied(state: DossierState | None, event: DomainEvent) -> DossierState:
    outcome = apply(state, event, CTX)
    assert isinstance(outcome, Applied), outcome
    return outcome.state


def run(*events: DomainEvent, state: DossierState | None = None) -> DossierState:
    for event in events:
        state = applied(state, event)
    assert state is not None
    return state


# A path to every status, opened at the desk (no submission) and with an explicit appointment.
APPOINTMENT = date(2025, 8, 8)
_PATHS: dict[S, list[E]] = {
    S.RECEIVED: [E.RECEIVED],
    S.NOT_RECEIVED: [E.RECEIVED, E.REFUSED],
    S.PROCESSING: [E.RECEIVED, E.STEP_STARTED],
    S.SUPPLEMENT_REQUESTED: [E.RECEIVED, E.SUPPLEMENT_REQUESTED],
    S.FINANCIAL_OBLIGATION_REQUESTED: [
        E.RECEIVED,
        E.STEP_STARTED,
        E.FINANCIAL_OBLIGATION_REQUESTED,
    ],
    S.WITHDRAWN: [E.RECEIVED, E.WITHDRAWN],
    S.STOPPED: [E.RECEIVED, E.STOPPED],
    S.PROCESSED: [E.RECEIVED, E.PROCESSED],
    S.RESULT_RETURNED: [E.RECEIVED, E.PROCESSED, E.RESULT_RETURNED],
}


def state_in(status: S) -> DossierState:
    if status is S.NEW:
        return run(make_event(E.SUBMITTED))
    events = []
    for i, event_type in enumerate(_PATHS[status]):
        extra: dict[str, Any] = {}
        if event_type is E.RECEIVED:
            extra["appointment_date"] = APPOINTMENT
        events.append(make_event(event_type, T0 + timedelta(hours=i), **extra))
    state = run(*events)
    assert state.status is status
    return state


ALL_SOURCES: list[S | None] = [None, *S]


# --- event decoding ------------------------------------------------------------------------


def _record(payload: Any, event_type: str = "DossierReceived") -> dict[str, Any]:
    return {
        "event_id": "6f1c1d2e-8a4b-4c1e-9f00-000000000001",
        "event_type": event_type,
        "occurred_at": T0,
        "recorded_at": T0,
        "source_system": "one-stop-department-justice",
        "agency_code": AGENCY,
        "dossier_code": DOSSIER,
        "schema_version": 1,
        "traceparent": None,
        "payload": payload,
    }


RECEIVED_BODY = {"received_at": T0, "appointment_date": date(2025, 8, 8), "official": None}


def test_from_record_accepts_a_namespaced_union_branch() -> None:
    event = from_record(_record(("vn.gov.nghean.hub.DossierReceived", RECEIVED_BODY)))
    assert isinstance(event, DossierReceived)
    assert event.event_type is E.RECEIVED
    assert event.appointment_date == date(2025, 8, 8)
    assert event.occurred_at.tzinfo is UTC


def test_from_record_accepts_a_plain_dict_payload() -> None:
    body = {"score": 5, "comment": None}
    event = from_record(_record(body, "ServiceRated"))
    assert isinstance(event, ServiceRated)
    assert event.score == 5


def test_from_record_reads_channel_symbols_and_codes() -> None:
    body = {
        "procedure_code": PROCEDURE,
        "channel": "ONLINE",
        "applicant_name": APPLICANT,
        "applicant_id_number": None,
        "submitted_at": T0,
    }
    event = from_record(_record(("DossierSubmitted", body), "DossierSubmitted"))
    assert isinstance(event, DossierSubmitted)
    assert event.channel is Channel.ONLINE
    assert event.channel.portal_code == 2
    event = from_record(_record(("DossierSubmitted", {**body, "channel": 3}), "DossierSubmitted"))
    assert isinstance(event, DossierSubmitted)
    assert event.channel is Channel.POSTAL


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"payload": ("vn.gov.nghean.hub.DossierRefused", RECEIVED_BODY)}, "payload"),
        ({"payload": ("DossierReceived", {**RECEIVED_BODY, "received_at": 1})}, "received_at"),
        ({"payload": ("DossierReceived", {"received_at": T0})}, "payload.appointment_date"),
        ({"occurred_at": datetime(2025, 8, 5, 9)}, "occurred_at"),
        ({"agency_code": "H40"}, "agency_code"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_type": "DossierExploded"}, "event_type"),
        ({"payload": ("DossierReceived", {**RECEIVED_BODY, "appointment_date": T0})}, "appoint"),
        ({"payload": ["DossierReceived", RECEIVED_BODY]}, "payload"),
    ],
)
def test_from_record_names_the_bad_field(change: dict[str, Any], field: str) -> None:
    record = {**_record(None), **change}
    if record["payload"] is None:
        record["payload"] = RECEIVED_BODY
    with pytest.raises(EventShapeError) as info:
        from_record(record)
    assert field in info.value.field


def test_from_record_rejects_a_missing_envelope_field() -> None:
    record = _record(RECEIVED_BODY)
    del record["dossier_code"]
    with pytest.raises(EventShapeError, match="dossier_code"):
        from_record(record)


def test_from_record_errors_carry_no_values() -> None:
    body = {"score": 9, "comment": APPLICANT}
    with pytest.raises(EventShapeError) as info:
        from_record(_record(body, "ServiceRated"))
    assert APPLICANT not in str(info.value)
    assert info.value.field == "payload.score"


# --- the transition table ------------------------------------------------------------------

LEGAL = [(s, e) for s in ALL_SOURCES for e in TRANSITIONS[s]]
ILLEGAL = [(s, e) for s in ALL_SOURCES for e in E if e not in TRANSITIONS[s]]


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(ALL_SOURCES)
    assert TRANSITIONS[None] == {E.SUBMITTED: S.NEW, E.RECEIVED: S.RECEIVED}
    for terminal in (S.NOT_RECEIVED, S.WITHDRAWN, S.STOPPED, S.RESULT_RETURNED):
        assert all(target is None for target in TRANSITIONS[terminal].values())


@pytest.mark.parametrize(("status", "event_type"), LEGAL)
def test_every_legal_transition_applies(status: S | None, event_type: E) -> None:
    state = None if status is None else state_in(status)
    event = make_event(event_type, T0 + timedelta(days=1))
    outcome = apply(state, event, CTX)
    assert isinstance(outcome, Applied), outcome
    target = TRANSITIONS[status][event_type]
    assert outcome.state.status is (target if target is not None else status)
    assert event.event_id in outcome.state.applied_event_ids
    assert outcome.state.timeline[-1].event_id == event.event_id
    if target is not None and target is not status:
        assert outcome.status_change is not None
        assert outcome.status_change.previous is status
        assert outcome.status_change.status is target


@pytest.mark.parametrize(("status", "event_type"), ILLEGAL)
def test_every_illegal_pair_is_rejected_with_state_untouched(
    status: S | None, event_type: E
) -> None:
    state = None if status is None else state_in(status)
    snapshot = None if state is None else state.to_dict()
    event = make_event(event_type, T0 + timedelta(days=1))
    outcome = apply(state, event, CTX)
    assert isinstance(outcome, Rejected)
    assert outcome.rule == ("unknown_dossier" if status is None else "illegal_transition")
    assert DOSSIER in outcome.reason
    assert event_type.value in outcome.reason
    if state is not None:
        assert str(status) in outcome.reason
        assert state.to_dict() == snapshot
    assert APPLICANT not in outcome.reason


def test_redelivery_is_duplicate() -> None:
    submitted = make_event(E.SUBMITTED)
    state = run(submitted, make_event(E.RECEIVED, T0 + timedelta(hours=1)))
    assert apply(state, submitted, CTX) == Duplicate()
    rated = ServiceRated(
        event_id=str(uuid.uuid4()),
        occurred_at=T0 + timedelta(days=2),
        agency_code=AGENCY,
        dossier_code=DOSSIER,
        source_system="portal",
        score=4,
        comment=None,
    )
    state = applied(state, rated)
    assert apply(state, rated, CTX) == Duplicate()


def test_events_for_an_unseen_dossier_are_rejected_as_unknown() -> None:
    outcome = apply(None, make_event(E.STEP_STARTED), CTX)
    assert isinstance(outcome, Rejected)
    assert outcome.rule == "unknown_dossier"
    complaint = ComplaintFiled(
        event_id=str(uuid.uuid4()),
        occurred_at=T0,
        agency_code=AGENCY,
        dossier_code=DOSSIER,
        source_system="portal",
        subject="chậm",
        content=APPLICANT,
    )
    outcome = apply(None, complaint, CTX)
    assert isinstance(outcome, Rejected)
    assert outcome.rule == "unknown_dossier"


def test_apply_never_mutates_its_input() -> None:
    state = state_in(S.PROCESSING)
    before = state.to_dict()
    applied(state, make_event(E.STEP_STARTED, T0 + timedelta(days=1), step_no=2))
    assert state.to_dict() == before


# --- receipt, appointment, steps -----------------------------------------------------------


def test_appointment_computed_from_working_days_skips_the_holidays() -> None:
    # Received Tuesday 29 April 2025; 30/4, 1/5 and 2/5 are days off, 3-4/5 a weekend.
    received = at(date(2025, 4, 29))
    state = run(make_event(E.SUBMITTED, received), make_event(E.RECEIVED, received))
    assert state.appointment_date == date(2025, 5, 7)
    assert state.original_appointment_date == date(2025, 5, 7)


def test_appointment_counts_from_the_local_date() -> None:
    # 18:00 UTC on 29 April is 01:00 on 30 April in Vietnam.
    received = datetime(2025, 4, 29, 18, 0, tzinfo=UTC)
    state = run(make_event(E.SUBMITTED, received), make_event(E.RECEIVED, received))
    assert state.appointment_date == CALENDAR.add_working_days(date(2025, 4, 30), 3)


def test_appointment_given_by_the_agency_wins() -> None:
    state = run(make_event(E.SUBMITTED), make_event(E.RECEIVED, appointment_date=date(2025, 8, 15)))
    assert state.appointment_date == date(2025, 8, 15)


def test_step_deadline_from_procedure_shares() -> None:
    received = at(date(2025, 8, 4))  # Monday
    state = run(
        make_event(E.SUBMITTED, received, procedure_code=LONG_PROCEDURE),
        make_event(E.RECEIVED, received),
    )
    assert state.appointment_date == date(2025, 8, 25)  # 15 working days
    state = applied(state, make_event(E.STEP_STARTED, received + timedelta(hours=1)))
    assert state.current_step is not None
    assert state.current_step.step_deadline == date(2025, 8, 7)  # ceil(0.2*15)=3
    state = applied(state, make_event(E.STEP_STARTED, received + timedelta(hours=2), step_no=2))
    assert state.current_step is not None
    assert state.current_step.step_deadline == date(2025, 8, 19)  # ceil(0.7*15)=11


def test_step_deadline_is_at_least_one_working_day() -> None:
    rule = ProcedureRule(working_days=1, step_shares=(0.1, 0.9))
    ctx = replace(CTX, procedure=lambda code: rule)
    state = run(make_event(E.SUBMITTED), make_event(E.RECEIVED))
    outcome = apply(state, make_event(E.STEP_STARTED, T0 + timedelta(hours=1)), ctx)
    assert isinstance(outcome, Applied)
    assert outcome.state.current_step is not None
    assert outcome.state.current_step.step_deadline == date(2025, 8, 6)


def test_step_events_notify_the_portal_while_status_stays_processing() -> None:
    state = state_in(S.PROCESSING)
    outcome = apply(state, make_event(E.STEP_STARTED, T0 + timedelta(days=1), step_no=2), CTX)
    assert isinstance(outcome, Applied)
    assert outcome.status_change is not None
    assert outcome.status_change.previous is S.PROCESSING is outcome.status_change.status
    assert not outcome.status_change.status_changed
    assert outcome.status_change.step is not None
    assert outcome.status_change.step.step_no == 2
    completed = apply(
        outcome.state, make_event(E.STEP_COMPLETED, T0 + timedelta(days=2), step_no=2), CTX
    )
    assert isinstance(completed, Applied)
    assert completed.status_change is not None
    assert completed.state.current_step is not None
    assert completed.state.current_step.completed_at is not None


def test_payment_request_does_not_notify_without_status_change_but_payment_does() -> None:
    state = state_in(S.FINANCIAL_OBLIGATION_REQUESTED)
    outcome = apply(state, make_event(E.FINANCIAL_OBLIGATION_PAID, T0 + timedelta(days=1)), CTX)
    assert isinstance(outcome, Applied)
    assert outcome.state.status is S.PROCESSING
    assert outcome.status_change is not None


# --- agencies ------------------------------------------------------------------------------


def test_transfer_to_a_retired_agency_lands_at_its_successor() -> None:
    state = state_in(S.PROCESSING)
    event = make_event(E.TRANSFERRED, at(date(2025, 8, 6)), to_agency_code=RETIRED)
    outcome = apply(state, event, CTX)
    assert isinstance(outcome, Applied)
    assert outcome.state.agency_code == SUCCESSOR
    assert outcome.transfer is not None
    assert (outcome.transfer.from_agency, outcome.transfer.to_agency) == (AGENCY, SUCCESSOR)
    assert outcome.transfer.state == outcome.state
    assert outcome.status_change is not None
    assert outcome.status_change.agency_code == SUCCESSOR
    # The successor may now act; the receiving desk may still return the result.
    state = applied(outcome.state, make_event(E.PROCESSED, at(date(2025, 8, 7)), agency=RETIRED))
    state = applied(state, make_event(E.RESULT_RETURNED, at(date(2025, 8, 8)), agency=AGENCY))
    assert state.status is S.RESULT_RETURNED


def test_an_open_dossier_of_a_merged_agency_carries_on_under_its_successor() -> None:
    before_merger = at(date(2025, 2, 20))
    state = run(
        make_event(E.SUBMITTED, before_merger, agency=RETIRED),
        make_event(E.RECEIVED, before_merger, agency=RETIRED),
    )
    assert state.agency_code == RETIRED
    state = applied(state, make_event(E.STEP_STARTED, at(date(2025, 3, 3)), agency=SUCCESSOR))
    assert state.agency_code == SUCCESSOR
    assert state.handled_by == (RETIRED, SUCCESSOR)
    assert len(state.timeline) == 3


def test_an_agency_that_never_held_the_dossier_is_rejected() -> None:
    state = state_in(S.PROCESSING)
    outcome = apply(state, make_event(E.PROCESSED, T0 + timedelta(days=1), agency=OTHER), CTX)
    assert isinstance(outcome, Rejected)
    assert outcome.rule == "agency_mismatch"
    assert DOSSIER in outcome.reason


def test_a_transfer_from_an_agency_not_holding_the_dossier_is_rejected() -> None:
    state = state_in(S.PROCESSING)
    event = make_event(E.TRANSFERRED, T0 + timedelta(days=1), from_agency_code=OTHER)
    outcome = apply(state, event, CTX)
    assert isinstance(outcome, Rejected)
    assert outcome.rule == "agency_mismatch"


def test_an_event_for_another_dossier_is_rejected() -> None:
    state = state_in(S.PROCESSING)
    event = msgspec.structs.replace(
        make_event(E.PROCESSED), dossier_code="000.00.12.H40-250805-0002"
    )
    outcome = apply(state, event, CTX)
    assert isinstance(outcome, Rejected)
    assert outcome.rule == "dossier_mismatch"


# --- domain adjustments and out-of-order arrivals ------------------------------------------


def test_late_submission_fills_in_a_desk_opened_dossier() -> None:
    state = run(make_event(E.RECEIVED, at(date(2025, 4, 29))))
    assert state.procedure_code is None
    assert state.appointment_date is None
    outcome = apply(state, make_event(E.SUBMITTED, at(date(2025, 4, 29), 8)), CTX)
    assert isinstance(outcome, Applied)
    assert outcome.state.status is S.RECEIVED
    assert outcome.state.procedure_code == PROCEDURE
    assert outcome.state.channel is Channel.ONLINE
    assert outcome.state.appointment_date == date(2025, 5, 7)
    assert outcome.status_change is not None
    assert [e.event_type for e in outcome.state.timeline] == [E.SUBMITTED, E.RECEIVED]
    second = apply(outcome.state, make_event(E.SUBMITTED), CTX)
    assert isinstance(second, Rejected)
    assert second.rule == "already_submitted"


def test_older_events_are_applied_when_legal_and_the_timeline_stays_sorted() -> None:
    state = state_in(S.PROCESSING)
    last = state.last_event_at
    older = make_event(E.STEP_COMPLETED, T0 - timedelta(days=1))
    state = applied(state, older)
    assert [e.occurred_at for e in state.timeline] == sorted(e.occurred_at for e in state.timeline)
    assert state.timeline[0].event_id == older.event_id
    assert state.last_event_at == last


def test_an_older_step_start_does_not_replace_the_current_step() -> None:
    state = state_in(S.PROCESSING)
    state = applied(state, make_event(E.STEP_STARTED, T0 + timedelta(days=2), step_no=3))
    state = applied(state, make_event(E.STEP_STARTED, T0 + timedelta(days=1), step_no=2))
    assert state.current_step is not None
    assert state.current_step.step_no == 3
    assert len(state.timeline) == 4


def test_an_older_apology_does_not_move_the_appointment_back() -> None:
    state = state_in(S.PROCESSING)
    newer = make_event(
        E.APOLOGY_ISSUED, at(date(2025, 8, 12)), new_appointment_date=date(2025, 8, 20)
    )
    older = make_event(
        E.APOLOGY_ISSUED, at(date(2025, 8, 7)), new_appointment_date=date(2025, 8, 14)
    )
    state = run(newer, older, state=state)
    assert state.appointment_date == date(2025, 8, 20)
    assert state.original_appointment_date == APPOINTMENT
    assert state.apology_dates == (date(2025, 8, 7), date(2025, 8, 12))


def test_withdrawal_while_paused_closes_the_pause() -> None:
    state = state_in(S.SUPPLEMENT_REQUESTED)
    state = applied(state, make_event(E.WITHDRAWN, at(date(2025, 8, 8))))
    assert state.paused_since is None
    assert state.paused_working_days == 3  # Wed, Thu, Fri after Tuesday's request


def test_feedback_is_recorded_without_status_change() -> None:
    state = state_in(S.RESULT_RETURNED)
    rated = ServiceRated(
        event_id=str(uuid.uuid4()),
        occurred_at=T0 + timedelta(days=3),
        agency_code=AGENCY,
        dossier_code=DOSSIER,
        source_system="portal",
        score=5,
        comment=APPLICANT,
    )
    outcome = apply(state, rated, CTX)
    assert isinstance(outcome, Applied)
    assert outcome.status_change is None
    assert outcome.state.status is S.RESULT_RETURNED
    assert APPLICANT not in outcome.state.timeline[-1].note


def test_timeline_notes_carry_no_personal_data() -> None:
    state = run(
        make_event(E.SUBMITTED),
        make_event(E.RECEIVED, T0 + timedelta(hours=1)),
        make_event(E.STEP_STARTED, T0 + timedelta(hours=2)),
        make_event(E.TRANSFERRED, T0 + timedelta(hours=3)),
        make_event(E.PROCESSED, T0 + timedelta(hours=4), agency=OTHER),
    )
    for entry in state.timeline:
        assert APPLICANT not in entry.note
        assert "Trần Thị B" not in entry.note
        assert len(entry.note) <= 200


# --- serialisation -------------------------------------------------------------------------

_SEQUENCE_TYPES = st.sampled_from(list(E))


@settings(max_examples=150, deadline=None)
@given(
    first=st.sampled_from([E.SUBMITTED, E.RECEIVED]),
    steps=st.lists(st.tuples(_SEQUENCE_TYPES, st.integers(-30, 3000)), max_size=25),
)
def test_to_dict_from_dict_round_trips(first: E, steps: list[tuple[E, int]]) -> None:
    state = applied(None, make_event(first))
    moment = T0
    for event_type, minutes in steps:
        moment += timedelta(minutes=minutes)
        outcome = apply(state, make_event(event_type, moment), CTX)
        if isinstance(outcome, Applied):
            state = outcome.state
        state = evolve(state, alerts_emitted=state.alerts_emitted | {f"k:{len(steps)}"})
    data = state.to_dict()
    assert DossierState.from_dict(json.loads(json.dumps(data))) == state
    assert state.applied_event_ids == {e.event_id for e in state.timeline}
    times = [e.occurred_at for e in state.timeline]
    assert times == sorted(times)
    assert state.last_event_at == max(times)


# --- accountability: who made a dossier late -------------------------------------------------


def _in_step_one(received: datetime) -> DossierState:
    """LONG_PROCEDURE received on Monday 2025-08-04: step 1's deadline is Thursday 08-07."""
    return run(
        make_event(E.SUBMITTED, received, procedure_code=LONG_PROCEDURE),
        make_event(E.RECEIVED, received),
        make_event(E.STEP_STARTED, received + timedelta(hours=1)),
    )


def test_a_step_completed_after_its_deadline_names_its_unit_official_and_days_over() -> None:
    state = _in_step_one(at(date(2025, 8, 4)))
    state = applied(state, make_event(E.STEP_COMPLETED, at(date(2025, 8, 11))))  # Monday
    assert state.late_steps == (
        LateStep(
            1, "Thẩm định", "Trần Thị B", "Phòng Hành chính tư pháp", AGENCY,
            deadline=date(2025, 8, 7), completed_on=date(2025, 8, 11), working_days_over=2,
        ),
    )  # fmt: skip
    assert DossierState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_a_step_completed_by_its_deadline_is_not_late() -> None:
    state = _in_step_one(at(date(2025, 8, 4)))
    state = applied(state, make_event(E.STEP_COMPLETED, at(date(2025, 8, 7), 16)))
    assert state.late_steps == ()


def test_a_supplement_pause_during_the_step_pushes_its_deadline_back() -> None:
    state = _in_step_one(at(date(2025, 8, 4)))
    state = run(
        make_event(E.SUPPLEMENT_REQUESTED, at(date(2025, 8, 5))),
        make_event(E.SUPPLEMENTED, at(date(2025, 8, 8))),  # 3 working days paused
        state=state,
    )
    on_time = applied(state, make_event(E.STEP_COMPLETED, at(date(2025, 8, 12))))
    assert on_time.late_steps == ()  # 08-07 + 3 working days = 08-12
    late = applied(state, make_event(E.STEP_COMPLETED, at(date(2025, 8, 13))))
    assert [(s.deadline, s.working_days_over) for s in late.late_steps] == [(date(2025, 8, 12), 1)]


def test_the_view_counts_late_steps_per_agency_and_unit_once_each() -> None:
    from hub.worker.figures import LocalView

    view = LocalView(CALENDAR)
    before = _in_step_one(at(date(2025, 8, 4)))
    view.replace(None, before)
    after = applied(before, make_event(E.STEP_COMPLETED, at(date(2025, 8, 11))))
    view.replace(before, after)
    view.replace(after, applied(after, make_event(E.PROCESSED, at(date(2025, 8, 12)))))
    assert view.late_steps == {(AGENCY, "Phòng Hành chính tư pháp"): 1}
    assert view.rebuild([after]) == 1
    assert view.late_steps == {(AGENCY, "Phòng Hành chính tư pháp"): 1}


def test_every_completed_step_is_kept_with_its_unit_official_and_deadline() -> None:
    state = _in_step_one(at(date(2025, 8, 4)))
    assert list(state.steps) == []  # in hand: the current step, not yet a completed one
    state = applied(state, make_event(E.STEP_COMPLETED, at(date(2025, 8, 6))))
    (step,) = state.steps
    assert (step.step_no, step.step_name, step.unit, step.official) == (
        1, "Thẩm định", "Phòng Hành chính tư pháp", "Trần Thị B",
    )  # fmt: skip
    assert step.step_deadline == date(2025, 8, 7)
    assert step.completed_at == at(date(2025, 8, 6))
    # a redelivered completion changes nothing; the JSON form keeps the steps
    again = apply(state, make_event(E.STEP_COMPLETED, at(date(2025, 8, 6))), CTX)
    assert not isinstance(again, Applied) or list(again.state.steps) == list(state.steps)
    assert DossierState.from_dict(state.to_dict()).steps == state.steps
