"""A dossier's contribution to the supervision figures, derived from its state alone.

The worker keeps figures as the sum of ``standing(state)`` over the dossiers it holds: on each
applied event it subtracts the old state's standing and adds the new one's, and after a
restart or rebalance it recomputes the sum from the recovered table. Because the figures are
a function of the states, and the states are idempotent on event id, a redelivered event can
never be counted twice, which plain counters incremented per event could not promise.
"""

from __future__ import annotations

import operator
from typing import Final

from hub.domain.deadlines import AlertKind, AlertScope, alert_key_prefix, on_time
from hub.domain.events import Channel
from hub.domain.lifecycle import DossierState, WorkingDays
from hub.domain.status import DossierStatus
from hub.domain.supervision import OPEN_STATUSES, FigureKey, Figures, figure_key

__all__ = ["STANDING_FIELDS", "negate", "same_standing", "standing", "standing_values"]

_OVERDUE_PREFIX = alert_key_prefix(AlertKind.OVERDUE, AlertScope.DOSSIER)
#: ``key.startswith(_OVERDUE_PREFIX)``, looped over in C by ``map``
_is_overdue_key = operator.methodcaller("startswith", _OVERDUE_PREFIX)
_WITHDRAWN_STOPPED = frozenset({DossierStatus.WITHDRAWN, DossierStatus.STOPPED})


#: Every field of a state that ``standing_values`` reads, directly or through ``on_time``
#: and ``figure_key`` (tests/unit/test_standing_inputs.py records the attributes read to keep
#: this list whole).
STANDING_FIELDS: Final = (
    "agency_code", "procedure_code", "channel", "status", "received_at", "processed_at",
    "returned_at", "finished_at", "alerts_emitted", "electronic_result", "ratings_count",
    "ratings_sum", "complaints", "supplement_requests", "appointment_date", "paused_since",
    "paused_working_days",
)  # fmt: skip
_standing_inputs = operator.attrgetter(*STANDING_FIELDS)


def same_standing(before: DossierState, after: DossierState) -> bool:
    """True when ``after`` holds the very objects ``before`` holds in every field the
    standing reads, so both standings are equal without computing either: a state made from
    another by ``msgspec.structs.replace`` shares every field it did not change (most events
    change none of these). False says nothing: compute them."""
    return all(map(operator.is_, _standing_inputs(before), _standing_inputs(after)))


def standing(
    state: DossierState, calendar: WorkingDays, *, late_if_repeated_supplement: bool = False
) -> tuple[FigureKey, Figures]:
    key, values = standing_values(
        state, calendar, late_if_repeated_supplement=late_if_repeated_supplement
    )
    return key, Figures(*map(int, values))


def standing_values(
    state: DossierState, calendar: WorkingDays, *, late_if_repeated_supplement: bool = False
) -> tuple[FigureKey, tuple[int, ...]]:
    """``standing`` as a plain tuple in ``Figures``' field order (flags as bools): the
    local view compares the standing before and after each event, and most events change
    none of it, so the comparison is one tuple equality and builds no ``Figures``."""
    status = state.status
    processed = state.processed_at is not None
    online = state.channel is Channel.ONLINE
    # ``on_time`` is None unless one of these is set (``deadlines.finish_date``)
    may_be_judged = processed or state.returned_at is not None or state.finished_at is not None
    verdict = (
        on_time(state, calendar, late_if_repeated_supplement=late_if_repeated_supplement)
        if may_be_judged
        else None
    )
    emitted = state.alerts_emitted
    return figure_key(state), (
        1,  # submitted_total
        online,
        state.received_at is not None,  # received
        status in OPEN_STATUSES,  # in_progress
        processed,
        state.returned_at is not None,  # returned
        bool(emitted) and any(map(_is_overdue_key, emitted)),  # overdue
        status is DossierStatus.NOT_RECEIVED,  # refused
        status in _WITHDRAWN_STOPPED,  # withdrawn_stopped
        verdict is True,  # finished_on_time
        verdict is False,  # finished_late
        online and state.electronic_result and processed,  # online_electronic_result
        # Running sums kept by the state machine: the timeline is not read per event.
        state.ratings_count,
        state.ratings_sum,
        state.complaints,
    )


def negate(figures: Figures) -> Figures:
    return -figures
