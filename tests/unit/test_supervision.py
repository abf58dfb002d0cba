"""Specifications of the supervision figures (hub.domain.supervision)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.contract.event_types import DossierEventType as E
from hub.domain.deadlines import due_alerts, mark_emitted, on_time
from hub.domain.events import Channel, ComplaintFiled, DomainEvent, ServiceRated
from hub.domain.lifecycle import Applied, DossierState, apply
from hub.domain.supervision import (
    OPEN_STATUSES,
    UNKNOWN_PROCEDURE,
    FigureKey,
    Figures,
    delta_for,
    delta_for_alert,
    delta_for_feedback,
    merge,
    total,
)
from tests.unit.test_lifecycle import (
    AGENCY,
    CALENDAR,
    CTX,
    DOSSIER,
    LONG_PROCEDURE,
    OTHER,
    PROCEDURE,
    T0,
    at,
    make_event,
)

MONDAY = date(2025, 8, 4)


class Book:
    """Applies events and books every delta, as the hub worker does."""

    def __init__(self) -> None:
        self.state: DossierState | None = None
        self.figures: dict[FigureKey, Figures] = {}

    def feed(self, *events: DomainEvent) -> Book:
        for event in events:
            before = self.state
            outcome = apply(before, event, CTX)
            assert isinstance(outcome, Applied), outcome
            self.state = outcome.state
            if isinstance(event, ServiceRated | ComplaintFiled):
                self.figures = merge(self.figures, delta_for_feedback(event, self.state))
            elif outcome.status_change is not None:
                judged = on_time(self.state, CALENDAR)
                delta = delta_for(outcome.status_change, before, self.state, judged)
                self.figures = merge(self.figures, delta)
        return self

    def alerts(self, today: date) -> Book:
        assert self.state is not None
        alerts = due_alerts(self.state, today, CALENDAR)
        for alert in alerts:
            self.figures = merge(self.figures, delta_for_alert(alert, self.state))
        self.state = mark_emitted(self.state, alerts)
        return self

    def at(self, agency: str = AGENCY, procedure: str = LONG_PROCEDURE) -> Figures:
        return self.figures.get(FigureKey(agency, procedure, Channel.ONLINE.value), Figures())


def feedback(cls: type[ServiceRated] | type[ComplaintFiled], **fields: Any) -> DomainEvent:
    return cls(
        event_id=str(uuid.uuid4()),
        occurred_at=at(date(2025, 9, 1)),
        agency_code=AGENCY,
        dossier_code=DOSSIER,
        source_system="portal",
        **fields,
    )


def submitted_and_received() -> list[DomainEvent]:
    return [
        make_event(E.SUBMITTED, at(MONDAY, 8), procedure_code=LONG_PROCEDURE),
        make_event(E.RECEIVED, at(MONDAY, 9)),
    ]


def test_a_dossier_on_time_from_submission_to_return() -> None:
    book = Book().feed(*submitted_and_received())
    mid = book.at()
    assert (mid.submitted_total, mid.online, mid.received, mid.in_progress) == (1, 1, 1, 1)
    book.feed(
        make_event(E.STEP_STARTED, at(MONDAY, 10)),
        make_event(E.PROCESSED, at(date(2025, 8, 20))),
        make_event(E.RESULT_RETURNED, at(date(2025, 8, 21))),
    )
    figures = book.at()
    assert figures == Figures(
        submitted_total=1,
        online=1,
        received=1,
        in_progress=0,
        processed=1,
        returned=1,
        finished_on_time=1,
        online_electronic_result=1,
    )
    assert figures.on_time_rate == 1.0
    assert figures.online_share == 1.0
    assert figures.electronic_result_share == 1.0


def test_a_late_dossier_counts_overdue_once_and_finished_late() -> None:
    book = Book().feed(*submitted_and_received())
    book.alerts(date(2025, 8, 26)).alerts(date(2025, 8, 27)).alerts(date(2025, 8, 28))
    book.feed(make_event(E.PROCESSED, at(date(2025, 8, 28))))
    figures = book.at()
    assert figures.overdue == 1
    assert (figures.finished_on_time, figures.finished_late) == (0, 1)
    assert figures.on_time_rate == 0.0


def test_a_transfer_moves_the_in_progress_gauge_to_the_new_agency() -> None:
    book = Book().feed(*submitted_and_received(), make_event(E.TRANSFERRED, at(MONDAY, 11)))
    assert book.at(AGENCY).in_progress == 0
    assert book.at(OTHER).in_progress == 1
    assert book.at(AGENCY).received == 1


def test_refusal_and_withdrawal_are_counted() -> None:
    refused = Book().feed(make_event(E.SUBMITTED, T0), make_event(E.REFUSED, T0))
    assert refused.at(procedure=PROCEDURE).refused == 1
    assert refused.at(procedure=PROCEDURE).in_progress == 0
    withdrawn = Book().feed(*submitted_and_received(), make_event(E.WITHDRAWN, at(MONDAY, 12)))
    figures = withdrawn.at()
    assert (figures.withdrawn_stopped, figures.in_progress) == (1, 0)
    assert figures.on_time_rate is None


def test_a_desk_dossier_is_booked_under_an_unknown_procedure_in_person() -> None:
    book = Book().feed(make_event(E.RECEIVED, T0))
    key = FigureKey(AGENCY, UNKNOWN_PROCEDURE, Channel.IN_PERSON.value)
    assert book.figures[key].submitted_total == 1
    assert book.figures[key].in_progress == 1
    assert book.figures[key].online == 0


def test_labels_are_bounded_to_agency_procedure_and_channel() -> None:
    book = Book().feed(
        *submitted_and_received(),
        make_event(E.TRANSFERRED, at(MONDAY, 11)),
        make_event(E.PROCESSED, at(MONDAY, 12), agency=OTHER),
        feedback(ServiceRated, score=4, comment="Nguyễn Văn An"),
    )
    for key in book.figures:
        assert key._fields == ("agency_code", "procedure_code", "channel")
        assert DOSSIER not in key.as_str()
        assert FigureKey.from_str(key.as_str()) == key


def test_feedback_counts_ratings_and_complaints() -> None:
    book = Book().feed(
        *submitted_and_received(),
        feedback(ServiceRated, score=5, comment=None),
        feedback(ServiceRated, score=3, comment=None),
        feedback(ComplaintFiled, subject="chậm", content="..."),
    )
    figures = book.at()
    assert (figures.ratings_count, figures.ratings_sum, figures.complaints) == (2, 8, 1)
    assert figures.satisfaction == pytest.approx(0.75)  # mean 4 -> (4 - 1) / 4


def test_satisfaction_without_ratings_is_one_minus_overdue_rate_and_complaint_share() -> None:
    figures = Figures(submitted_total=10, finished_on_time=6, finished_late=2, complaints=1)
    assert figures.on_time_rate == pytest.approx(0.75)
    assert figures.satisfaction == pytest.approx(1 - 0.25 - 0.1)
    assert Figures(submitted_total=2, finished_late=2, complaints=2).satisfaction == 0.0
    assert Figures().satisfaction is None
    assert Figures().on_time_rate is None
    assert Figures().online_share is None


def test_figures_add_and_serialise() -> None:
    a = Figures(received=1, ratings_sum=5)
    b = Figures(received=2, in_progress=-1)
    assert a + b == Figures(received=3, ratings_sum=5, in_progress=-1)
    assert total([a, b, Figures()]) == a + b
    assert Figures.from_dict((a + b).to_dict()) == a + b


_EVENT_TYPES = st.sampled_from(list(E))


@settings(max_examples=150, deadline=None)
@given(
    first=st.sampled_from([E.SUBMITTED, E.RECEIVED]),
    steps=st.lists(st.tuples(_EVENT_TYPES, st.integers(1, 3000)), max_size=20),
)
def test_the_in_progress_gauge_matches_the_dossier(first: E, steps: list[tuple[E, int]]) -> None:
    book = Book().feed(make_event(first, T0))
    moment: datetime = T0
    for event_type, minutes in steps:
        moment += timedelta(minutes=minutes)
        before = book.state
        outcome = apply(before, make_event(event_type, moment), CTX)
        if isinstance(outcome, Applied):
            book.state = outcome.state
            if outcome.status_change is not None:
                delta = delta_for(
                    outcome.status_change, before, outcome.state, on_time(outcome.state, CALENDAR)
                )
                book.figures = merge(book.figures, delta)
    assert book.state is not None
    everything = total(book.figures.values())
    assert everything.in_progress == (1 if book.state.status in OPEN_STATUSES else 0)
    assert all(f.in_progress >= 0 for f in book.figures.values())
    assert everything.submitted_total == 1
    assert everything.finished_on_time + everything.finished_late <= 1
