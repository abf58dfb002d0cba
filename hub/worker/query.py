"""The worker API's query parameters, checked before anything is looked up: a bad value is the
caller's mistake (400, naming the parameter), an unknown agency in a path is 404, and neither
may become a server error. Pure: the HTTP handlers (``hub.worker.app``) only map the outcome
to a response."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "BadParameterError",
    "OverdueQuery",
    "overdue_query",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class BadParameterError(ValueError):
    """A query parameter the API cannot take; ``parameter`` names it, the message says why."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter

    def as_json(self) -> dict[str, str]:
        return {"error": str(self), "parameter": self.parameter}


@dataclass(frozen=True, slots=True)
class OverdueQuery:
    agency: str | None
    page: int
    size: int


def _positive_int(query: Mapping[str, str], name: str, default: int, most: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameterError(name, f"must be a whole number, got {raw!r}") from None
    if not 1 <= value <= most:
        raise BadParameterError(name, f"must be between 1 and {most}, got {value}")
    return value


#: the most pages the overdue list is paged to
MAX_PAGE = 10_000


def overdue_query(
    query: Mapping[str, str], agencies: Container[str], *, max_size: int = MAX_PAGE_SIZE
) -> OverdueQuery:
    """``GET /overdue?agency=&page=&size=``: an agency must be one the reference data knows
    (any version, merged ones included: their dossiers may still be open). ``max_size``: a
    worker asked by another for its part of a page takes up to ``MAX_PAGE * MAX_PAGE_SIZE``
    rows (``hub.worker.province``)."""
    agency = query.get("agency")
    if agency is not None and agency not in agencies:
        raise BadParameterError("agency", f"unknown agency code {agency!r}")
    page = _positive_int(query, "page", 1, MAX_PAGE)
    size = _positive_int(query, "size", DEFAULT_PAGE_SIZE, max_size)
    return OverdueQuery(agency, page, size)
