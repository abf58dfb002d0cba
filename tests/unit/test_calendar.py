"""Working-day calendar: official examples and properties."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain.calendar import CalendarError, WorkingCalendar, YearCalendar
from hub.reference import load_reference


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return load_reference().calendar


CAL = load_reference().calendar
FIRST = date(2025, 1, 1)
LAST = date(2027, 12, 31)
covered_dates = st.dates(min_value=FIRST, max_value=LAST - timedelta(days=400))


# ----------------------------------------------------------------- official examples
def test_tet_2026_days_are_not_working_days(cal: WorkingCalendar) -> None:
    for day in range(14, 23):  # nghỉ 14/02–22/02/2026
        assert not cal.is_working_day(date(2026, 2, day))
    assert cal.is_working_day(date(2026, 2, 13))
    assert cal.is_working_day(date(2026, 2, 23))


def test_tet_2025_swap_and_makeup_saturday(cal: WorkingCalendar) -> None:
    assert not cal.is_working_day(date(2025, 1, 27))  # swapped Monday
    assert cal.is_working_day(date(2025, 2, 8))  # make-up Saturday
    assert not cal.is_working_day(date(2025, 2, 15))  # an ordinary Saturday


def test_makeup_saturdays_2026_are_working_days(cal: WorkingCalendar) -> None:
    assert cal.is_working_day(date(2026, 1, 10))
    assert cal.is_working_day(date(2026, 8, 22))
    assert not cal.is_working_day(date(2026, 1, 2))
    assert not cal.is_working_day(date(2026, 8, 31))


def test_hung_kings_2026_sunday_gives_monday_off(cal: WorkingCalendar) -> None:
    assert not cal.is_working_day(date(2026, 4, 27))
    assert cal.is_working_day(date(2026, 4, 28))


def test_received_friday_plus_one_is_monday(cal: WorkingCalendar) -> None:
    assert cal.add_working_days(date(2026, 3, 6), 1) == date(2026, 3, 9)


def test_received_saturday_counts_from_monday(cal: WorkingCalendar) -> None:
    assert cal.add_working_days(date(2026, 3, 7), 1) == date(2026, 3, 9)
    assert cal.add_working_days(date(2026, 3, 7), 5) == date(2026, 3, 13)


def test_received_before_tet_skips_the_holiday(cal: WorkingCalendar) -> None:
    # Friday 13/02/2026 + 1 working day: the whole Tết week is off.
    assert cal.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 23)
    # Make-up Saturday 10/01/2026 counts: Friday 09/01 + 1 = Saturday 10/01.
    assert cal.add_working_days(date(2026, 1, 9), 1) == date(2026, 1, 10)


def test_zero_days_returns_start_and_negative_rejected(cal: WorkingCalendar) -> None:
    assert cal.add_working_days(date(2026, 2, 17), 0) == date(2026, 2, 17)
    with pytest.raises(ValueError):
        cal.add_working_days(date(2026, 2, 17), -1)


def test_between(cal: WorkingCalendar) -> None:
    assert cal.working_days_between(date(2026, 3, 6), date(2026, 3, 9)) == 1
    assert cal.working_days_between(date(2026, 3, 9), date(2026, 3, 6)) == 0
    assert cal.working_days_between(date(2026, 2, 13), date(2026, 2, 23)) == 1


def test_next_and_previous_working_day(cal: WorkingCalendar) -> None:
    assert cal.next_working_day(date(2025, 4, 29)) == date(2025, 5, 5)
    assert cal.previous_working_day(date(2025, 5, 5)) == date(2025, 4, 29)


def test_years_and_covers(cal: WorkingCalendar) -> None:
    assert cal.years == (2025, 2026, 2027)
    assert cal.covers(2026)
    assert not cal.covers(2024)


@pytest.mark.parametrize("d", [date(2024, 12, 31), date(2028, 1, 1)])
def test_uncovered_year_raises_naming_the_year(cal: WorkingCalendar, d: date) -> None:
    with pytest.raises(CalendarError, match=str(d.year)) as info:
        cal.is_working_day(d)
    assert "2025, 2026, 2027" in str(info.value)
    with pytest.raises(CalendarError, match=str(d.year)):
        cal.add_working_days(d, 1)


def test_result_beyond_coverage_raises(cal: WorkingCalendar) -> None:
    with pytest.raises(CalendarError, match="2027"):
        cal.add_working_days(date(2027, 12, 20), 30)


def test_inconsistent_year_data_rejected() -> None:
    saturday_off = YearCalendar(2030, frozenset(), frozenset({date(2030, 1, 7)}), "test")
    with pytest.raises(CalendarError, match="Saturday"):
        WorkingCalendar({2030: saturday_off})
    with pytest.raises(CalendarError, match="contiguous"):
        WorkingCalendar(
            {
                2030: YearCalendar(2030, frozenset(), frozenset(), "t"),
                2032: YearCalendar(2032, frozenset(), frozenset(), "t"),
            }
        )


# ----------------------------------------------------------------- properties
@settings(max_examples=300, deadline=None)
@given(start=covered_dates, n=st.integers(min_value=1, max_value=200))
def test_add_never_lands_on_a_day_off(start: date, n: int) -> None:
    end = CAL.add_working_days(start, n)
    assert end > start
    assert CAL.is_working_day(end)


@settings(max_examples=300, deadline=None)
@given(start=covered_dates, n=st.integers(min_value=0, max_value=200))
def test_between_inverts_add(start: date, n: int) -> None:
    assert CAL.working_days_between(start, CAL.add_working_days(start, n)) == n


@settings(max_examples=200, deadline=None)
@given(start=covered_dates, n=st.integers(min_value=0, max_value=199))
def test_add_is_strictly_monotonic_in_n(start: date, n: int) -> None:
    assert CAL.add_working_days(start, n) < CAL.add_working_days(start, n + 1)


@settings(max_examples=200, deadline=None)
@given(a=covered_dates, span=st.integers(min_value=0, max_value=120))
def test_between_matches_day_by_day_count(a: date, span: int) -> None:
    b = a + timedelta(days=span)
    naive = sum(CAL.is_working_day(a + timedelta(days=k)) for k in range(1, span + 1))
    assert CAL.working_days_between(a, b) == naive


@settings(max_examples=100, deadline=None)
@given(d=st.dates(min_value=FIRST, max_value=LAST))
def test_weekday_rule(d: date) -> None:
    year = CAL.year_calendar(d.year)
    expected = d in year.working_weekends if d.weekday() >= 5 else d not in year.days_off
    assert CAL.is_working_day(d) is expected
