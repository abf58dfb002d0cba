"""Finished dossiers' search rows, kept out of memory.

A worker's view keeps a row per dossier for the search (``hub.worker.figures.Row``). Open
dossiers are few and change often: their rows stay in a dict. Finished ones pile up for
ever (a province finishes millions a year) and rarely change: their rows go to an archive,
so a worker's memory follows its open dossiers, not every dossier it has ever held.

The archive is derived data, like the rest of the view: rebuilt from the partition stores
after every rebalance into a fresh one, never restored, never checkpointed. So a RocksDB
archive writes without a WAL and lives in a directory of its own per rebuild, deleted once
the next view replaces it (and all of them at the worker's start).
"""

from __future__ import annotations

import itertools
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import msgspec
from rocksdict import Options, Rdict, ReadOptions, WriteBatch, WriteOptions

if TYPE_CHECKING:
    from hub.worker.figures import Row

__all__ = ["ArchiveDirectory", "MemoryArchive", "RocksArchive", "RowArchive"]

log = logging.getLogger(__name__)

#: rows buffered before one write batch (a rebuild archives hundreds of thousands)
_BATCH = 5_000


class RowArchive(Protocol):
    def put(self, code: str, row: Row) -> None: ...

    def delete(self, code: str) -> None: ...

    def items(
        self, prefix: str = "", received_from: str | None = None, received_to: str | None = None
    ) -> Iterator[tuple[str, Row]]:
        """The rows whose codes start with ``prefix``, received within the ISO dates given
        (inclusive; a row without a date is outside any range)."""
        ...

    def clear(self) -> None: ...

    def close(self) -> None:
        """Release and delete it: the next view has its own."""


class MemoryArchive:
    """The archive in a dict: ``HUB_STORE=memory`` and the domain tests."""

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}

    def put(self, code: str, row: Row) -> None:
        self._rows[code] = row

    def delete(self, code: str) -> None:
        self._rows.pop(code, None)

    def items(
        self, prefix: str = "", received_from: str | None = None, received_to: str | None = None
    ) -> Iterator[tuple[str, Row]]:
        return iter([
            (code, row)
            for code, row in self._rows.items()
            if code.startswith(prefix)
            and (received_from is None or row[4] >= received_from)
            and (received_to is None or row[4] <= received_to)
        ])  # fmt: skip

    def clear(self) -> None:
        self._rows.clear()

    def close(self) -> None:
        self._rows.clear()


_encode = msgspec.msgpack.Encoder().encode
#: a stored row: its received date (ISO, 10 bytes; blank-padded when it has none, which
#: sorts before any date as "" does), then (code, row) in msgpack
_DATE = 10


def _value(code: str, row: Row) -> bytes:
    return row[4].encode().ljust(_DATE) + _encode((code, row))


_decode = msgspec.msgpack.Decoder(
    tuple[str, tuple[str, str, str, str, str, str, tuple[str, ...]]]
).decode


class RocksArchive:
    """The archive in a RocksDB of its own. Writes are buffered and applied in batches;
    a read applies what is buffered first. Used from one thread at a time (the engine's
    while it rebuilds a view, the event loop's once the view is installed).

    A write that fails (a full disk) loses nothing: the rows stay buffered, in memory,
    searched from there, and the write is tried again every ``_BATCH`` rows and on each
    search."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._no_wal = WriteOptions()
        # derived: rebuilt from the stores, never recovered (a property; the stub says method)
        self._no_wal.disable_wal = True  # type: ignore[method-assign,assignment]
        self._scan = ReadOptions()
        # a search reads every row once: do not keep them (the stub omits the flag)
        self._scan.fill_cache(False)  # type: ignore[call-arg]
        self._pending: dict[str, Row | None] = {}
        self._failing = False
        self._db = self._open()

    def _open(self) -> Rdict:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(2 * 1024 * 1024)
        options.set_max_write_buffer_number(2)
        return Rdict(str(self.path), options)

    def put(self, code: str, row: Row) -> None:
        self._pending[code] = row
        if len(self._pending) % _BATCH == 0:
            self._apply()

    def delete(self, code: str) -> None:
        self._pending[code] = None
        if len(self._pending) % _BATCH == 0:
            self._apply()

    def items(
        self, prefix: str = "", received_from: str | None = None, received_to: str | None = None
    ) -> Iterator[tuple[str, Row]]:
        self._apply()
        pending = dict(self._pending)  # only while writes fail
        low = received_from.encode() if received_from is not None else None
        high = received_to.encode() if received_to is not None else None
        # a value starts with its row's received date, so a date range is judged before
        # decoding; it carries its code too, so a scan need not make a key object per row
        for data in self._values(prefix):
            received = data[:_DATE]
            if (low is not None and received < low) or (high is not None and received > high):
                continue
            stored = _decode(data[_DATE:])
            if stored[0] not in pending:
                yield stored
        for code, row in pending.items():
            if (
                row is not None
                and code.startswith(prefix)
                and (received_from is None or row[4] >= received_from)
                and (received_to is None or row[4] <= received_to)
            ):
                yield code, row

    def _values(self, prefix: str) -> Iterator[bytes]:
        if not prefix:
            yield from cast(Iterator[bytes], self._db.values(read_opt=self._scan))
            return
        # keys are the codes, in byte order: a code prefix is one range, read from its start
        start = prefix.encode()
        for key, value in self._db.items(from_key=start, read_opt=self._scan):
            if not cast(bytes, key).startswith(start):
                return
            yield cast(bytes, value)

    def clear(self) -> None:
        self._pending.clear()
        self._db.close()
        self._db = self._open()

    def _apply(self) -> None:
        if not self._pending:
            return
        batch = WriteBatch(raw_mode=True)
        for code, row in self._pending.items():
            if row is None:
                batch.delete(code.encode())
            else:
                batch.put(code.encode(), _value(code, row))
        try:
            self._db.write(batch, write_opt=self._no_wal)
        except Exception as exc:  # rocksdict raises Exception with RocksDB's status text
            if not self._failing:
                log.warning(
                    "the view's archive %s cannot be written (%s): finished dossiers' rows "
                    "stay in memory until it can", self.path, exc,
                )  # fmt: skip
            self._failing = True
            return
        if self._failing:
            log.info("the view's archive %s is written again", self.path)
        self._failing = False
        self._pending.clear()

    def close(self) -> None:
        self._pending.clear()
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)


class ArchiveDirectory:
    """Where a worker's archives live: one fresh directory per view, all deleted at start
    (a crash leaves the last one behind)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.rmtree(root, ignore_errors=True)
        self._numbers = itertools.count()

    def new(self) -> RowArchive:
        path = self.root / f"rows-{next(self._numbers)}"
        try:
            return RocksArchive(path)
        except Exception as exc:  # a full disk: a view in memory beats no view
            log.warning(
                "the view's archive %s cannot be created (%s): finished dossiers' rows stay "
                "in memory until the next rebuild", path, exc,
            )  # fmt: skip
            return MemoryArchive()
