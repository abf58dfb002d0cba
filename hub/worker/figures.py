"""The worker's in-memory indexes over the dossiers it holds: figures and open deadlines.

Both are functions of the table's states (see ``hub.domain.standing``): updated with every
state written and rebuilt from the table after recovery, so they never drift from the view.

Memory: the states themselves live in the table (RocksDB), not here. Per dossier the view
keeps only an open dossier's entry in ``open_deadlines``: its code (the dict key), and a
tuple of two strings shared by every dossier with the same agency or the same deadline
(interned), so about 200 bytes an open dossier (``python -m bench.profile --memory``);
figures are per (agency, procedure, channel), not per dossier.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from hub.domain.lifecycle import DossierState, WorkingDays
from hub.domain.standing import same_standing, standing_values
from hub.domain.supervision import FigureKey, Figures
from hub.worker.province import summary_json

__all__ = ["LocalView", "agency_summary"]


@dataclass
class LocalView:
    calendar: WorkingDays
    late_if_repeated_supplement: bool = False
    figures: dict[FigureKey, Figures] = field(default_factory=dict)
    #: dossier code -> (agency, deadline) for open dossiers with a deadline
    open_deadlines: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: (agency, unit) -> steps completed after their deadline (``DossierState.late_steps``)
    late_steps: dict[tuple[str, str], int] = field(default_factory=dict)
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
        elif same_standing(before, after):
            pass  # no field the figures read has changed (most events): nothing to book
        else:
            key, values = self._standing(after)
            old_key, old = self._standing(before)
            if old_key != key:
                self._add(old_key, -Figures(*map(int, old)))
                self._add(key, Figures(*map(int, values)))
            elif old != values:  # most events change no figure: nothing to book then
                self._add(key, Figures(*map(operator.sub, values, old)))
        if after.is_finished or after.appointment_date is None:
            self.open_deadlines.pop(after.dossier_code, None)
        else:
            self.open_deadlines[after.dossier_code] = (
                sys.intern(after.agency_code),
                self._iso(after.appointment_date),
            )

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
