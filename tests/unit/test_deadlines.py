"""Specifications of working-day deadlines, the supplement clock and alerts."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hub.contract.event_types import DossierEventType as E
from hub.domain.deadlines import (
    Alert,
    AlertKind,
    AlertScope,
    due_alerts,
    effective_deadline,
    effective_deadline_on,
    finish_date,
    mark_emitted,
    on_time,
)
from hub.domain.lifecycle import DossierState, ProcedureRule, evolve, step_deadline_from_shares
from tests.unit.test_lifecycle import (
    CALENDAR,
    DAYS_OFF_2025,
    LONG_PROCEDURE,
    applied,
    at,
    make_event,
    run,
)

MONDAY = date(2025, 8, 4)


def received_dossier(on: date = MONDAY, procedure: str = LONG_PROCEDURE) -> DossierState:
    """A dossier received on ``on`` for the 15-working-day procedure."""
    return run(
        make_event(E.SUBMITTED, at(on, 8), procedure_code=procedure),
        make_event(E.RECEIVED, at(on, 9)),
    )


# --- the supplement clock ------------------------------------------------------------------


def test_supplement_request_stops_the_clock() -> None:
    state = received_dossier()
    assert state.appointment_date == date(2025, 8, 25)
    state = applied(state, make_event(E.SUPPLEMENT_REQUESTED, at(date(2025, 8, 6))))
    assert state.paused_since == date(2025, 8, 6)
    assert state.supplement_requests == 1
    # While paused the deadline moves with every working day that passes.
    assert effective_deadline_on(state, CALENDAR, date(2025, 8, 8)) == date(2025, 8, 27)
    assert effective_deadline_on(state, CALENDAR, date(2025, 8, 10)) == date(2025, 8, 27)
    state = applied(state, make_event(E.SUPPLEMENTED, at(date(2025, 8, 11))))
    assert state.paused_since is None
    assert state.paused_working_days == 3  # Thu 7, Fri 8, Mon 11
    assert effective_deadline(state, CALENDAR) == date(2025, 8, 28)
    assert state.appointment_date == date(2025, 8, 25)  # NgayHenTra itself is unchanged


def test_supplement_resumed_before_its_request_counts_no_days() -> None:
    state = received_dossier()
    state = run(
        make_event(E.SUPPLEMENT_REQUESTED, at(date(2025, 8, 6))),
        make_event(E.SUPPLEMENTED, at(date(2025, 8, 5))),
        state=state,
    )
    assert state.paused_working_days == 0


def test_the_step_deadline_moves_with_pauses_after_the_step_started() -> None:
    state = received_dossier()
    state = applied(state, make_event(E.STEP_STARTED, at(date(2025, 8, 4), 10)))
    assert state.current_step is not None
    assert state.current_step.step_deadline == date(2025, 8, 7)
    state = run(
        make_event(E.SUPPLEMENT_REQUESTED, at(date(2025, 8, 5))),
        make_event(E.SUPPLEMENTED, at(date(2025, 8, 7))),
        state=state,
    )
    alerts = due_alerts(state, date(2025, 8, 8), CALENDAR)
    assert [a.key for a in alerts] == ["DUE_SOON:STEP:1:2025-08-11"]


# --- on time -------------------------------------------------------------------------------


def test_on_time_is_unknown_while_unfinished() -> None:
    assert on_time(received_dossier(), CALENDAR) is None


def test_processed_by_the_appointment_date_is_on_time() -> None:
    state = applied(received_dossier(), make_event(E.PROCESSED, at(date(2025, 8, 25), 16)))
    assert finish_date(state) == date(2025, 8, 25)
    assert on_time(state, CALENDAR) is True


def test_processed_after_the_appointment_date_is_late_even_if_returned_later() -> None:
    state = run(
        make_event(E.PROCESSED, at(date(2025, 8, 26))),
        make_event(E.RESULT_RETURNED, at(date(2025, 8, 27))),
        state=received_dossier(),
    )
    assert on_time(state, CALENDAR) is False


def test_supplement_time_does_not_count_against_the_agency() -> None:
    state = run(
        make_event(E.SUPPLEMENT_REQUESTED, at(date(2025, 8, 6))),
        make_event(E.SUPPLEMENTED, at(date(2025, 8, 11))),
        make_event(E.PROCESSED, at(date(2025, 8, 28))),
        state=received_dossier(),
    )
    assert on_time(state, CALENDAR) is True


def test_repeated_supplement_requests_are_late_under_the_766_option() -> None:
    state = run(
        make_event(E.SUPPLEMENT_REQUESTED, at(date(2025, 8, 5))),
        make_event(E.SUPPLEMENTED, at(date(2025, 8, 6))),
        make_event(E.SUPPLEMENT_REQUESTED, at(date(2025, 8, 7))),
        make_event(E.SUPPLEMENTED, at(date(2025, 8, 8))),
        make_event(E.PROCESSED, at(date(2025, 8, 12))),
        state=received_dossier(),
    )
    assert on_time(state, CALENDAR) is True
    assert on_time(state, CALENDAR, late_if_repeated_supplement=True) is False


def test_stopped_dossiers_are_judged_and_withdrawn_ones_are_not() -> None:
    stopped = applied(received_dossier(), make_event(E.STOPPED, at(date(2025, 8, 6))))
    assert on_time(stopped, CALENDAR) is True
    withdrawn = applied(received_dossier(), make_event(E.WITHDRAWN, at(date(2025, 8, 6))))
    assert finish_date(withdrawn) is None
    assert on_time(withdrawn, CALENDAR) is None


def test_stopped_while_paused_counts_the_pause() -> None:
    state = run(
        make_event(E.SUPPLEMENT_REQUESTED, at(date(2025, 8, 20))),
        make_event(E.STOPPED, at(date(2025, 8, 27))),
        state=received_dossier(),
    )
    assert state.paused_working_days == 5
    assert on_time(state, CALENDAR) is True


# --- alerts --------------------------------------------------------------------------------


def keys(alerts: list[Alert]) -> list[str]:
    return [a.key for a in alerts]


def test_due_soon_the_working_day_before_the_deadline() -> None:
    state = received_dossier()
    assert due_alerts(state, date(2025, 8, 21), CALENDAR) == []
    assert keys(due_alerts(state, date(2025, 8, 22), CALENDAR)) == ["DUE_SOON:DOSSIER:-:2025-08-25"]
    # Friday before a Monday deadline: the weekend does not count.
    assert keys(due_alerts(state, date(2025, 8, 23), CALENDAR)) == ["DUE_SOON:DOSSIER:-:2025-08-25"]
    assert due_alerts(state, date(2025, 8, 25), CALENDAR) == []
    assert len(due_alerts(state, date(2025, 8, 20), CALENDAR, due_soon_working_days=3)) == 1


def test_overdue_and_apology_owed_after_the_deadline() -> None:
    state = received_dossier()
    alerts = due_alerts(state, date(2025, 8, 26), CALENDAR)
    assert {(a.kind, a.scope) for a in alerts} == {
        (AlertKind.OVERDUE, AlertScope.DOSSIER),
        (AlertKind.APOLOGY_OWED, AlertScope.DOSSIER),
    }
    assert all(a.deadline == date(2025, 8, 25) and a.step_no is None for a in alerts)


def test_alerts_are_emitted_once() -> None:
    state = received_dossier()
    first = due_alerts(state, date(2025, 8, 26), CALENDAR)
    assert first
    state = mark_emitted(state, first)
    assert due_alerts(state, date(2025, 8, 26), CALENDAR) == []
    assert due_alerts(state, date(2025, 9, 30), CALENDAR) == []
    assert mark_emitted(state, first) is state


def test_an_apology_after_the_deadline_settles_what_is_owed() -> None:
    state = received_dossier()
    late_apology = make_event(
        E.APOLOGY_ISSUED, at(date(2025, 8, 26)), new_appointment_date=date(2025, 8, 25)
    )
    state = applied(state, late_apology)
    assert keys(due_alerts(state, date(2025, 8, 27), CALENDAR)) == ["OVERDUE:DOSSIER:-:2025-08-25"]


def test_an_apology_moves_the_deadline_and_late_again_means_a_new_apology() -> None:
    state = received_dossier()
    state = mark_emitted(state, due_alerts(state, date(2025, 8, 26), CALENDAR))
    state = applied(
        state,
        make_event(E.APOLOGY_ISSUED, at(date(2025, 8, 26)), new_appointment_date=date(2025, 9, 5)),
    )
    assert due_alerts(state, date(2025, 8, 27), CALENDAR) == []
    assert keys(due_alerts(state, date(2025, 9, 8), CALENDAR)) == [
        "OVERDUE:DOSSIER:-:2025-09-05",
        "APOLOGY_OWED:DOSSIER:-:2025-09-05",
    ]


def test_no_alert_while_paused_for_a_supplement() -> None:
    state = applied(received_dossier(), make_event(E.SUPPLEMENT_REQUESTED, at(date(2025, 8, 20))))
    assert due_alerts(state, date(2025, 9, 30), CALENDAR) == []


def test_no_alert_once_finished() -> None:
    state = applied(received_dossier(), make_event(E.PROCESSED, at(date(2025, 8, 28))))
    assert due_alerts(state, date(2025, 9, 30), CALENDAR) == []


def test_step_alerts_stop_when_the_step_is_completed() -> None:
    state = received_dossier()
    state = applied(state, make_event(E.STEP_STARTED, at(MONDAY, 10)))
    assert keys(due_alerts(state, date(2025, 8, 8), CALENDAR)) == ["OVERDUE:STEP:1:2025-08-07"]
    state = applied(state, make_event(E.STEP_COMPLETED, at(date(2025, 8, 8))))
    assert due_alerts(state, date(2025, 8, 8), CALENDAR) == []


# --- properties ----------------------------------------------------------------------------

DAYS_2025 = st.dates(min_value=date(2025, 1, 1), max_value=date(2025, 12, 31))


@settings(max_examples=200, deadline=None)
@given(received=DAYS_2025, working_days=st.integers(1, 40), pause=st.integers(0, 20))
def test_a_computed_deadline_never_falls_on_a_day_off(
    received: date, working_days: int, pause: int
) -> None:
    rule = ProcedureRule(working_days=working_days, step_shares=(0.25, 0.25, 0.5))
    deadline = CALENDAR.add_working_days(received, working_days)
    assert CALENDAR.is_working_day(deadline)
    assert deadline not in DAYS_OFF_2025
    assert deadline.weekday() < 5 or deadline == date(2025, 4, 26)
    for step_no in (1, 2, 3):
        step = step_deadline_from_shares(rule, step_no, received, CALENDAR)
        assert step is not None
        assert CALENDAR.is_working_day(step)
        assert received < step <= deadline
    state = evolve(received_dossier(), appointment_date=deadline, paused_working_days=pause)
    shifted = effective_deadline(state, CALENDAR)
    assert shifted is not None
    assert CALENDAR.is_working_day(shifted)


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 60),
    length=st.integers(0, 40),
    today_offset=st.integers(0, 80),
)
def test_pausing_and_resuming_never_shortens_the_time_allowed(
    start: int, length: int, today_offset: int
) -> None:
    state = received_dossier()
    original = effective_deadline(state, CALENDAR)
    assert original is not None
    paused_on = MONDAY + timedelta(days=start)
    resumed_on = paused_on + timedelta(days=length)
    paused = applied(state, make_event(E.SUPPLEMENT_REQUESTED, at(paused_on)))
    today = paused_on + timedelta(days=today_offset)
    running = effective_deadline_on(paused, CALENDAR, today)
    assert running is not None and running >= original
    resumed = applied(paused, make_event(E.SUPPLEMENTED, at(resumed_on)))
    after = effective_deadline(resumed, CALENDAR)
    assert after is not None and after >= original
    assert resumed.paused_working_days == CALENDAR.working_days_between(paused_on, resumed_on)


@settings(max_examples=200, deadline=None)
@given(today=st.dates(min_value=MONDAY, max_value=date(2025, 12, 31)), window=st.integers(1, 5))
def test_alerts_are_emitted_once_whatever_the_day(today: date, window: int) -> None:
    state = applied(received_dossier(), make_event(E.STEP_STARTED, at(MONDAY, 10)))
    alerts = due_alerts(state, today, CALENDAR, window)
    assert len({a.key for a in alerts}) == len(alerts)
    marked = mark_emitted(state, alerts)
    assert due_alerts(marked, today, CALENDAR, window) == []


@settings(max_examples=100, deadline=None)
@given(paused_on=st.dates(min_value=MONDAY, max_value=date(2025, 9, 30)), today=DAYS_2025)
def test_no_alert_while_paused_whatever_the_day(paused_on: date, today: date) -> None:
    assume(today >= paused_on)
    state = applied(received_dossier(), make_event(E.SUPPLEMENT_REQUESTED, at(paused_on)))
    assert due_alerts(state, today, CALENDAR) == []
