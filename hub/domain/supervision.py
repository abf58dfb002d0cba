"""Supervision figures per (agency, procedure, channel): pure aggregation.

Labels are bounded on purpose: agency code, procedure code (``"unknown"`` until known) and
channel, never a dossier code or anything personal.

What is counted (all counters only grow, except the ``in_progress`` gauge):

* ``submitted_total`` / ``online``: a dossier first seen (by submission or desk receipt);
  ``online`` when its channel is ONLINE.
* ``received``, ``processed``, ``returned``, ``refused``, ``withdrawn_stopped``: the dossier
  entered RECEIVED, PROCESSED, RESULT_RETURNED, NOT_RECEIVED, WITHDRAWN or STOPPED.
* ``online_electronic_result``: an online dossier processed with an electronic result.
* ``in_progress`` (gauge): dossiers in RECEIVED, PROCESSING, SUPPLEMENT_REQUESTED or
  FINANCIAL_OBLIGATION_REQUESTED. ``delta_for`` removes the ``before`` snapshot under its
  labels and adds the ``after`` one under its labels, so a transfer or a merger moves the
  dossier to the new agency's gauge.
* ``finished_on_time`` / ``finished_late``: when the dossier first gets a finish date
  (see ``deadlines.finish_date``) and the caller's ``on_time`` judgement is not None.
* ``overdue``: dossiers that went past their dossier deadline (first OVERDUE dossier alert;
  ``delta_for_alert``).
* ``ratings_count`` / ``ratings_sum`` / ``complaints``: feedback (``delta_for_feedback``).

Other flow counters are booked under the labels in force when the event was applied.

Formulas (fractions in 0..1; None when there is nothing to divide):

* ``on_time_rate`` = finished_on_time / (finished_on_time + finished_late)
* ``online_share`` = online / submitted_total
* ``electronic_result_share`` = online_electronic_result / online
* ``satisfaction`` (Decision 766 style, simplified): when ratings exist, the mean score
  mapped linearly from 1..5 to 0..1, i.e. (mean - 1) / 4; otherwise
  max(0, 1 - overdue_rate - complaint_share) where overdue_rate = 1 - on_time_rate (0 if no
  dossier finished) and complaint_share = min(1, complaints / submitted_total).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec

from hub.domain.deadlines import Alert, AlertKind, AlertScope, finish_date
from hub.domain.events import Channel, ComplaintFiled, ServiceRated
from hub.domain.lifecycle import DossierState, StatusChange
from hub.domain.status import DossierStatus

__all__ = [
    "OPEN_STATUSES",
    "UNKNOWN_PROCEDURE",
    "FigureKey",
    "Figures",
    "SupervisionDelta",
    "delta_for",
    "delta_for_alert",
    "delta_for_feedback",
    "figure_key",
    "merge",
    "total",
]

UNKNOWN_PROCEDURE = "unknown"

OPEN_STATUSES: frozenset[DossierStatus] = frozenset(
    {
        DossierStatus.RECEIVED,
        DossierStatus.PROCESSING,
        DossierStatus.SUPPLEMENT_REQUESTED,
        DossierStatus.FINANCIAL_OBLIGATION_REQUESTED,
    }
)

_ENTERED: Mapping[DossierStatus, str] = {
    DossierStatus.RECEIVED: "received",
    DossierStatus.PROCESSED: "processed",
    DossierStatus.RESULT_RETURNED: "returned",
    DossierStatus.NOT_RECEIVED: "refused",
    DossierStatus.WITHDRAWN: "withdrawn_stopped",
    DossierStatus.STOPPED: "withdrawn_stopped",
}


class FigureKey(NamedTuple):
    agency_code: str
    procedure_code: str
    channel: str

    def as_str(self) -> str:
        return "|".join(self)

    @classmethod
    def from_str(cls, text: str) -> FigureKey:
        agency, procedure, channel = text.split("|")
        return cls(agency, procedure, channel)


def figure_key(state: DossierState) -> FigureKey:
    # ``tuple.__new__`` directly: a named tuple's own ``__new__`` is Python code, and the
    # local view asks for two keys per event
    return _new_key(
        FigureKey,
        (state.agency_code, state.procedure_code or UNKNOWN_PROCEDURE, state.channel.value),
    )


_new_key = tuple.__new__


class Figures(msgspec.Struct, frozen=True, gc=False):
    # a Struct: built in C (the local view builds one or two on most events), not by a
    # generated Python ``__init__`` of fifteen keyword arguments
    submitted_total: int = 0
    online: int = 0
    received: int = 0
    in_progress: int = 0
    processed: int = 0
    returned: int = 0
    overdue: int = 0
    refused: int = 0
    withdrawn_stopped: int = 0
    finished_on_time: int = 0
    finished_late: int = 0
    online_electronic_result: int = 0
    ratings_count: int = 0
    ratings_sum: int = 0
    complaints: int = 0

    def __add__(self, other: Figures) -> Figures:
        # positional and C-level: the local view adds figures twice per event
        return Figures(*map(operator.add, _values(self), _values(other)))

    def __neg__(self) -> Figures:
        return Figures(*map(operator.neg, _values(self)))

    @property
    def is_zero(self) -> bool:
        return not any(_values(self))

    @property
    def on_time_rate(self) -> float | None:
        finished = self.finished_on_time + self.finished_late
        return self.finished_on_time / finished if finished else None

    @property
    def online_share(self) -> float | None:
        return self.online / self.submitted_total if self.submitted_total else None

    @property
    def electronic_result_share(self) -> float | None:
        return self.online_electronic_result / self.online if self.online else None

    @property
    def satisfaction(self) -> float | None:
        if self.ratings_count:
            mean = self.ratings_sum / self.ratings_count
            return min(1.0, max(0.0, (mean - 1) / 4))
        on_time = self.on_time_rate
        if on_time is None and not self.submitted_total:
            return None
        overdue_rate = 0.0 if on_time is None else 1.0 - on_time
        complaint_share = (
            min(1.0, self.complaints / self.submitted_total) if self.submitted_total else 0.0
        )
        return max(0.0, 1.0 - overdue_rate - complaint_share)

    def to_dict(self) -> dict[str, int]:
        return {k: v for k, v in msgspec.structs.asdict(self).items() if v}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> Figures:
        return cls(**{name: int(data.get(name, 0)) for name in cls.__struct_fields__})


_values = operator.attrgetter(*Figures.__struct_fields__)


@dataclass(frozen=True, slots=True)
class SupervisionDelta:
    """Changes to book, per label set. Empty when nothing counts."""

    changes: Mapping[FigureKey, Figures] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.changes


class _Builder:
    def __init__(self) -> None:
        self._acc: dict[FigureKey, dict[str, int]] = {}

    def add(self, key: FigureKey, name: str, amount: int = 1) -> None:
        counts = self._acc.setdefault(key, {})
        counts[name] = counts.get(name, 0) + amount

    def build(self) -> SupervisionDelta:
        changes = {key: Figures(**counts) for key, counts in self._acc.items()}
        return SupervisionDelta({k: v for k, v in changes.items() if not v.is_zero})


def delta_for(
    change: StatusChange, before: DossierState | None, after: DossierState, on_time: bool | None
) -> SupervisionDelta:
    """What one applied event changes in the figures (see the module docstring)."""
    out = _Builder()
    key = figure_key(after)
    if before is not None and before.status in OPEN_STATUSES:
        out.add(figure_key(before), "in_progress", -1)
    if after.status in OPEN_STATUSES:
        out.add(key, "in_progress", 1)
    if before is None:
        out.add(key, "submitted_total")
        if after.channel is Channel.ONLINE:
            out.add(key, "online")
    if change.status != change.previous and change.status in _ENTERED:
        out.add(key, _ENTERED[change.status])
        if (
            change.status is DossierStatus.PROCESSED
            and after.electronic_result
            and after.channel is Channel.ONLINE
        ):
            out.add(key, "online_electronic_result")
    newly_finished = finish_date(after) is not None and (
        before is None or finish_date(before) is None
    )
    if on_time is not None and newly_finished:
        out.add(key, "finished_on_time" if on_time else "finished_late")
    return out.build()


def delta_for_alert(alert: Alert, state: DossierState) -> SupervisionDelta:
    """``overdue`` + 1 the first time a dossier goes past its deadline. ``state`` is the state
    before ``mark_emitted``."""
    out = _Builder()
    prefix = f"{AlertKind.OVERDUE}:{AlertScope.DOSSIER}:"
    if (
        alert.kind is AlertKind.OVERDUE
        and alert.scope is AlertScope.DOSSIER
        and not any(k.startswith(prefix) for k in state.alerts_emitted)
    ):
        out.add(figure_key(state), "overdue")
    return out.build()


def delta_for_feedback(
    event: ServiceRated | ComplaintFiled, state: DossierState | None
) -> SupervisionDelta:
    """Ratings and complaints, booked under the dossier's labels (nothing if unknown)."""
    out = _Builder()
    if state is None:
        return out.build()
    key = figure_key(state)
    if isinstance(event, ServiceRated):
        out.add(key, "ratings_count")
        out.add(key, "ratings_sum", event.score)
    else:
        out.add(key, "complaints")
    return out.build()


def merge(
    figures: Mapping[FigureKey, Figures], delta: SupervisionDelta
) -> dict[FigureKey, Figures]:
    """A new mapping with the delta booked."""
    merged = dict(figures)
    for key, change in delta.changes.items():
        merged[key] = merged.get(key, Figures()) + change
    return merged


def total(figures: Iterable[Figures]) -> Figures:
    """Sum of several label sets (e.g. all procedures of one agency)."""
    result = Figures()
    for item in figures:
        result = result + item
    return result
