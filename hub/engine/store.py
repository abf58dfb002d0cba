"""The worker's local state: one store per partition, states and offsets in one write.

Each partition number ``p`` of the hub (the dossiers whose code hashes to ``p``, fed by
``dossier.events[p]`` and ``feedback.events[p]``) has a store of its own under the data
directory. A store holds

* every dossier's state, keyed by its code;
* one meta entry (:class:`Meta`): the next offset of each input partition whose records
  the states include, the next offset of the changelog partition they were restored or
  written up to, and the audit chains' heads.

A checkpoint writes its states and the new meta in one RocksDB write batch, after the Kafka
transaction that carried the same states to the changelog committed. So a store is always
a committed checkpoint of the past, never half of one; a crash between the Kafka commit and
the write leaves a store one checkpoint behind, which the changelog brings up to date
(``hub.engine.restore``).

``store = "memory"`` keeps the same contract in a dict (tests, throwaway workers).

Memory: RocksDB's own is bounded per worker, not per dossier. Every store of a worker reads
through one LRU block cache (:class:`BlockCache`) that also holds the tables' index and
filter blocks (by default RocksDB keeps those outside any cache, growing with the data), and
whole-store scans (a view rebuild, a restore's checks) read around it, so a rebalance does
not fill it with every state once. Memtables are bounded per store (two at most).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch

__all__ = ["META_KEY", "BlockCache", "Meta", "PartitionStore", "open_store"]

#: the meta entry's key; no dossier code starts with a NUL byte
META_KEY = b"\x00meta"


@dataclass
class Meta:
    """What a partition's store is a checkpoint of."""

    #: input topic -> next offset to read (records below it are in the states)
    inputs: dict[str, int] = field(default_factory=dict)
    #: next changelog offset to restore from (records below it are in the store)
    changelog_next: int = 0
    #: audit chain key -> the chain's last entry (hub.audit.chain)
    audit_heads: dict[str, dict[str, Any]] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(
            {"inputs": self.inputs, "changelog": self.changelog_next, "audit": self.audit_heads},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Meta:
        if raw is None:
            return cls()
        data = json.loads(raw)
        return cls(
            inputs={str(k): int(v) for k, v in data.get("inputs", {}).items()},
            changelog_next=int(data.get("changelog", 0)),
            audit_heads=dict(data.get("audit", {})),
        )

    def copy(self) -> Meta:
        return Meta(dict(self.inputs), self.changelog_next, dict(self.audit_heads))


class DiskFullError(OSError):
    """The store's disk has no space left for a write (RocksDB's ``IO error: No space left
    on device``); the write did not happen, and the store must be reopened once space is
    freed (RocksDB refuses every later write on the handle that failed)."""


#: RocksDB's words for ENOSPC (rocksdict raises a plain Exception with RocksDB's message)
_NO_SPACE = "No space left on device"


class PartitionStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def meta(self) -> Meta: ...

    def write(self, states: Mapping[bytes, bytes | None], meta: Meta) -> None:
        """States (None deletes) and the meta, all or nothing."""

    def states(self) -> Iterator[tuple[bytes, bytes]]: ...

    def close(self) -> None: ...


class BlockCache:
    """The one block cache of a worker's stores (``HUB_ROCKSDB_BLOCK_CACHE_MB``), data,
    index and filter blocks alike: a capacity, not a per-partition budget, so a worker's
    RocksDB memory does not grow with the partitions or the dossiers it holds."""

    def __init__(self, megabytes: int) -> None:
        self.cache = Cache(megabytes * 1024 * 1024)

    def usage(self) -> int:
        return int(self.cache.get_usage())

    def table_options(self) -> BlockBasedOptions:
        table = BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        # the newest tables' index and filters stay in (most lookups hit recent dossiers)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_bloom_filter(10, False)  # a miss (a new dossier) reads no data block
        return table


def _scan_options() -> ReadOptions:
    options = ReadOptions()
    options.fill_cache(False)  # type: ignore[call-arg]  # the stub omits the flag
    return options


class RocksStore:
    """A partition's store in RocksDB (rocksdict), bounded memory (see HubSettings)."""

    def __init__(self, path: Path, *, write_buffer_mb: int, cache: BlockCache) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(write_buffer_mb * 1024 * 1024)
        options.set_max_write_buffer_number(2)
        options.set_block_based_table_factory(cache.table_options())
        self._cache = cache  # RocksDB requires the cache to outlive the handle
        try:
            self._db = Rdict(str(path), options)
        except Exception as exc:  # opening replays the WAL into a table file: needs space
            if _NO_SPACE in str(exc):
                raise DiskFullError(28, f"{path}: {exc}") from exc
            raise

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def meta(self) -> Meta:
        return Meta.decode(self.get(META_KEY))

    def write(self, states: Mapping[bytes, bytes | None], meta: Meta) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in states.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(META_KEY, meta.encode())
        try:
            self._db.write(batch)
        except Exception as exc:  # rocksdict raises Exception with RocksDB's status text
            if _NO_SPACE in str(exc):
                raise DiskFullError(28, f"{self.path}: {exc}") from exc
            raise

    def states(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(read_opt=_scan_options()):
            if key != META_KEY:
                yield cast(bytes, key), cast(bytes, value)

    def close(self) -> None:
        try:
            self._db.close()
        except Exception as exc:  # a handle that failed a write cannot flush: its data is
            # in the WAL and the changelog, and reopening recovers it
            if _NO_SPACE not in str(exc) and "previous error" not in str(exc):
                raise


class MemoryStore:
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def meta(self) -> Meta:
        return Meta.decode(self._data.get(META_KEY))

    def write(self, states: Mapping[bytes, bytes | None], meta: Meta) -> None:
        for key, value in states.items():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value
        self._data[META_KEY] = meta.encode()

    def states(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in list(self._data.items()):
            if key != META_KEY:
                yield key, value

    def close(self) -> None:
        pass


def open_store(
    kind: str,
    data_dir: Path,
    partition: int,
    *,
    write_buffer_mb: int = 4,
    cache: BlockCache | None = None,
) -> PartitionStore:
    if kind == "memory":
        return MemoryStore()
    return RocksStore(
        data_dir / f"partition-{partition}",
        write_buffer_mb=write_buffer_mb,
        cache=cache if cache is not None else BlockCache(16),
    )


def wipe(data_dir: Path, partition: int) -> None:
    """Delete a partition's store (it will be restored from the changelog)."""
    shutil.rmtree(data_dir / f"partition-{partition}", ignore_errors=True)
