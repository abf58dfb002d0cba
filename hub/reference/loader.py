"""Load and cross-check the reference data files.

Nothing is cached: callers load once at start-up and pass the :class:`ReferenceData` on,
which keeps tests and hot reloads simple. Every rule broken raises
:class:`~hub.reference.models.ReferenceDataError` naming file, JSON path and rule.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from hub.domain.calendar import CalendarError, WorkingCalendar, YearCalendar
from hub.domain.status import DossierStatus
from hub.reference.models import (
    AgenciesFile,
    Agency,
    AgencyDirectory,
    CalendarFile,
    PortalStatusFile,
    Procedure,
    ProceduresFile,
    ProcedureStep,
    ReferenceDataError,
)

__all__ = ["DEFAULT_ROOT", "ReferenceData", "load_reference"]

DEFAULT_ROOT = Path(__file__).resolve().parent / "data"
SHARE_TOLERANCE = 0.001
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class ReferenceData:
    """Everything the hub needs to interpret dossiers: calendar, agencies, procedures, codes."""

    calendar: WorkingCalendar
    agencies: AgencyDirectory
    procedures: Mapping[str, Procedure]
    portal_codes: Mapping[DossierStatus, int]
    portal_labels: Mapping[DossierStatus, tuple[str, str]]
    root: Path


def load_reference(root: Path | None = None) -> ReferenceData:
    """Load and validate every reference file under ``root`` (default: the package data)."""
    base = DEFAULT_ROOT if root is None else Path(root)
    calendar = _load_calendar(base)
    agencies = _load_agencies(base)
    procedures = _load_procedures(base, agencies)
    codes, labels = _load_portal(base)
    return ReferenceData(calendar, agencies, procedures, codes, labels, base)


# --------------------------------------------------------------------------- helpers
def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "$"


def _read(base: Path, rel: str) -> Any:
    file = base / rel
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReferenceDataError(rel, "$", "file is missing") from None
    except UnicodeDecodeError as exc:
        raise ReferenceDataError(rel, "$", f"file is not UTF-8 ({exc.reason})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReferenceDataError(
            rel, "$", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    _check_nfc(rel, raw, ())
    return raw


def _check_nfc(rel: str, value: Any, loc: tuple[int | str, ...]) -> None:
    if isinstance(value, str):
        if unicodedata.normalize("NFC", value) != value:
            raise ReferenceDataError(rel, _path(loc), "text is not in Unicode NFC form")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_nfc(rel, key, loc)
            _check_nfc(rel, item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_nfc(rel, item, (*loc, i))


def _parse(rel: str, raw: Any, model: type[_M]) -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ReferenceDataError(rel, _path(tuple(err["loc"])), err["msg"]) from None


# --------------------------------------------------------------------------- calendar
def _load_calendar(base: Path) -> WorkingCalendar:
    folder = base / "calendar"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise ReferenceDataError("calendar/", "$", "no calendar file (calendar/<year>.json)")
    years: dict[int, YearCalendar] = {}
    for file in files:
        rel = f"calendar/{file.name}"
        cal = _parse(rel, _read(base, rel), CalendarFile)
        if file.stem != str(cal.year):
            raise ReferenceDataError(rel, "year", f"year {cal.year} does not match the file name")
        seen: dict[date, str] = {}
        for i, off in enumerate(cal.days_off):
            where = f"days_off[{i}].date"
            if off.date.year != cal.year:
                raise ReferenceDataError(
                    rel, where, f"{off.date.isoformat()} is outside the year {cal.year}"
                )
            if off.date in seen:
                raise ReferenceDataError(
                    rel, where, f"day {off.date.isoformat()} listed twice (also {seen[off.date]})"
                )
            seen[off.date] = f"days_off[{i}]"
        off_days = {o.date for o in cal.days_off}
        for i, ww in enumerate(cal.working_weekends):
            where = f"working_weekends[{i}]"
            if ww.date.year != cal.year:
                raise ReferenceDataError(
                    rel, f"{where}.date", f"{ww.date.isoformat()} is outside the year {cal.year}"
                )
            if ww.date.weekday() < 5:
                raise ReferenceDataError(
                    rel,
                    f"{where}.date",
                    f"working weekend {ww.date.isoformat()} is not a Saturday or Sunday",
                )
            if ww.date in seen:
                raise ReferenceDataError(
                    rel,
                    f"{where}.date",
                    f"day {ww.date.isoformat()} listed twice (also {seen[ww.date]})",
                )
            seen[ww.date] = where
            if ww.replaces not in off_days:
                raise ReferenceDataError(
                    rel,
                    f"{where}.replaces",
                    f"replaced day {ww.replaces.isoformat()} is not listed in days_off",
                )
        if cal.year in years:  # pragma: no cover - file names are unique
            raise ReferenceDataError(rel, "year", f"year {cal.year} given twice")
        years[cal.year] = YearCalendar(
            year=cal.year,
            days_off=frozenset(off_days),
            working_weekends=frozenset(w.date for w in cal.working_weekends),
            source=cal.source,
        )
    try:
        return WorkingCalendar(years)
    except CalendarError as exc:
        raise ReferenceDataError("calendar/", "$", str(exc)) from None


# --------------------------------------------------------------------------- agencies
def _load_agencies(base: Path) -> AgencyDirectory:
    rel = "agencies.json"
    parsed = _parse(rel, _read(base, rel), AgenciesFile)
    entries = parsed.agencies
    by_code: dict[str, list[int]] = {}
    for i, a in enumerate(entries):
        if not a.code.endswith(f".{parsed.province}"):
            raise ReferenceDataError(
                rel, f"agencies[{i}].code", f"code {a.code} is not of province {parsed.province}"
            )
        if a.effective_to is not None and a.effective_to < a.effective_from:
            raise ReferenceDataError(
                rel, f"agencies[{i}].effective_to", "effective_to is before effective_from"
            )
        for j in by_code.get(a.code, []):
            other = entries[j]
            if _overlap(a.effective_from, a.effective_to, other.effective_from, other.effective_to):
                raise ReferenceDataError(
                    rel,
                    f"agencies[{i}].effective_from",
                    f"duplicate code {a.code} with validity overlapping agencies[{j}]",
                )
        by_code.setdefault(a.code, []).append(i)

    for i, a in enumerate(entries):
        if a.parent is not None and a.parent not in by_code:
            raise ReferenceDataError(rel, f"agencies[{i}].parent", f"unknown code {a.parent}")
        if a.merged_into is not None:
            if a.merged_into not in by_code:
                raise ReferenceDataError(
                    rel, f"agencies[{i}].merged_into", f"unknown code {a.merged_into}"
                )
            if a.effective_to is None:
                raise ReferenceDataError(
                    rel, f"agencies[{i}].merged_into", "merged_into requires an effective_to"
                )
            if a.merged_into == a.code:
                raise ReferenceDataError(
                    rel, f"agencies[{i}].merged_into", "cycle in merges: agency merged into itself"
                )

    _check_merge_cycles(rel, entries)

    for i, a in enumerate(entries):
        if a.merged_into is None or a.effective_to is None:
            continue
        day_after = a.effective_to + timedelta(days=1)
        if not any(
            _active(entries[j].effective_from, entries[j].effective_to, day_after)
            for j in by_code[a.merged_into]
        ):
            raise ReferenceDataError(
                rel,
                f"agencies[{i}].merged_into",
                f"merged_into {a.merged_into} is not effective on {day_after.isoformat()} "
                "(the day after effective_to)",
            )
    return AgencyDirectory(
        Agency(
            code=a.code,
            name=a.name,
            level=a.level,
            parent=a.parent,
            effective_from=a.effective_from,
            effective_to=a.effective_to,
            merged_into=a.merged_into,
            source=a.source,
            dvhc_code=a.dvhc_code,
        )
        for a in entries
    )


def _overlap(a0: date, a1: date | None, b0: date, b1: date | None) -> bool:
    return (a1 is None or b0 <= a1) and (b1 is None or a0 <= b1)


def _active(start: date, end: date | None, on: date) -> bool:
    return start <= on and (end is None or on <= end)


def _check_merge_cycles(rel: str, entries: list[Any]) -> None:
    edges: dict[str, set[str]] = {}
    first_index: dict[tuple[str, str], int] = {}
    for i, a in enumerate(entries):
        if a.merged_into is not None:
            edges.setdefault(a.code, set()).add(a.merged_into)
            first_index.setdefault((a.code, a.merged_into), i)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(code: str, stack: list[str]) -> None:
        state[code] = 1
        for nxt in sorted(edges.get(code, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], code, nxt] if nxt in stack else [code, nxt]
                i = first_index[(code, nxt)]
                raise ReferenceDataError(
                    rel, f"agencies[{i}].merged_into", "cycle in merges: " + " -> ".join(cycle)
                )
            if state.get(nxt) is None:
                visit(nxt, [*stack, code])
        state[code] = 2

    for code in sorted(edges):
        if state.get(code) is None:
            visit(code, [])


# --------------------------------------------------------------------------- procedures
def _load_procedures(base: Path, agencies: AgencyDirectory) -> dict[str, Procedure]:
    rel = "procedures.json"
    parsed = _parse(rel, _read(base, rel), ProceduresFile)
    out: dict[str, Procedure] = {}
    for i, p in enumerate(parsed.procedures):
        where = f"procedures[{i}]"
        if p.code in out:
            raise ReferenceDataError(rel, f"{where}.code", f"duplicate procedure code {p.code}")
        if p.responsible_agency is not None and p.responsible_agency not in agencies:
            raise ReferenceDataError(
                rel,
                f"{where}.responsible_agency",
                f"unknown code {p.responsible_agency} (responsible_agency)",
            )
        if p.responsible_agency is None and p.level != "commune":
            raise ReferenceDataError(
                rel,
                f"{where}.responsible_agency",
                f"a {p.level}-level procedure needs a responsible_agency",
            )
        total = sum(s.share for s in p.steps)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ReferenceDataError(
                rel, f"{where}.steps", f"step shares sum to {total:.4f}, not 1 ± {SHARE_TOLERANCE}"
            )
        out[p.code] = Procedure(
            code=p.code,
            name=p.name,
            working_days=p.working_days,
            level=p.level,
            responsible_agency=p.responsible_agency,
            effective_from=p.effective_from,
            steps=tuple(ProcedureStep(s.name, s.unit, s.share) for s in p.steps),
            source=p.source,
            legal_basis=p.legal_basis,
        )
    return out


# --------------------------------------------------------------------------- portal codes
def _load_portal(
    base: Path,
) -> tuple[dict[DossierStatus, int], dict[DossierStatus, tuple[str, str]]]:
    rel = "portal_status.json"
    parsed = _parse(rel, _read(base, rel), PortalStatusFile)
    codes: dict[DossierStatus, int] = {}
    labels: dict[DossierStatus, tuple[str, str]] = {}
    used: dict[int, str] = {}
    for name, entry in parsed.statuses.items():
        if name not in DossierStatus.__members__:
            raise ReferenceDataError(rel, f"statuses.{name}", f"unknown status name {name}")
        if entry.code in used:
            raise ReferenceDataError(
                rel, f"statuses.{name}.code", f"code {entry.code} also used by {used[entry.code]}"
            )
        used[entry.code] = name
        status = DossierStatus[name]
        codes[status] = entry.code
        labels[status] = (entry.label_vi, entry.label_en)
    for status in DossierStatus:
        if status not in codes:
            raise ReferenceDataError(
                rel, f"statuses.{status.name}", f"missing status mapping for {status.name}"
            )
    return codes, labels
