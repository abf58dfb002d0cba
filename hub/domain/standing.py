"""A dossier's contribution to the supervision figures, derived from its state alone.

The worker keeps figures as the sum of ``standing(state)`` over the dossiers it holds: on each
applied event it subtracts the old state's standing and adds the new one's, and after a
restart or rebalance it recomputes the sum from the recovered table. Because the figures are
a function of the states, and the states are idempotent on event id, a redelivered event can
never be counted twice, which plain counters incremented per event could not promise.
"""

from __future__ import annotations

from hub.domain.deadlines import AlertKind, AlertScope, on_time
from hub.domain.events import Channel
from hub.domain.lifecycle import DossierState, WorkingDays
from hub.domain.status import DossierStatus
from hub.domain.supervision import OPEN_STATUSES, FigureKey, Figures, figure_key

__all__ = ["negate", "standing"]

_OVERDUE_PREFIX = f"{AlertKind.OVERDUE}:{AlertScope.DOSSIER}:"


def standing(
    state: DossierState, calendar: WorkingDays, *, late_if_repeated_supplement: bool = False
) -> tuple[FigureKey, Figures]:
    verdict = on_time(state, calendar, late_if_repeated_supplement=late_if_repeated_supplement)
    online = state.channel is Channel.ONLINE
    figures = Figures(
        submitted_total=1,
        online=int(online),
        received=int(state.received_at is not None),
        in_progress=int(state.status in OPEN_STATUSES),
        processed=int(state.processed_at is not None),
        returned=int(state.returned_at is not None),
        overdue=int(any(key.startswith(_OVERDUE_PREFIX) for key in state.alerts_emitted)),
        refused=int(state.status is DossierStatus.NOT_RECEIVED),
        withdrawn_stopped=int(state.status in (DossierStatus.WITHDRAWN, DossierStatus.STOPPED)),
        finished_on_time=int(verdict is True),
        finished_late=int(verdict is False),
        online_electronic_result=int(
            online and state.electronic_result and state.processed_at is not None
        ),
        # Running sums kept by the state machine: the timeline is not read per event.
        ratings_count=state.ratings_count,
        ratings_sum=state.ratings_sum,
        complaints=state.complaints,
    )
    return figure_key(state), figures


def negate(figures: Figures) -> Figures:
    return -figures
