"""``next_alert_date``: the first day ``due_alerts`` has something to say, known in advance."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.contract.event_types import DossierEventType as E
from hub.contract.schemas import SchemaKind, load_schema
from hub.contract.serde import AvroDeserializer, AvroSerializer
from hub.domain.deadlines import due_alerts, mark_emitted, next_alert_date
from hub.domain.lifecycle import Applied, DossierState, apply
from hub.reference import load_reference
from hub.settings import HubSettings
from hub.worker.processor import Processor
from tests.unit.test_lifecycle import CALENDAR, CTX, T0, applied, make_event
from tests.unit.test_state_codec import _TYPES, history

FIRST_DAY = date(2025, 1, 1)  # the test calendar covers 2025 and 2026
LAST_DAY = date(2026, 11, 30)  # leaves room for add_working_days past a deadline


def _emit_some(state: DossierState, days: list[int], n: int) -> DossierState:
    """The state after the deadline clock ran on some days (alerts marked as emitted)."""
    for offset in days:
        day = date(2025, 8, 5) + timedelta(days=offset)
        state = mark_emitted(state, due_alerts(state, day, CALENDAR, n))
    return state


#: What happens to an open dossier: steps, supplement rounds, apologies, transfers.
_OPEN_LIFE = st.sampled_from(
    [E.STEP_STARTED, E.STEP_COMPLETED, E.SUPPLEMENT_REQUESTED, E.SUPPLEMENTED,
     E.APOLOGY_ISSUED, E.TRANSFERRED, E.FINANCIAL_OBLIGATION_REQUESTED, E.PROCESSED]
)  # fmt: skip


def open_history(appointment: date | None, steps: list[tuple[E, int]]) -> DossierState:
    """Submitted and received at T0 (with ``appointment``, or the procedure's), then
    whichever of ``steps`` the machine accepts, ``minutes`` apart."""
    state = applied(None, make_event(E.SUBMITTED, T0))
    state = applied(state, make_event(E.RECEIVED, T0, appointment_date=appointment))
    moment = T0
    for event_type, minutes in steps:
        moment += timedelta(minutes=minutes)
        outcome = apply(state, make_event(event_type, moment), CTX)
        if isinstance(outcome, Applied):
            state = outcome.state
    return state


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(_OPEN_LIFE, st.integers(0, 6000)), max_size=8),
    clock_days=st.lists(st.integers(-5, 60), max_size=4),
    n=st.integers(0, 3),
    appointment=st.one_of(st.none(), st.integers(0, 40)),
    mixed=st.lists(st.tuples(_TYPES, st.integers(-30, 3000)), max_size=6),
    use_mixed=st.integers(0, 4),
)
def test_nothing_is_due_before_the_next_alert_date_and_something_is_on_it(
    steps: list[tuple[E, int]],
    clock_days: list[int],
    n: int,
    appointment: int | None,
    mixed: list[tuple[E | str, int]],
    use_mixed: int,
) -> None:
    day0 = date(2025, 8, 5)
    if use_mixed == 0:  # now and then any history at all, most of it rejected
        state = history(E.SUBMITTED, mixed)
    else:
        state = open_history(None if appointment is None else day0 + timedelta(appointment), steps)
    state = _emit_some(state, sorted(clock_days), n)
    found = next_alert_date(state, CALENDAR, n)
    end = LAST_DAY if found is None else found
    # from the last day the clock judged on (time moves forward), up to the date found
    last_judged = day0 + timedelta(days=max(clock_days)) if clock_days else FIRST_DAY
    day = max(FIRST_DAY, end - timedelta(days=120), last_judged)
    while day < end:
        assert due_alerts(state, day, CALENDAR, n) == [], (day, found)
        day += timedelta(days=1)
    if found is not None:
        assert due_alerts(state, found, CALENDAR, n)


def test_a_received_dossier_is_first_due_soon_then_overdue() -> None:
    received = make_event(E.RECEIVED, T0, appointment_date=date(2025, 8, 15))  # a Friday
    state = applied(applied(None, make_event(E.SUBMITTED, T0)), received)
    assert next_alert_date(state, CALENDAR, 1) == date(2025, 8, 14)  # one working day left
    assert next_alert_date(state, CALENDAR, 2) == date(2025, 8, 13)
    state = mark_emitted(state, due_alerts(state, date(2025, 8, 14), CALENDAR, 1))
    assert next_alert_date(state, CALENDAR, 1) == date(2025, 8, 16)  # overdue from Saturday


def test_no_next_alert_while_the_clock_is_stopped_or_once_finished() -> None:
    state = applied(None, make_event(E.RECEIVED, T0, appointment_date=date(2025, 8, 15)))
    paused = applied(state, make_event(E.SUPPLEMENT_REQUESTED, T0 + timedelta(hours=1)))
    assert next_alert_date(paused, CALENDAR, 1) is None
    done = applied(state, make_event(E.PROCESSED, T0 + timedelta(hours=1)))
    assert next_alert_date(done, CALENDAR, 1) is None


def test_a_dossier_past_its_deadline_is_not_due_again_for_the_due_soon_it_missed() -> None:
    # Received with a deadline the clock first sees already passed: DUE_SOON never fired and
    # never can. Once OVERDUE and APOLOGY_OWED are out, nothing is left to fall due: the
    # deadline clock must not take this dossier up again every minute, for ever.
    received = make_event(E.RECEIVED, T0, appointment_date=date(2025, 8, 15))
    state = applied(applied(None, make_event(E.SUBMITTED, T0)), received)
    late = date(2025, 8, 20)
    emitted = due_alerts(state, late, CALENDAR, 1)
    assert {a.kind.value for a in emitted} == {"OVERDUE", "APOLOGY_OWED"}
    assert next_alert_date(mark_emitted(state, emitted), CALENDAR, 1) is None


class _OneSchemaId:
    """A registry that gives every subject schema id 1 (the bytes are not read here)."""

    def register(self, subject: str, schema: object) -> int:
        return 1


PROCESSOR = Processor(
    HubSettings(),
    load_reference(),
    AvroDeserializer(_OneSchemaId()),  # type: ignore[arg-type]
    {
        kind: lambda topic, kind=kind: AvroSerializer(  # type: ignore[misc]
            _OneSchemaId(),  # type: ignore[arg-type]
            f"{topic}-value",
            load_schema(kind),
        )
        for kind in SchemaKind
    },
)


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.tuples(_OPEN_LIFE, st.integers(0, 6000)), max_size=8),
    appointment=st.one_of(st.none(), st.integers(0, 40)),
    ticks=st.lists(st.integers(-5, 60), min_size=1, max_size=4),
)
def test_the_processor_hands_the_engine_the_next_alert_date_of_the_state_it_leaves(
    steps: list[tuple[E, int]], appointment: int | None, ticks: list[int]
) -> None:
    # The engine's due index takes ``Effects.next_alert`` as it is: it must be the rule's
    # answer for the state after the tick (alerts marked or not), never a stale one.
    day0 = date(2025, 8, 5)
    state = open_history(None if appointment is None else day0 + timedelta(appointment), steps)
    calendar = PROCESSOR.reference.calendar
    soon = PROCESSOR.settings.due_soon_working_days
    for offset in sorted(ticks):
        now = datetime.combine(day0 + timedelta(days=offset), time(3), tzinfo=UTC)
        effects = PROCESSOR.tick(state, now)
        state = effects.state or state
        assert effects.next_alert == next_alert_date(state, calendar, soon)
        assert not effects.outputs or effects.state is not None
