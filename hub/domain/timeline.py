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

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, overload

import msgspec

from hub.domain.status import DossierStatus

__all__ = ["EMPTY_TIMELINE", "Timeline", "TimelineEntry"]


class TimelineEntry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One line of the timeline. A msgspec Struct encoded as an array, so the encoder writes
    an entry straight into the blob (the same six-element array as ever) and the decoder
    builds entries in C. ``gc=False``: it holds only strings, a datetime and an enum."""

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


_encode = msgspec.msgpack.Encoder().encode
_entries_of = msgspec.msgpack.Decoder(list[TimelineEntry])


def array_header(count: int) -> bytes:
    """The msgpack array header for ``count`` elements (fixarray, array 16, array 32)."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


class Timeline(msgspec.Struct, frozen=True, array_like=True, dict=True):
    """Immutable; ``append`` returns a new timeline sharing nothing mutable with this one.

    Reads like a tuple of entries (``len``, indexing, slicing, iteration). A msgspec Struct
    of two fields, ``count`` and ``blob``, so a stored state carries it as the array
    ``[count, blob]`` with no encoder or decoder hook (``hub.worker.processor``); the
    ``__dict__`` (``dict=True``) only holds the decoded entries once someone reads them.
    """

    count: int = 0
    blob: bytes = b""  # ``count`` msgpack arrays, concatenated, in arrival order

    @classmethod
    def of(cls, entries: Iterable[TimelineEntry]) -> Timeline:
        """A timeline of ``entries`` given in arrival order."""
        items = list(entries)
        return cls(len(items), b"".join(_encode(e) for e in items))

    def append(self, entry: TimelineEntry) -> Timeline:
        return Timeline(self.count + 1, self.blob + _encode(entry))

    def arrival_order(self) -> list[TimelineEntry]:
        """The entries as they were appended (the dedup window is the last ones of these)."""
        if not self.count:
            return []
        return _entries_of.decode(array_header(self.count) + self.blob)

    @property
    def _entries(self) -> tuple[TimelineEntry, ...] | None:
        """The entries in reading order if they were decoded already, else None."""
        entries: tuple[TimelineEntry, ...] | None = self.__dict__.get("entries")
        return entries

    def _materialised(self) -> tuple[TimelineEntry, ...]:
        cache = self.__dict__
        entries: tuple[TimelineEntry, ...] | None = cache.get("entries")
        if entries is None:
            entries = tuple(sorted(self.arrival_order(), key=_occurred_at))
            cache["entries"] = entries
        return entries

    def __len__(self) -> int:
        return self.count

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
            if self.blob == other.blob:
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
