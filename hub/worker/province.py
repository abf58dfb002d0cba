"""Province-wide answers from the workers' partial ones (scatter-gather).

Each worker's view covers the partitions it holds. A question about the whole province
(``GET /overdue``, ``GET /agencies/{code}/summary``) is answered by the worker asked: its own
part, plus the parts of the workers holding the other partitions, each asked once over HTTP
(``hub.worker.app``). Pure: how the parts combine, without HTTP.

Figures are sums of per-dossier standings (``hub.domain.standing``), so parts add up exactly;
the rates are worked out again from the summed counts, never averaged. The overdue list is
paged over the merged order: each part sends its first ``page * size`` rows in the same
order, which is all the merged page can take from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hub.domain.supervision import Figures

__all__ = [
    "figures_json",
    "merge_overdue",
    "merge_province",
    "merge_rows",
    "merge_summaries",
    "province_json",
    "summary_json",
]


def figures_json(figures: Figures) -> dict[str, Any]:
    return {
        "counts": figures.to_dict(),
        "on_time_rate": figures.on_time_rate,
        "online_share": figures.online_share,
        "satisfaction": figures.satisfaction,
    }


def summary_json(
    agency: str,
    total: Figures,
    by_procedure: Mapping[str, Figures],
    late_by_unit: Mapping[str, int],
) -> dict[str, Any]:
    """The agency summary's one shape, for a worker's part and for the merged whole."""
    return {
        "agency_code": agency,
        **figures_json(total),
        "by_procedure": {code: figures_json(f) for code, f in sorted(by_procedure.items())},
        "late_steps_by_unit": dict(sorted(late_by_unit.items())),
    }


def merge_summaries(agency: str, parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One agency summary (``hub.worker.figures.agency_summary``'s shape) from the parts."""
    total = Figures()
    by_procedure: dict[str, Figures] = {}
    late_by_unit: dict[str, int] = {}
    for part in parts:
        total = total + Figures.from_dict(part["counts"])
        for unit, count in part.get("late_steps_by_unit", {}).items():
            late_by_unit[unit] = late_by_unit.get(unit, 0) + int(count)
        for code, figures in part.get("by_procedure", {}).items():
            by_procedure[code] = by_procedure.get(code, Figures()) + Figures.from_dict(
                figures["counts"]
            )
    return summary_json(agency, total, by_procedure, late_by_unit)


def province_json(
    by_agency: Mapping[str, Figures],
    late_by_unit: Mapping[str, Mapping[str, int]],
    weekly: Mapping[str, Mapping[str, list[int]]],
) -> dict[str, Any]:
    """The province summary's one shape: every agency's figures with its late steps per unit
    and its weekly on-time/late counts (week = its Monday), and the province's total."""
    total = Figures()
    for figures in by_agency.values():
        total = total + figures
    agencies = {
        code: {
            **figures_json(by_agency.get(code, Figures())),
            "late_steps_by_unit": dict(sorted(late_by_unit.get(code, {}).items())),
            "weekly": {week: list(n) for week, n in sorted(weekly.get(code, {}).items())},
        }
        for code in sorted({*by_agency, *late_by_unit, *weekly})
    }
    return {"province": figures_json(total), "agencies": agencies}


def merge_province(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One province summary (``province_json``'s shape) from the workers' parts."""
    by_agency: dict[str, Figures] = {}
    late: dict[str, dict[str, int]] = {}
    weekly: dict[str, dict[str, list[int]]] = {}
    for part in parts:
        for code, agency in part["agencies"].items():
            by_agency[code] = by_agency.get(code, Figures()) + Figures.from_dict(agency["counts"])
            units = late.setdefault(code, {})
            for unit, count in agency.get("late_steps_by_unit", {}).items():
                units[unit] = units.get(unit, 0) + int(count)
            weeks = weekly.setdefault(code, {})
            for week, (on_time, overdue) in agency.get("weekly", {}).items():
                seen = weeks.setdefault(week, [0, 0])
                seen[0] += int(on_time)
                seen[1] += int(overdue)
    return province_json(by_agency, late, weekly)


def _order(item: Mapping[str, Any]) -> tuple[str, str]:
    return item["deadline"], item["dossier_code"]


def _newest(item: Mapping[str, Any]) -> tuple[str, str]:
    return item["received"], item["dossier_code"]


def merge_rows(
    parts: Iterable[Mapping[str, Any]], page: int, size: int, *, newest_first: bool = False
) -> dict[str, Any]:
    """One page of a list from each part's first ``page * size`` rows and its total: the
    overdue list (oldest deadline first, then by dossier code) or the search (newest
    received first)."""
    listed = list(parts)
    rows = sorted(
        (item for part in listed for item in part["items"]),
        key=_newest if newest_first else _order,
        reverse=newest_first,
    )
    return {
        "total": sum(int(part["total"]) for part in listed),
        "page": page,
        "size": size,
        "items": rows[(page - 1) * size : page * size],
    }


def merge_overdue(parts: Iterable[Mapping[str, Any]], page: int, size: int) -> dict[str, Any]:
    """One page of the overdue list (oldest deadline first, then by dossier code)."""
    return merge_rows(parts, page, size)
