"""Working-day calendar for public servants (cán bộ, công chức, viên chức).

Processing deadlines for administrative procedures are counted in working days, and which
days are worked is decided each year by the government (public holidays, swapped days off,
make-up Saturdays). The calendar is therefore data per year (:class:`YearCalendar`, loaded
from reference files), never a formula, and a date outside the shipped years is an error
rather than a guess: a wrong appointment date is worse than a loud failure.

:class:`WorkingCalendar` precomputes, for the whole covered span, a cumulative count of
working days and the sorted list of working-day ordinals, so that adding working days and
counting them between two dates are O(1) lookups: the hub calls them for every event.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

__all__ = ["CalendarError", "WorkingCalendar", "YearCalendar"]

_SATURDAY = 5
_SUNDAY = 6


class CalendarError(Exception):
    """A date the calendar cannot answer for (year not covered) or an inconsistent calendar."""


@dataclass(frozen=True)
class YearCalendar:
    """The official days off and make-up working weekends of one year.

    ``days_off`` holds public holidays and swapped days off (they may fall on weekends, in
    which case listing them changes nothing); ``working_weekends`` holds Saturdays/Sundays
    that are worked to make up for a swapped day. ``source`` names the official document.
    """

    year: int
    days_off: frozenset[date]
    working_weekends: frozenset[date]
    source: str


def _is_weekend(d: date) -> bool:
    return d.weekday() in (_SATURDAY, _SUNDAY)


def _format_years(years: Iterable[int]) -> str:
    return ", ".join(str(y) for y in sorted(years)) or "none"


class WorkingCalendar:
    """Answers working-day questions for a contiguous range of years.

    Conventions (those of an appointment date, NgayHenTra): the day a dossier is received
    never counts, whether or not it is a working day; ``add_working_days(start, n)`` is the
    n-th working day strictly after ``start``; ``working_days_between(a, b)`` counts the
    working days ``d`` with ``a < d <= b``. The two are inverse:
    ``working_days_between(s, add_working_days(s, n)) == n``.
    """

    __slots__ = ("_by_year", "_cum", "_first", "_last", "_work_ords")

    def __init__(self, years: Mapping[int, YearCalendar]) -> None:
        if not years:
            raise CalendarError("a working calendar needs at least one year")
        ordered = sorted(years)
        for expected, actual in zip(range(ordered[0], ordered[-1] + 1), ordered, strict=False):
            if expected != actual:
                raise CalendarError(
                    f"calendar years must be contiguous: {expected} is missing "
                    f"(years given: {_format_years(ordered)})"
                )
        for key, cal in years.items():
            self._check_year(key, cal)
        self._by_year: dict[int, YearCalendar] = dict(years)
        self._first = date(ordered[0], 1, 1).toordinal()
        self._last = date(ordered[-1], 12, 31).toordinal()

        off = frozenset(d.toordinal() for cal in years.values() for d in cal.days_off)
        extra = frozenset(d.toordinal() for cal in years.values() for d in cal.working_weekends)
        # _cum[i] = number of working days with ordinal < self._first + i.
        cum = [0] * (self._last - self._first + 2)
        work: list[int] = []
        running = 0
        for i, ordinal in enumerate(range(self._first, self._last + 1)):
            cum[i] = running
            weekend = (ordinal - 1) % 7 >= _SATURDAY  # date.fromordinal(1) is a Monday
            if (ordinal in extra) if weekend else (ordinal not in off):
                running += 1
                work.append(ordinal)
        cum[-1] = running
        self._cum = cum
        self._work_ords = work

    @staticmethod
    def _check_year(key: int, cal: YearCalendar) -> None:
        if key != cal.year:
            raise CalendarError(f"calendar for {cal.year} registered under year {key}")
        for d in cal.days_off | cal.working_weekends:
            if d.year != cal.year:
                raise CalendarError(f"{d.isoformat()} is listed in the calendar of {cal.year}")
        for d in cal.working_weekends:
            if not _is_weekend(d):
                raise CalendarError(f"working weekend {d.isoformat()} is not a Saturday/Sunday")
        both = cal.days_off & cal.working_weekends
        if both:
            first = min(both).isoformat()
            raise CalendarError(f"{first} is both a day off and a working weekend")

    # ------------------------------------------------------------------ coverage
    @property
    def years(self) -> tuple[int, ...]:
        """The covered years, ascending."""
        return tuple(sorted(self._by_year))

    def covers(self, year: int) -> bool:
        """Whether ``year`` has official data in this calendar."""
        return year in self._by_year

    def year_calendar(self, year: int) -> YearCalendar:
        """The data of one covered year (raises :class:`CalendarError` otherwise)."""
        try:
            return self._by_year[year]
        except KeyError:
            raise self._not_covered(year) from None

    def _not_covered(self, year: int) -> CalendarError:
        return CalendarError(
            f"year {year} is not covered by the working calendar "
            f"(covered years: {_format_years(self._by_year)})"
        )

    def _index(self, d: date) -> int:
        ordinal = d.toordinal()
        if ordinal < self._first or ordinal > self._last:
            raise self._not_covered(d.year)
        return ordinal - self._first

    # ------------------------------------------------------------------ queries
    def is_working_day(self, d: date) -> bool:
        """Mon–Fri unless a day off; Sat/Sun only when a make-up working day."""
        i = self._index(d)
        return self._cum[i + 1] != self._cum[i]

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day strictly after ``start`` (``start`` itself never counts).

        ``n == 0`` returns ``start`` unchanged. Raises :class:`CalendarError` if ``start``
        is outside the covered years or the result would fall beyond them.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return start
        done = self._cum[self._index(start) + 1]  # working days on or before start
        target = done + n - 1
        if target >= len(self._work_ords):
            raise CalendarError(
                f"{n} working days after {start.isoformat()} falls after the last covered "
                f"year {max(self._by_year)} (covered years: {_format_years(self._by_year)})"
            )
        return date.fromordinal(self._work_ords[target])

    def working_days_between(self, a: date, b: date) -> int:
        """Number of working days ``d`` with ``a < d <= b`` (0 when ``b <= a``)."""
        if b <= a:
            return 0
        return self._cum[self._index(b) + 1] - self._cum[self._index(a) + 1]

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after ``d``."""
        return self.add_working_days(d, 1)

    def previous_working_day(self, d: date) -> date:
        """The last working day strictly before ``d``."""
        i = bisect_right(self._work_ords, d.toordinal() - 1) - 1
        self._index(d)
        if i < 0:
            raise self._not_covered(d.year - 1)
        return date.fromordinal(self._work_ords[i])
