"""A dossier's timeline: what happened to it, in ``occurred_at`` order, kept append-only.

The view and the portal need the whole history; the state machine needs none of it on the
per-event path. So :class:`Timeline` keeps its entries as one pre-encoded blob (each entry a
msgpack array, in arrival order) and a count: appending encodes the one new entry and
concatenates, and the blob travels inside the stored state as is (``hub.worker.processor``),
so an event costs the same whatever the length of the history. The entries are decoded only
when someone reads them (iterating, indexing, ``len`` excepted), once per object.

Order: entries are read in ``occurred_at`` order, ties in arrival order: a stable sort of the
arrival order, which is exactly where ``bisect_right`` on ``occurred_at`` would have inserted
each late entry. Two timelines are equal when they read the same entries in that order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

import msgspec

from hub.domain.status import DossierStatus

__all__ = ["EMPTY_TIMELINE", "Timeline", "TimelineEntry"]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    event_id: str
    event_type: str
    occurred_at: datetime
    agency_code: str
    status_after: DossierStatus
    note: str = ""

    def to_list(self) -> list[Any]:
        return [
            self.event_id,
            self.event_type,
            self.occurred_at.isoformat(),
            self.agency_code,
            self.status_after.value,
            self.note,
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> TimelineEntry:
        event_id, event_type, occurred_at, agency_code, status_after, note = data
        return cls(
            event_id=str(event_id),
            event_type=str(event_type),
            occurred_at=datetime.fromisoformat(occurred_at),
            agency_code=str(agency_code),
            status_after=DossierStatus(status_after),
            note=str(note),
        )


_Row = tuple[str, str, datetime, str, DossierStatus, str]
_encode = msgspec.msgpack.Encoder().encode
_rows = msgspec.msgpack.Decoder(list[_Row])


def _array_header(count: int) -> bytes:
    """The msgpack array header for ``count`` elements (fixarray, array 16, array 32)."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def _encode_entry(entry: TimelineEntry) -> bytes:
    return _encode(
        (
            entry.event_id,
            entry.event_type,
            entry.occurred_at,
            entry.agency_code,
            entry.status_after.value,
            entry.note,
        )
    )


class Timeline(Sequence[TimelineEntry]):
    """Immutable; ``append`` returns a new timeline sharing nothing mutable with this one."""

    __slots__ = ("_blob", "_count", "_entries")

    def __init__(self, count: int = 0, blob: bytes = b"") -> None:
        self._count = count
        self._blob = blob  # ``count`` msgpack arrays, concatenated, in arrival order
        self._entries: tuple[TimelineEntry, ...] | None = None if count else ()

    @classmethod
    def of(cls, entries: Iterable[TimelineEntry]) -> Timeline:
        """A timeline of ``entries`` given in arrival order."""
        items = list(entries)
        return cls(len(items), b"".join(_encode_entry(e) for e in items))

    @property
    def blob(self) -> bytes:
        """The entries as stored: msgpack arrays in arrival order (see the module docstring)."""
        return self._blob

    def append(self, entry: TimelineEntry) -> Timeline:
        return Timeline(self._count + 1, self._blob + _encode_entry(entry))

    def arrival_order(self) -> list[TimelineEntry]:
        """The entries as they were appended (the dedup window is the last ones of these)."""
        return [
            TimelineEntry(event_id, event_type, occurred_at, agency, status, note)
            for event_id, event_type, occurred_at, agency, status, note in _rows.decode(
                _array_header(self._count) + self._blob
            )
        ]

    def _materialised(self) -> tuple[TimelineEntry, ...]:
        entries = self._entries
        if entries is None:
            entries = tuple(sorted(self.arrival_order(), key=_occurred_at))
            self._entries = entries
        return entries

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> TimelineEntry: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[TimelineEntry, ...]: ...

    def __getitem__(self, index: int | slice) -> TimelineEntry | tuple[TimelineEntry, ...]:
        return self._materialised()[index]

    def __iter__(self) -> Iterator[TimelineEntry]:
        return iter(self._materialised())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Timeline):
            if self._blob == other._blob:
                return True
            return self._materialised() == other._materialised()
        if isinstance(other, tuple):
            return self._materialised() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._materialised())

    def __repr__(self) -> str:
        return f"Timeline({list(self._materialised())!r})"


def _occurred_at(entry: TimelineEntry) -> datetime:
    return entry.occurred_at


EMPTY_TIMELINE = Timeline()
