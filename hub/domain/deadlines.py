"""Working-day deadlines: the supplement clock, on-time judgement and due/overdue alerts.

The supplement clock
    ``SupplementRequested`` stops the clock (``state.paused_since`` = local request date) and
    ``DossierSupplemented`` restarts it, adding ``working_days_between(paused_since,
    resumed)`` (working days d with paused_since < d <= resumed) to
    ``state.paused_working_days``; ``lifecycle.apply`` keeps that bookkeeping. A deadline is
    shifted by the paused working days: ``add_working_days(deadline, paused)``.

On time
    The finish date is the local date the dossier was processed; else returned; else stopped
    or refused. A withdrawn dossier is not judged (``None``). It is on time when the finish
    date is no later than the effective deadline. With ``late_if_repeated_supplement`` (the
    Decision 766 reading) more than one supplement request counts as late.

Alerts
    For the dossier deadline and for the current (uncompleted) step's deadline:
    DUE_SOON when 0 < working days left <= ``due_soon_working_days`` (days left are the
    working days d with today < d <= deadline, so on the deadline day itself nothing is due
    "soon" and nothing is overdue yet); OVERDUE when today > deadline; APOLOGY_OWED (dossier
    scope only) when overdue and no apology slip was issued after the deadline passed. An
    apology moves the appointment date, hence the deadline, hence the alert keys: a dossier
    that becomes late again owes a new apology. No alerts while the clock is stopped for a
    supplement or once the dossier is finished (processed or terminal). Keys are
    ``f"{kind}:{scope}:{step_no or '-'}:{deadline}"``; an alert whose key is in
    ``state.alerts_emitted`` is not returned again, and ``mark_emitted`` records the keys.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

from hub.domain.events import local_date
from hub.domain.lifecycle import DossierState, WorkingDays, evolve
from hub.domain.status import DossierStatus

__all__ = [
    "Alert",
    "AlertKind",
    "AlertScope",
    "alert_key",
    "alert_key_prefix",
    "due_alerts",
    "effective_deadline",
    "effective_deadline_on",
    "finish_date",
    "mark_emitted",
    "next_alert_date",
    "on_time",
    "paused_working_days_on",
    "shift",
    "step_deadline_on",
]


class AlertKind(StrEnum):
    DUE_SOON = "DUE_SOON"
    OVERDUE = "OVERDUE"
    APOLOGY_OWED = "APOLOGY_OWED"


class AlertScope(StrEnum):
    DOSSIER = "DOSSIER"
    STEP = "STEP"


@dataclass(frozen=True, slots=True)
class Alert:
    dossier_code: str
    kind: AlertKind
    scope: AlertScope
    step_no: int | None
    deadline: date
    #: ``alert_key`` of the above, made once: it is asked for three times an alert
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = alert_key(self.kind, self.scope, self.step_no, self.deadline)
        object.__setattr__(self, "key", key)


#: "KIND:SCOPE:" for every kind and scope, built once (keys are made for every event).
_KEY_PREFIX = {(k, s): f"{k.value}:{s.value}:" for k in AlertKind for s in AlertScope}


def alert_key_prefix(kind: AlertKind, scope: AlertScope) -> str:
    """What every key of ``kind`` and ``scope`` starts with."""
    return _KEY_PREFIX[kind, scope]


def alert_key(kind: AlertKind, scope: AlertScope, step_no: int | None, deadline: date) -> str:
    """``f"{kind}:{scope}:{step_no or '-'}:{deadline}"``, the key ``alerts_emitted`` holds."""
    step = "-" if step_no is None else str(step_no)
    return f"{_KEY_PREFIX[kind, scope]}{step}:{deadline.isoformat()}"


def shift(calendar: WorkingDays, deadline: date, working_days: int) -> date:
    """``deadline`` pushed back by ``working_days`` (unchanged for 0 or less)."""
    if working_days <= 0:
        return deadline
    return calendar.add_working_days(deadline, working_days)


def paused_working_days_on(state: DossierState, calendar: WorkingDays, today: date) -> int:
    """Working days paused so far: completed rounds plus the running one up to ``today``."""
    paused = state.paused_working_days
    if state.paused_since is not None:
        paused += max(0, calendar.working_days_between(state.paused_since, today))
    return paused


def effective_deadline(state: DossierState, calendar: WorkingDays) -> date | None:
    """The appointment date shifted by the working days of completed supplement rounds."""
    if state.appointment_date is None:
        return None
    return shift(calendar, state.appointment_date, state.paused_working_days)


def effective_deadline_on(state: DossierState, calendar: WorkingDays, today: date) -> date | None:
    """As ``effective_deadline``, also counting a running pause up to ``today``."""
    if state.appointment_date is None:
        return None
    return shift(calendar, state.appointment_date, paused_working_days_on(state, calendar, today))


def step_deadline_on(state: DossierState, calendar: WorkingDays, today: date) -> date | None:
    """The current step's deadline shifted by the pauses since the step started."""
    step = state.current_step
    if step is None or step.step_deadline is None:
        return None
    paused = paused_working_days_on(state, calendar, today) - step.paused_base
    return shift(calendar, step.step_deadline, paused)


def finish_date(state: DossierState) -> date | None:
    """Processed; else returned; else stopped/refused (local date). None otherwise."""
    if state.processed_at is not None:
        return local_date(state.processed_at)
    if state.returned_at is not None:
        return local_date(state.returned_at)
    if state.finished_at is not None and state.status in (
        DossierStatus.STOPPED,
        DossierStatus.NOT_RECEIVED,
    ):
        return local_date(state.finished_at)
    return None


def on_time(
    state: DossierState, calendar: WorkingDays, *, late_if_repeated_supplement: bool = False
) -> bool | None:
    """Whether the dossier finished by its effective deadline; None while unfinished (or
    withdrawn, or without an appointment date)."""
    finished = finish_date(state)
    if finished is None:
        return None
    deadline = effective_deadline_on(state, calendar, finished)
    if deadline is None:
        return None
    if late_if_repeated_supplement and state.supplement_requests > 1:
        return False
    return finished <= deadline


def due_alerts(
    state: DossierState, today: date, calendar: WorkingDays, due_soon_working_days: int = 1
) -> list[Alert]:
    """Alerts due for ``today`` that were not emitted before (see the module docstring)."""
    if state.is_finished or state.is_paused or state.status is DossierStatus.SUPPLEMENT_REQUESTED:
        return []
    found: list[Alert] = []
    deadline = effective_deadline(state, calendar)
    if deadline is not None:
        _check_deadline(
            found, state, today, calendar, due_soon_working_days, AlertScope.DOSSIER, None, deadline
        )
    step = state.current_step
    if step is not None and step.completed_at is None:
        step_deadline = step_deadline_on(state, calendar, today)
        if step_deadline is not None:
            _check_deadline(
                found,
                state,
                today,
                calendar,
                due_soon_working_days,
                AlertScope.STEP,
                step.step_no,
                step_deadline,
            )
    emitted = state.alerts_emitted
    return [alert for alert in found if alert.key not in emitted] if emitted else found


def _check_deadline(
    found: list[Alert],
    state: DossierState,
    today: date,
    calendar: WorkingDays,
    due_soon_working_days: int,
    scope: AlertScope,
    step_no: int | None,
    deadline: date,
) -> None:
    """Append to ``found`` the alerts one deadline raises ``today`` (a plain function rather
    than a closure: it runs whenever an alert may be due)."""
    if today > deadline:
        found.append(Alert(state.dossier_code, AlertKind.OVERDUE, scope, step_no, deadline))
        if scope is AlertScope.DOSSIER and not any(d > deadline for d in state.apology_dates):
            found.append(
                Alert(state.dossier_code, AlertKind.APOLOGY_OWED, scope, step_no, deadline)
            )
    elif 0 < calendar.working_days_between(today, deadline) <= due_soon_working_days:
        found.append(Alert(state.dossier_code, AlertKind.DUE_SOON, scope, step_no, deadline))


def mark_emitted(state: DossierState, alerts: Iterable[Alert]) -> DossierState:
    """The state with the alerts' keys recorded, so they are not emitted again."""
    keys = {alert.key for alert in alerts}
    if keys <= state.alerts_emitted:
        return state
    return evolve(state, alerts_emitted=state.alerts_emitted | keys)


def next_alert_date(
    state: DossierState, calendar: WorkingDays, due_soon_working_days: int = 1
) -> date | None:
    """The earliest local date on which ``due_alerts(state, that date, calendar,
    due_soon_working_days)`` returns an alert; None when it never will for this state (finished,
    clock stopped for a supplement, no deadline, or every alert already emitted).

    The state alone decides: while the dossier is not paused, its deadlines do not move with
    the date asked about, so each alert's first day is known in advance. For a deadline D:
    DUE_SOON from the day with exactly ``due_soon_working_days`` working days left up to D
    (the (n+1)-th working day counting back from D) until the last working day before it;
    OVERDUE and APOLOGY_OWED from the day after D. Time only moves forward: once the
    OVERDUE alert of D was emitted, D's DUE_SOON (if it was missed) is never due again. The
    date may lie in the past (an alert already due): the caller fires it at once. A new
    state (any applied event) needs a new answer. Raises
    :class:`~hub.domain.calendar.CalendarError` like ``due_alerts`` for dates the calendar
    does not cover.
    """
    if state.is_finished or state.is_paused or state.status is DossierStatus.SUPPLEMENT_REQUESTED:
        return None
    first: date | None = None
    deadline = effective_deadline(state, calendar)
    if deadline is not None:
        first = _first_alert_day(
            state, calendar, due_soon_working_days, AlertScope.DOSSIER, None, deadline
        )
    step = state.current_step
    if step is not None and step.completed_at is None and step.step_deadline is not None:
        paused = state.paused_working_days - step.paused_base  # no pause is running here
        day = _first_alert_day(
            state,
            calendar,
            due_soon_working_days,
            AlertScope.STEP,
            step.step_no,
            shift(calendar, step.step_deadline, paused),
        )
        if day is not None and (first is None or day < first):
            first = day
    return first


def _first_alert_day(
    state: DossierState,
    calendar: WorkingDays,
    due_soon_working_days: int,
    scope: AlertScope,
    step_no: int | None,
    deadline: date,
) -> date | None:
    """``next_alert_date`` for one deadline (a plain function: it runs for every event)."""
    emitted = state.alerts_emitted
    if emitted:  # the keys are only built when some alert was emitted
        tail = f"{'-' if step_no is None else step_no}:{deadline.isoformat()}"
        overdue_pending = _KEY_PREFIX[AlertKind.OVERDUE, scope] + tail not in emitted
    else:
        overdue_pending = True
    first: date | None = None
    if overdue_pending or (
        scope is AlertScope.DOSSIER
        and _KEY_PREFIX[AlertKind.APOLOGY_OWED, scope] + tail not in emitted
        and not any(d > deadline for d in state.apology_dates)
    ):
        first = deadline + _ONE_DAY
    # An OVERDUE already out means the clock has passed the deadline, and with it the
    # DUE_SOON window: a due-soon alert missed then can never fall due (without this, a
    # late dossier would be taken up by every run of the deadline clock, for ever).
    if (
        due_soon_working_days >= 1
        and overdue_pending
        and (not emitted or _KEY_PREFIX[AlertKind.DUE_SOON, scope] + tail not in emitted)
    ):
        soon = _nth_working_day_back(calendar, deadline, due_soon_working_days + 1)
        if soon is not None and (first is None or soon < first):
            first = soon
    return first


_ONE_DAY = timedelta(days=1)


#: How far back to look for working days before a deadline: a run of days off (Tết) is at
#: most a couple of weeks, so n working days lie within 7 * (n + 3) calendar days.
#: Cached: a function of the (immutable) calendar and its arguments alone, asked about the
#: same few hundred deadlines for every event of the province's open dossiers.
@functools.lru_cache(maxsize=1 << 12)
def _nth_working_day_back(calendar: WorkingDays, deadline: date, n: int) -> date | None:
    """The n-th working day counting back from ``deadline`` (itself first if a working day)."""
    day = deadline
    for _ in range(7 * (n + 3)):
        if calendar.is_working_day(day):
            n -= 1
            if n == 0:
                return day
        day -= timedelta(days=1)
    return None
