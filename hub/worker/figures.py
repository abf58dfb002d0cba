"""The worker's in-memory indexes over the dossiers it holds: figures and open deadlines.

Both are functions of the table's states (see ``hub.domain.standing``): updated with every
state written and rebuilt from the table after recovery, so they never drift from the view.

Memory: the states themselves live in the table (RocksDB), not here. Per open dossier the
view keeps its row for the search (``rows``: a tuple of strings shared by every dossier with
the same agency, status, procedure or date, interned) and its entry in ``open_deadlines``: a
few hundred bytes (``python -m bench.profile --memory``). A finished dossier's row goes to
the ``archive`` (``hub.worker.archive``: on disk in a worker), so memory follows the open
dossiers, not every dossier ever held. Figures are per (agency, procedure, channel) and
weekly verdicts per (agency, week), not per dossier.
"""

from __future__ import annotations

import heapq
import operator
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from hub.domain.deadlines import finish_date
from hub.domain.lifecycle import DossierState, WorkingDays
from hub.domain.standing import same_standing, standing_values
from hub.domain.status import FINISHED_STATUSES
from hub.domain.supervision import FigureKey, Figures
from hub.worker.archive import MemoryArchive, RowArchive
from hub.worker.province import province_json, summary_json
from hub.worker.query import OverdueQuery, SearchQuery

__all__ = ["LocalView", "Row", "agency_summary", "province_part"]

#: a dossier's row in the view: (agency holding it, status, procedure, channel, date
#: received (or submitted), deadline ('' once finished or without one), every agency that
#: held it). Plain tuples: a million of them must stay small.
Row = tuple[str, str, str, str, str, str, tuple[str, ...]]

#: the status values whose rows are in the archive (``DossierState.is_finished``)
_FINISHED = frozenset(status.value for status in FINISHED_STATUSES)

#: the verdict positions in ``standing_values``' tuple (``Figures``' field order)
_ON_TIME = list(Figures.__struct_fields__).index("finished_on_time")
_LATE = list(Figures.__struct_fields__).index("finished_late")


@dataclass
class LocalView:
    calendar: WorkingDays
    late_if_repeated_supplement: bool = False
    figures: dict[FigureKey, Figures] = field(default_factory=dict)
    #: dossier code -> (agency, deadline) for open dossiers with a deadline
    open_deadlines: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: (agency, unit) -> steps completed after their deadline (``DossierState.late_steps``)
    late_steps: dict[tuple[str, str], int] = field(default_factory=dict)
    #: open dossier's code -> its Row, for the search
    rows: dict[str, Row] = field(default_factory=dict)
    #: finished dossiers' rows, for the search
    archive: RowArchive = field(default_factory=MemoryArchive)
    #: (agency, Monday of the week it finished) -> [finished on time, finished late]
    weekly: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    _dates: dict[date, str] = field(default_factory=dict, repr=False)

    def _standing(self, state: DossierState) -> tuple[FigureKey, tuple[int, ...]]:
        return standing_values(
            state, self.calendar, late_if_repeated_supplement=self.late_if_repeated_supplement
        )

    def _add(self, key: FigureKey, figures: Figures) -> None:
        current = self.figures.get(key)
        total = figures if current is None else current + figures
        if total.is_zero:
            self.figures.pop(key, None)
        else:
            self.figures[key] = total

    def replace(self, before: DossierState | None, after: DossierState) -> None:
        # late steps are only ever appended: the new ones are those after the old count
        late = after.late_steps
        if late:
            for step in late[len(before.late_steps) if before is not None else 0 :]:
                unit = (step.agency_code, step.unit)
                self.late_steps[unit] = self.late_steps.get(unit, 0) + 1
        if before is None:
            key, values = self._standing(after)
            self._add(key, Figures(*map(int, values)))
            self._week(after, key, values, 1)
        elif same_standing(before, after):
            # no field the figures, the row or the deadline read has changed (most events:
            # agency, status, procedure, channel and the dates are all standing fields)
            return
        else:
            key, values = self._standing(after)
            old_key, old = self._standing(before)
            if old_key != key:
                self._add(old_key, -Figures(*map(int, old)))
                self._add(key, Figures(*map(int, values)))
            elif old != values:  # most events change no figure: nothing to book then
                self._add(key, Figures(*map(operator.sub, values, old)))
            if old[_ON_TIME] != values[_ON_TIME] or old[_LATE] != values[_LATE]:
                self._week(before, old_key, old, -1)
                self._week(after, key, values, 1)
        code = after.dossier_code
        if after.is_finished or after.appointment_date is None:
            self.open_deadlines.pop(code, None)
            deadline = ""
        else:
            deadline = self._iso(after.appointment_date)
            self.open_deadlines[code] = (sys.intern(after.agency_code), deadline)
        row = self._row(after, deadline)
        if after.is_finished:
            self.rows.pop(code, None)
            self.archive.put(code, row)
        else:
            if before is not None and before.is_finished:
                self.archive.delete(code)
            self.rows[code] = row

    def _row(self, state: DossierState, deadline: str) -> Row:
        came = state.received_at or state.submitted_at
        holders = state.handled_by if state.agency_code in state.handled_by else (
            *state.handled_by, state.agency_code,
        )  # fmt: skip
        return (
            sys.intern(state.agency_code),
            state.status.value,
            sys.intern(state.procedure_code or ""),
            state.channel.value,
            self._iso(came.date()) if came is not None else "",
            deadline,
            tuple(map(sys.intern, holders)),
        )

    def _week(
        self, state: DossierState, key: FigureKey, values: tuple[int, ...], sign: int
    ) -> None:
        """Book a finished dossier's verdict in the week it finished (the page's trend)."""
        if not (values[_ON_TIME] or values[_LATE]):
            return
        finished = finish_date(state)
        if finished is None:
            return
        monday = self._iso(finished - timedelta(days=finished.weekday()))
        counts = self.weekly.setdefault((key.agency_code, monday), [0, 0])
        counts[0 if values[_ON_TIME] else 1] += sign
        if counts == [0, 0]:
            del self.weekly[(key.agency_code, monday)]

    # --- questions a worker answers for the dossiers it holds -----------------------------

    def overdue(
        self, query: OverdueQuery, today: str, limit: int
    ) -> tuple[int, list[tuple[str, str, str, str, str]]]:
        """How many open dossiers are past their deadline as ``query`` asks, and the first
        ``limit`` of them, oldest deadline first: (deadline, code, agency, procedure,
        channel). Only the first ``limit`` are ordered (a page needs no more)."""
        rows = self.rows
        found = []
        for code, (holder, deadline) in list(self.open_deadlines.items()):
            if deadline >= today:
                continue
            row = rows.get(code)
            if row is not None and query.matches(holder, row[2], row[3], deadline):
                found.append((deadline, code, holder, row[2], row[3]))
        return len(found), heapq.nsmallest(limit, found)

    def search(
        self, query: SearchQuery, scope: str | None, limit: int
    ) -> tuple[int, list[tuple[str, Row]]]:
        """How many dossiers ``query`` finds, and the first ``limit`` of them, newest received
        first: (code, row); ``scope``: only those that agency holds or held. Open dossiers
        are read from memory, finished ones from the archive; a status names which."""
        status = query.status
        found = []
        if status is None or status not in _FINISHED:
            found = _matching(list(self.rows.items()), query, scope)
        if status is None or status in _FINISHED:
            found += _matching(
                self.archive.items(query.code or "", query.received_from, query.received_to),
                query,
                scope,
            )
        return len(found), heapq.nlargest(limit, found, key=_newest_first)

    def _iso(self, day: date) -> str:
        # one string per distinct deadline, shared by every dossier due that day
        text = self._dates.get(day)
        if text is None:
            text = self._dates[day] = day.isoformat()
        return text

    def rebuild(self, states: Iterable[DossierState]) -> int:
        self.figures.clear()
        self.open_deadlines.clear()
        self.late_steps.clear()
        self.rows.clear()
        self.archive.clear()
        self.weekly.clear()
        count = 0
        for state in states:
            self.replace(None, state)
            count += 1
        return count


def agency_summary(
    figures: Mapping[FigureKey, Figures],
    agency: str,
    late_steps: Mapping[tuple[str, str], int] | None = None,
) -> dict[str, Any]:
    """An agency's figures over the dossiers in ``figures``: in all, per procedure (the
    per-procedure breakdown Prometheus does not carry: ``hub.worker.metrics``), and its
    steps completed late per unit (``LocalView.late_steps``)."""
    total = Figures()
    by_procedure: dict[str, Figures] = {}
    for key, value in figures.items():
        if key.agency_code == agency:
            total = total + value
            procedure = key.procedure_code
            by_procedure[procedure] = by_procedure.get(procedure, Figures()) + value
    late_by_unit = {unit: n for (holder, unit), n in (late_steps or {}).items() if holder == agency}
    return summary_json(agency, total, by_procedure, late_by_unit)


def province_part(view: LocalView, weeks: int, today: date) -> dict[str, Any]:
    """Every agency's figures over the dossiers in ``view`` (``hub.worker.province`` adds the
    workers' parts up): in all, late steps per unit, and on-time/late per week finished over
    the last ``weeks`` weeks."""
    by_agency: dict[str, Figures] = {}
    for key, value in list(view.figures.items()):
        by_agency[key.agency_code] = by_agency.get(key.agency_code, Figures()) + value
    late: dict[str, dict[str, int]] = {}
    for (agency, unit), count in list(view.late_steps.items()):
        late.setdefault(agency, {})[unit] = count
    first = (today - timedelta(days=today.weekday() + 7 * (weeks - 1))).isoformat()
    weekly: dict[str, dict[str, list[int]]] = {}
    for (agency, monday), counts in list(view.weekly.items()):
        if monday >= first:
            weekly.setdefault(agency, {})[monday] = list(counts)
    return province_json(by_agency, late, weekly)


def _matching(
    rows: Iterable[tuple[str, Row]], query: SearchQuery, scope: str | None
) -> list[tuple[str, Row]]:
    return [
        (code, row)
        for code, row in rows
        if (query.code is None or code.startswith(query.code))
        and (query.agency is None or row[0] == query.agency)
        and (query.status is None or row[1] == query.status)
        and (query.procedure is None or row[2] == query.procedure)
        and (query.received_from is None or row[4] >= query.received_from)
        and (query.received_to is None or row[4] <= query.received_to)
        and (scope is None or scope in row[6])
    ]


def _newest_first(item: tuple[str, Row]) -> tuple[str, str]:
    return item[1][4], item[0]
