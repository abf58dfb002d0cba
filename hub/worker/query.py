"""The worker API's query parameters, checked before anything is looked up: a bad value is the
caller's mistake (400, naming the parameter), an unknown agency in a path is 404, and neither
may become a server error. Pure: the HTTP handlers (``hub.worker.app``) only map the outcome
to a response."""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from dataclasses import dataclass, fields
from datetime import date

from hub.domain.events import Channel
from hub.domain.status import DossierStatus

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "BadParameterError",
    "OverdueQuery",
    "SearchQuery",
    "overdue_query",
    "search_query",
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
    """``GET /overdue``: open dossiers past their appointment date, oldest deadline first."""

    agency: str | None
    procedure: str | None
    channel: str | None
    deadline_from: str | None  # ISO dates, inclusive
    deadline_to: str | None
    page: int
    size: int

    def params(self, size: int) -> dict[str, str]:
        """The same filters as query parameters, first page of ``size`` rows: what a worker
        asks another for (``hub.worker.province``)."""
        return _as_params(self, size)

    def matches(self, holder: str, procedure: str, channel: str, deadline: str) -> bool:
        return (
            (self.agency is None or holder == self.agency)
            and (self.procedure is None or procedure == self.procedure)
            and (self.channel is None or channel == self.channel)
            and (self.deadline_from is None or deadline >= self.deadline_from)
            and (self.deadline_to is None or deadline <= self.deadline_to)
        )


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """``GET /dossiers``: dossiers by code (a prefix), agency (holding it now), status,
    procedure and the date received; newest first."""

    code: str | None
    agency: str | None
    status: str | None
    procedure: str | None
    received_from: str | None  # ISO dates, inclusive
    received_to: str | None
    page: int
    size: int

    def params(self, size: int) -> dict[str, str]:
        return _as_params(self, size)


def _as_params(query: OverdueQuery | SearchQuery, size: int) -> dict[str, str]:
    """A query's filters given (every field but the paging), and the first page of ``size``."""
    found = {"page": "1", "size": str(size)}
    for name in (f.name for f in fields(query)):
        value = getattr(query, name)
        if name not in ("page", "size") and value is not None:
            found[name] = value
    return found


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


def _one_of(query: Mapping[str, str], name: str, known: Container[str], what: str) -> str | None:
    value = query.get(name)
    if value is not None and value not in known:
        raise BadParameterError(name, f"unknown {what} {value!r}")
    return value


def _date_range(query: Mapping[str, str], first: str, last: str) -> tuple[str | None, str | None]:
    found: list[str | None] = []
    for name in (first, last):
        raw = query.get(name)
        if raw is not None:
            try:
                raw = date.fromisoformat(raw).isoformat()
            except ValueError:
                raise BadParameterError(name, f"must be a date YYYY-MM-DD, got {raw!r}") from None
        found.append(raw)
    start, end = found
    if start is not None and end is not None and start > end:
        raise BadParameterError(last, f"{end} is before {first} {start}")
    return start, end


#: the most pages a list is paged to
MAX_PAGE = 10_000

CHANNELS = frozenset(channel.value for channel in Channel)
STATUSES = frozenset(status.value for status in DossierStatus)
#: a dossier code's characters (hub.contract.inbound's codes are made of these)
_CODE = re.compile(r"^[A-Za-z0-9.\-]{1,60}$")


def overdue_query(
    query: Mapping[str, str],
    agencies: Container[str],
    procedures: Container[str],
    *,
    max_size: int = MAX_PAGE_SIZE,
) -> OverdueQuery:
    """``GET /overdue?agency=&procedure=&channel=&deadline_from=&deadline_to=&page=&size=``:
    an agency must be one the reference data knows (any version, merged ones included: their
    dossiers may still be open), a procedure one it lists. ``max_size``: a worker asked by
    another for its part of a page takes up to ``MAX_PAGE * MAX_PAGE_SIZE`` rows
    (``hub.worker.province``)."""
    deadline_from, deadline_to = _date_range(query, "deadline_from", "deadline_to")
    return OverdueQuery(
        agency=_one_of(query, "agency", agencies, "agency code"),
        procedure=_one_of(query, "procedure", procedures, "procedure code"),
        channel=_one_of(query, "channel", CHANNELS, "channel (IN_PERSON, ONLINE, POSTAL)"),
        deadline_from=deadline_from,
        deadline_to=deadline_to,
        page=_positive_int(query, "page", 1, MAX_PAGE),
        size=_positive_int(query, "size", DEFAULT_PAGE_SIZE, max_size),
    )


def search_query(
    query: Mapping[str, str],
    agencies: Container[str],
    procedures: Container[str],
    *,
    max_size: int = MAX_PAGE_SIZE,
) -> SearchQuery:
    """``GET /dossiers?code=&agency=&status=&procedure=&received_from=&received_to=``."""
    code = query.get("code")
    if code is not None and not _CODE.match(code):
        raise BadParameterError("code", "letters, digits, '.' and '-' only, 1 to 60 of them")
    received_from, received_to = _date_range(query, "received_from", "received_to")
    return SearchQuery(
        code=code,
        agency=_one_of(query, "agency", agencies, "agency code"),
        status=_one_of(query, "status", STATUSES, "status"),
        procedure=_one_of(query, "procedure", procedures, "procedure code"),
        received_from=received_from,
        received_to=received_to,
        page=_positive_int(query, "page", 1, MAX_PAGE),
        size=_positive_int(query, "size", DEFAULT_PAGE_SIZE, max_size),
    )
