"""The worker's in-memory indexes over the dossiers it holds: figures and open deadlines.

Both are functions of the table's states (see ``hub.domain.standing``): updated with every
state written and rebuilt from the table after recovery, so they never drift from the view.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from hub.domain.lifecycle import DossierState, WorkingDays
from hub.domain.standing import negate, standing
from hub.domain.supervision import FigureKey, Figures

__all__ = ["LocalView"]


@dataclass
class LocalView:
    calendar: WorkingDays
    late_if_repeated_supplement: bool = False
    figures: dict[FigureKey, Figures] = field(default_factory=dict)
    #: dossier code -> (agency, deadline) for open dossiers with a deadline
    open_deadlines: dict[str, tuple[str, str]] = field(default_factory=dict)

    def _standing(self, state: DossierState) -> tuple[FigureKey, Figures]:
        return standing(
            state, self.calendar, late_if_repeated_supplement=self.late_if_repeated_supplement
        )

    def _add(self, key: FigureKey, figures: Figures) -> None:
        total = self.figures.get(key, Figures()) + figures
        if total.is_zero:
            self.figures.pop(key, None)
        else:
            self.figures[key] = total

    def replace(self, before: DossierState | None, after: DossierState) -> None:
        if before is not None:
            key, figures = self._standing(before)
            self._add(key, negate(figures))
        key, figures = self._standing(after)
        self._add(key, figures)
        if after.is_finished or after.appointment_date is None:
            self.open_deadlines.pop(after.dossier_code, None)
        else:
            self.open_deadlines[after.dossier_code] = (
                after.agency_code,
                after.appointment_date.isoformat(),
            )

    def rebuild(self, states: Iterable[DossierState]) -> int:
        self.figures.clear()
        self.open_deadlines.clear()
        count = 0
        for state in states:
            self.replace(None, state)
            count += 1
        return count
