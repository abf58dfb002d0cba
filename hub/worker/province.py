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

__all__ = ["figures_json", "merge_overdue", "merge_summaries", "summary_json"]


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


def _order(item: Mapping[str, Any]) -> tuple[str, str]:
    return item["deadline"], item["dossier_code"]


def merge_overdue(parts: Iterable[Mapping[str, Any]], page: int, size: int) -> dict[str, Any]:
    """One page of the overdue list (oldest deadline first, then by dossier code) from each
    part's first ``page * size`` rows and its total."""
    listed = list(parts)
    rows = sorted((item for part in listed for item in part["items"]), key=_order)
    return {
        "total": sum(int(part["total"]) for part in listed),
        "page": page,
        "size": size,
        "items": rows[(page - 1) * size : page * size],
    }
