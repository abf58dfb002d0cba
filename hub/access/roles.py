"""Who may see what in the worker's API and pages: pure rules, no HTTP.

Three roles (README, "Access by role"):

* ``province``: the provincial office supervising every agency: every dossier, every figure.
* ``agency``: an agency's head or staff: the dossiers the agency holds or held (it is in the
  dossier's ``handled_by``: a transfer does not hide a dossier from the agency it came from),
  its own figures, its own overdue list; nothing of another agency.
* ``figures``: the national portal or a read-only dashboard: agency and province figures
  and ``/metrics``; no dossier, no list of dossiers, no personal data.

Personal data (the applicant's name) is shown only to a principal whose credential allows
it (``personal_data``, true by default for ``province`` and ``agency``, never for
``figures``); everyone else sees it masked, and each unmasked answer is written to the audit
trail before it is sent (``hub.worker.app``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Principal", "Role", "mask_name"]


class Role(StrEnum):
    PROVINCE = "province"
    AGENCY = "agency"
    FIGURES = "figures"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request proved to be: its credential's id, role, agency (role ``agency``) and
    whether it may see personal data."""

    key_id: str
    role: Role
    agency_code: str | None = None
    personal_data: bool = False

    def __post_init__(self) -> None:
        if (self.role is Role.AGENCY) != (self.agency_code is not None):
            raise ValueError("an agency credential names its agency, and only it does")
        if self.role is Role.FIGURES and self.personal_data:
            raise ValueError("a figures credential never sees personal data")

    @property
    def lists_dossiers(self) -> bool:
        """May read dossiers and lists of them (overdue, search) at all."""
        return self.role is not Role.FIGURES

    def may_read_dossier(self, holders: Iterable[str]) -> bool:
        """``holders``: the agency holding the dossier now and every agency that held it."""
        if self.role is Role.PROVINCE:
            return True
        return self.role is Role.AGENCY and self.agency_code in set(holders)

    def may_read_agency(self, agency_code: str) -> bool:
        """An agency's figures and its overdue list."""
        if self.role is Role.AGENCY:
            return agency_code == self.agency_code
        return True

    @property
    def may_read_province(self) -> bool:
        """The province-wide figures (every agency's)."""
        return self.role is not Role.AGENCY

    @property
    def sees_personal_data(self) -> bool:
        return self.personal_data and self.role is not Role.FIGURES

    @property
    def scope(self) -> str | None:
        """The agency every list this principal reads is limited to; None: the province."""
        return self.agency_code if self.role is Role.AGENCY else None


def mask_name(name: str | None) -> str | None:
    """``Nguyễn Văn An`` -> ``N***** V** A*``: enough for an official to recognise a dossier
    they already hold, not enough to learn who applied."""
    if name is None:
        return None
    return " ".join(part[0] + "*" * (len(part) - 1) for part in name.split())
