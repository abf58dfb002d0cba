"""Province-wide answers from the workers' parts: the parts add up, rates are worked out again,
and a page of the overdue list is the page of the merged order."""

from __future__ import annotations

from hub.domain.supervision import FigureKey, Figures
from hub.worker.figures import agency_summary
from hub.worker.province import merge_overdue, merge_summaries

JUSTICE = "000.00.09.H40"
A = FigureKey(JUSTICE, "1.001", "ONLINE")
B = FigureKey(JUSTICE, "1.002", "IN_PERSON")
OTHER = FigureKey("000.00.03.H40", "1.001", "ONLINE")


def test_summaries_of_two_workers_add_up_to_the_summary_of_all_their_dossiers() -> None:
    first = {A: Figures(submitted_total=3, online=3, finished_on_time=2, finished_late=1)}
    second = {
        A: Figures(submitted_total=1, online=1, finished_on_time=1),
        B: Figures(submitted_total=2, finished_late=2),
        OTHER: Figures(submitted_total=5),
    }
    merged = merge_summaries(
        JUSTICE, [agency_summary(first, JUSTICE), agency_summary(second, JUSTICE)]
    )
    everything = {
        A: first[A] + second[A],
        B: second[B],
        OTHER: second[OTHER],
    }
    assert merged == agency_summary(everything, JUSTICE)
    assert merged["counts"]["submitted_total"] == 6
    assert merged["on_time_rate"] == 3 / 6  # from the summed counts, not a mean of rates
    assert merged["by_procedure"]["1.001"]["counts"]["submitted_total"] == 4


def test_a_worker_holding_nothing_of_the_agency_adds_nothing() -> None:
    part = agency_summary({A: Figures(submitted_total=2, online=1)}, JUSTICE)
    empty = agency_summary({}, JUSTICE)
    assert merge_summaries(JUSTICE, [part, empty]) == part


def _rows(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"dossier_code": c, "agency_code": JUSTICE, "deadline": d} for d, c in pairs]


def test_a_page_of_the_overdue_list_is_that_page_of_the_merged_order() -> None:
    one = {"total": 3, "items": _rows(("2025-01-02", "X1"), ("2025-01-05", "X2"))}
    two = {"total": 4, "items": _rows(("2025-01-01", "Y1"), ("2025-01-05", "A9"))}
    page = merge_overdue([one, two], page=2, size=2)
    assert page["total"] == 7
    assert [r["dossier_code"] for r in page["items"]] == ["A9", "X2"]  # same day: by code
    first = merge_overdue([one, two], page=1, size=2)
    assert [r["dossier_code"] for r in first["items"]] == ["Y1", "X1"]


def test_late_steps_are_counted_per_unit_of_the_agency_and_add_up_across_workers() -> None:
    late = {(JUSTICE, "Phòng Tư pháp"): 2, (JUSTICE, "Văn phòng"): 1, ("000.00.03.H40", "X"): 4}
    one = agency_summary({}, JUSTICE, late)
    assert one["late_steps_by_unit"] == {"Phòng Tư pháp": 2, "Văn phòng": 1}
    two = agency_summary({}, JUSTICE, {(JUSTICE, "Văn phòng"): 3})
    merged = merge_summaries(JUSTICE, [one, two])
    assert merged["late_steps_by_unit"] == {"Phòng Tư pháp": 2, "Văn phòng": 4}
