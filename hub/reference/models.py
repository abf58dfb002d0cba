"""Reference data: file schemas (pydantic) and the immutable objects the hub uses.

The JSON files under ``data/`` are edited by people (new holidays each year, agencies
merged by a resolution), so every file is validated strictly on load and any breach is a
:class:`ReferenceDataError` that names the file, the JSON path and the rule: an operator
must be able to fix the file from the message alone.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AGENCY_CODE_PATTERN",
    "PROCEDURE_CODE_PATTERN",
    "AgenciesFile",
    "Agency",
    "AgencyDirectory",
    "AgencyFileEntry",
    "AgencyLevel",
    "CalendarDayOff",
    "CalendarFile",
    "CalendarWorkingWeekend",
    "PortalStatusEntry",
    "PortalStatusFile",
    "Procedure",
    "ProcedureFileEntry",
    "ProcedureLevel",
    "ProcedureStep",
    "ProceduresFile",
    "ReferenceDataError",
    "StepFileEntry",
    "UnknownAgencyError",
]

AGENCY_CODE_PATTERN = r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$"
PROCEDURE_CODE_PATTERN = r"^[1-3]\.\d{6}$"

AgencyLevel = Literal["province", "department", "district", "commune"]
ProcedureLevel = Literal["commune", "district", "department", "province"]


class ReferenceDataError(Exception):
    """A reference file breaks a rule; the message is ``<file>: <json path>: <rule>``."""

    def __init__(self, file: str, path: str, rule: str) -> None:
        super().__init__(f"{file}: {path}: {rule}")
        self.file = file
        self.path = path
        self.rule = rule


class UnknownAgencyError(KeyError):
    """No agency with that code, or none in force for the date asked."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown agency"


# --------------------------------------------------------------------------- file schemas
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class CalendarDayOff(_Strict):
    date: dt.date
    name: str = Field(min_length=1)


class CalendarWorkingWeekend(_Strict):
    date: dt.date
    name: str = Field(min_length=1)
    replaces: dt.date


class CalendarFile(_Strict):
    year: int = Field(ge=2000, le=2100)
    source: str = Field(min_length=1)
    days_off: list[CalendarDayOff]
    working_weekends: list[CalendarWorkingWeekend]


class AgencyFileEntry(_Strict):
    code: str = Field(pattern=AGENCY_CODE_PATTERN)
    name: str = Field(min_length=1)
    level: AgencyLevel
    parent: str | None
    effective_from: date
    effective_to: date | None
    merged_into: str | None
    source: str = Field(min_length=1)
    dvhc_code: str | None = Field(default=None, pattern=r"^\d{5}$")


class AgenciesFile(_Strict):
    province: str = Field(pattern=r"^[A-Z]\d{2}$")
    notes: list[str] = []
    agencies: list[AgencyFileEntry] = Field(min_length=1)


class StepFileEntry(_Strict):
    name: str = Field(min_length=1)
    unit: str = Field(min_length=1)
    share: float = Field(gt=0, le=1)


class ProcedureFileEntry(_Strict):
    code: str = Field(pattern=PROCEDURE_CODE_PATTERN)
    name: str = Field(min_length=1)
    working_days: int = Field(ge=1, le=365)
    level: ProcedureLevel
    responsible_agency: str | None
    effective_from: date
    steps: list[StepFileEntry] = Field(min_length=1)
    legal_basis: str | None = None
    source: str = Field(min_length=1)


class ProceduresFile(_Strict):
    notes: list[str] = []
    procedures: list[ProcedureFileEntry] = Field(min_length=1)


class PortalStatusEntry(_Strict):
    code: int = Field(ge=1, le=99)
    label_vi: str = Field(min_length=1)
    label_en: str = Field(min_length=1)


class PortalStatusFile(_Strict):
    source: str = Field(min_length=1)
    statuses: dict[str, PortalStatusEntry]


# --------------------------------------------------------------------------- domain objects
@dataclass(frozen=True)
class Agency:
    """One version of an agency: its code is stable, its validity is [from, to]."""

    code: str
    name: str
    level: AgencyLevel
    parent: str | None
    effective_from: date
    effective_to: date | None
    merged_into: str | None
    source: str
    dvhc_code: str | None = None

    def is_active_on(self, on: date) -> bool:
        return self.effective_from <= on and (self.effective_to is None or on <= self.effective_to)


@dataclass(frozen=True)
class ProcedureStep:
    name: str
    unit: str
    share: float


@dataclass(frozen=True)
class Procedure:
    """An administrative procedure (TTHC) with its statutory time in working days."""

    code: str
    name: str
    working_days: int
    level: ProcedureLevel
    responsible_agency: str | None
    effective_from: date
    steps: tuple[ProcedureStep, ...]
    source: str
    legal_basis: str | None = None


class AgencyDirectory:
    """Versioned agencies: who exists when, and who took over from whom.

    ``resolve`` follows ``merged_into`` so that a dossier addressed to a retired agency
    reaches the agency that carries on its work on the date asked.
    """

    __slots__ = ("_versions",)

    def __init__(self, agencies: Iterable[Agency]) -> None:
        versions: dict[str, list[Agency]] = defaultdict(list)
        for agency in agencies:
            versions[agency.code].append(agency)
        self._versions: dict[str, tuple[Agency, ...]] = {
            code: tuple(sorted(vs, key=lambda a: a.effective_from)) for code, vs in versions.items()
        }

    def __contains__(self, code: object) -> bool:
        return code in self._versions

    def __len__(self) -> int:
        return len(self._versions)

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(self._versions)

    def versions(self, code: str) -> tuple[Agency, ...]:
        """All versions of one code, oldest first."""
        try:
            return self._versions[code]
        except KeyError:
            raise UnknownAgencyError(f"unknown agency code {code!r}") from None

    def get(self, code: str) -> Agency:
        """The latest version of the agency with this code."""
        return self.versions(code)[-1]

    def version_on(self, code: str, on: date) -> Agency | None:
        """The version of ``code`` in force on ``on``, if any."""
        for agency in self.versions(code):
            if agency.is_active_on(on):
                return agency
        return None

    def is_active(self, code: str, on: date) -> bool:
        return self.version_on(code, on) is not None

    def resolve(self, code: str, on: date) -> Agency:
        """The agency in force on ``on`` that carries the work of ``code``.

        Follows ``merged_into`` from the last version of ``code`` that ended before ``on``.
        Raises :class:`UnknownAgencyError` for an unknown code, or when no agency in force
        can be reached (the agency did not exist yet, or was dissolved without successor).
        """
        seen: set[str] = set()
        current = code
        while True:
            if current in seen:
                raise UnknownAgencyError(f"cycle in merges while resolving {code!r}")
            seen.add(current)
            found = self.version_on(current, on)
            if found is not None:
                return found
            ended = [a for a in self.versions(current) if a.effective_to and a.effective_to < on]
            if not ended or ended[-1].merged_into is None:
                raise UnknownAgencyError(
                    f"no agency in force on {on.isoformat()} for code {code!r}"
                )
            current = ended[-1].merged_into

    def active(self, on: date) -> list[Agency]:
        """Every agency version in force on ``on``, sorted by code."""
        out = [a for vs in self._versions.values() for a in vs if a.is_active_on(on)]
        return sorted(out, key=lambda a: a.code)

    def children(self, parent: str, on: date) -> list[Agency]:
        return [a for a in self.active(on) if a.parent == parent]

    def as_mapping(self) -> Mapping[str, tuple[Agency, ...]]:
        return dict(self._versions)
