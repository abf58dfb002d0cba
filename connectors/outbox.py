"""Database outbox poller: for agency systems that can only write a table.

The agency system inserts one row per dossier event, in the same transaction as its own
change, into an outbox table (DDL below: :data:`SQLITE_DDL`, :data:`POSTGRES_DDL`)::

    id            integer/bigserial primary key, assigned by the database (never by the writer)
    dossier_code  the dossier's code (must equal the payload's dossier_code)
    payload       the event as JSON text: the JSON of hub.contract.inbound (the HTTP ingress's)
    created_at    when the row was written (informative only)

The poller reads rows with ``id >`` the last committed offset, in id order, validates each
through :class:`connectors.publisher.EventPublisher`, publishes the valid ones (Avro, keyed by
dossier code), waits until Kafka acknowledged all of them and only then commits the offset
(the last id) to its offset store. A crash between the acknowledgement and the commit re-sends
the batch; the hub deduplicates on ``event_id``. Rows are never updated or deleted by the
poller: pruning old rows (``DELETE ... WHERE id <= <committed offset>``) is the agency's job.

Bad rows (not JSON, not a valid event, ``dossier_code`` column not matching the payload) go
to ``<prefix>outbox.<name>.dlq`` with the payload bytes, the dossier code as key and the
``hub.errors.*`` headers (reason ``undecodable`` or ``validation``, source partition 0, source
offset = the row id, processor ``outbox``). They never block the rows after them. Fix the row
at the source and insert it again to replay it.

The outbox gap
--------------
An id cursor is only safe if no row can become visible *below* an id already passed. In
SQLite that holds: one writer at a time takes the next rowid and commits before the next
writer can start, so a missing id is a rolled-back insert forever (``AUTOINCREMENT`` is
required so that ids of deleted rows are never reused). In PostgreSQL it does not: ids come
from a sequence outside the transaction, so transaction A may take id 5, transaction B id 6,
and B commit first; a poller that sees 6 and moves its cursor past 5 would skip A's row.

A per-row filter on ``xmin`` (``WHERE xid < pg_snapshot_xmin(pg_current_snapshot())``) is
not enough with an id cursor: xids are assigned at a transaction's first write, ids at insert
time, so a row with a *lower* xid can carry a *higher* id (B writes something else first, A
inserts, B inserts: B's row has the older xid and the newer id) and pass the filter while A's
row with the smaller id is still in flight.

What the poller does instead (:class:`GapGuard`), with no lock and no extra column:

1. it reads in a REPEATABLE READ transaction and takes that transaction's snapshot
   (``pg_current_snapshot()``: xmin, xmax and the in-progress xids);
2. rows are handed on in id order while each id is exactly the previous + 1;
3. at a hole (an id missing between two visible ids, or between the committed offset and the
   first visible row) it stops. The missing ids were taken before the row above them
   committed, so they belong to transactions that were in progress in that snapshot (or were
   rolled back, or were taken by a bare ``nextval``). The poller remembers the in-progress
   xids it saw and the time, and passes the hole only once a later read's snapshot shows all
   of them finished *and* ``gap_grace_s`` has elapsed since the hole was first seen. The
   grace covers the instant between ``nextval`` and the inserting transaction taking its xid
   (an insert without an xid yet is not in the snapshot). If the missing row committed, the
   later read sees it and it goes out in order; if it rolled back, the hole is passed.

So no committed row is ever skipped, and order is strict id order, at the cost of at most one
poll plus the grace of latency per read that meets a hole (all holes of a read are timed
together). Requirements for PostgreSQL writers: the id comes from the column's default in the
INSERT itself, and the sequence keeps ``CACHE 1`` (the default; a session-cached sequence
hands out ids out of order across sessions).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, Protocol

from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.cli import add_kafka_arguments
from connectors.sdk.base import SourceConnector, SourceRecord
from connectors.sdk.config import ConnectorConfig
from hub.contract.event_types import DossierEventType, FeedbackEventType
from hub.contract.inbound import (
    AGENCY_CODE_PATTERN,
    DOSSIER_CODE_PATTERN,
    FieldProblem,
    InboundDossierEvent,
    InboundFeedbackEvent,
)
from hub.dlq import DeadLetter, DeadLetterPublisher, detail_from_problems, dlq_topic

__all__ = [
    "POSTGRES_DDL",
    "PROCESSOR",
    "SQLITE_DDL",
    "FileOffsetStore",
    "GapGuard",
    "MemoryOffsetStore",
    "OffsetStore",
    "OutboxConnector",
    "OutboxPoller",
    "OutboxRead",
    "OutboxRow",
    "OutboxSettings",
    "OutboxTable",
    "PollResult",
    "PostgresOutbox",
    "Snapshot",
    "SqliteOutbox",
    "check_row",
    "ident_of",
    "main",
]

log = logging.getLogger("connectors.outbox")

PROCESSOR: Final = "outbox"

#: SQLite: AUTOINCREMENT so an id is never reused after the newest row is deleted
SQLITE_DDL: Final = """\
CREATE TABLE IF NOT EXISTS {table} (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    dossier_code TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)"""

#: PostgreSQL: bigserial's sequence has CACHE 1 (keep it so, see the module docstring)
POSTGRES_DDL: Final = """\
CREATE TABLE IF NOT EXISTS {table} (
    id           bigserial PRIMARY KEY,
    dossier_code text NOT NULL,
    payload      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
)"""

_TABLE_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
_AGENCY_RE: Final = re.compile(AGENCY_CODE_PATTERN)
_DOSSIER_RE: Final = re.compile(DOSSIER_CODE_PATTERN)
_EVENT_TYPES: Final = frozenset(t.value for t in DossierEventType) | frozenset(
    t.value for t in FeedbackEventType
)


def _check_table(table: str) -> str:
    if not _TABLE_RE.fullmatch(table):
        raise ValueError(f"not a plain table name: {table!r}")
    return table


# --- offsets ----------------------------------------------------------------------------------


class OffsetStore(Protocol):
    """Where a source keeps its committed positions (one JSON object per key)."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...


class MemoryOffsetStore:
    """Offsets in memory (tests, embedding)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        return dict(value) if value is not None else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = dict(value)


class FileOffsetStore:
    """Offsets in one JSON file, rewritten atomically (temporary file, fsync, rename) on every
    put, so a crash leaves either the old or the new content. For standalone runners; the SDK
    runtime keeps offsets in its compacted Kafka topic instead."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{self.path} is not an offsets file (a JSON object)")
        self._data: dict[str, dict[str, Any]] = loaded

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            value = self._data.get(key)
            return dict(value) if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._data[key] = dict(value)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(self._data, out, ensure_ascii=False, sort_keys=True)
                    out.flush()
                    os.fsync(out.fileno())
                Path(tmp).replace(self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    Path(tmp).unlink()
                raise


# --- reading the table ------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    id: int
    dossier_code: str
    payload: str
    created_at: str = ""


@dataclass(frozen=True)
class Snapshot:
    """A PostgreSQL snapshot (``pg_current_snapshot()``: ``xmin:xmax:xip,...``)."""

    xmin: int
    xmax: int
    xip: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        try:
            xmin, xmax, xip = text.strip().split(":")
            return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))
        except ValueError:
            raise ValueError(f"not a snapshot: {text!r}") from None

    def finished(self, xids: Iterable[int]) -> bool:
        """True when every transaction in ``xids`` had ended (committed or aborted) when this
        snapshot was taken."""
        return all(x < self.xmax and x not in self.xip for x in xids)


@dataclass(frozen=True)
class OutboxRead:
    """Rows after the cursor in id order and the snapshot they were read in (``None``: the
    database cannot show a row below a visible one later, holes are final: SQLite)."""

    rows: list[OutboxRow]
    snapshot: Snapshot | None = None


class OutboxTable(Protocol):
    def read(self, after: int, limit: int) -> OutboxRead: ...

    def close(self) -> None: ...


class SqliteOutbox:
    """An outbox table in a SQLite file (stdlib ``sqlite3``)."""

    def __init__(self, path: str | Path, table: str = "outbox", *, create: bool = False) -> None:
        self.path = str(path)
        self.table = _check_table(table)
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        if create:
            with self._conn:
                self._conn.execute(SQLITE_DDL.format(table=self.table))

    def read(self, after: int, limit: int) -> OutboxRead:
        cur = self._conn.execute(
            f"SELECT id, dossier_code, payload, created_at FROM {self.table} "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        rows = [OutboxRow(int(i), str(c), _text(p), str(t)) for i, c, p, t in cur.fetchall()]
        self._conn.rollback()  # end the implicit read transaction
        return OutboxRead(rows, None)

    def close(self) -> None:
        self._conn.close()


class PostgresOutbox:
    """An outbox table in PostgreSQL (psycopg 3): each read runs in its own REPEATABLE READ
    transaction and returns the snapshot it saw, for :class:`GapGuard`."""

    def __init__(self, dsn: str, table: str = "outbox", *, create: bool = False) -> None:
        import psycopg
        from psycopg import sql

        self.dsn = dsn
        self.table = _check_table(table)
        self._ident = sql.Identifier(*self.table.split("."))
        self._conn = psycopg.connect(dsn, autocommit=False)
        self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._select = sql.SQL(
            "SELECT id, dossier_code, payload, created_at::text FROM {} "
            "WHERE id > %s ORDER BY id LIMIT %s"
        ).format(self._ident)
        if create:
            with self._conn.transaction():
                self._conn.execute(sql.SQL(POSTGRES_DDL.replace("{table}", "{}")).format(
                    self._ident
                ))  # fmt: skip
            self._conn.commit()

    def read(self, after: int, limit: int) -> OutboxRead:
        try:
            with self._conn.cursor() as cur:
                # the first statement fixes the transaction's snapshot; the second reads in it
                cur.execute("SELECT pg_current_snapshot()::text")
                found = cur.fetchone()
                assert found is not None
                snapshot = Snapshot.parse(str(found[0]))
                cur.execute(self._select, (after, limit))
                rows = [
                    OutboxRow(int(i), str(c), _text(p), str(t)) for i, c, p, t in cur.fetchall()
                ]
        finally:
            self._conn.rollback()
        return OutboxRead(rows, snapshot)

    def close(self) -> None:
        self._conn.close()


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value) if value is not None else ""


@dataclass
class _Hole:
    in_progress: frozenset[int]
    seen_at: float


class GapGuard:
    """Which rows of a read may go now without ever skipping a row that commits later.

    Rows pass in id order while each id is the previous + 1. At a hole, see the module
    docstring: passed once every transaction in progress when the hole was first seen has
    ended (by a later read's snapshot) and ``grace_s`` has elapsed. Reads without a snapshot
    (SQLite) have final holes and pass whole.
    """

    def __init__(self, grace_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_s = grace_s
        self._clock = clock
        self._holes: dict[int, _Hole] = {}  # keyed by the id below the hole

    @property
    def pending_holes(self) -> int:
        return len(self._holes)

    def admit(self, last: int, read: OutboxRead) -> list[OutboxRow]:
        if read.snapshot is None:
            return list(read.rows)
        now = self._clock()
        self._holes = {k: h for k, h in self._holes.items() if k >= last}
        previous = last
        for row in read.rows:  # note every hole of this read, so they are timed together
            if row.id > previous + 1 and previous not in self._holes:
                self._holes[previous] = _Hole(read.snapshot.xip, now)
            previous = row.id
        admitted: list[OutboxRow] = []
        previous = last
        for row in read.rows:
            if row.id <= previous:
                continue  # never expected; a cursor never goes back
            if row.id > previous + 1:
                hole = self._holes[previous]
                if now - hole.seen_at < self.grace_s or not read.snapshot.finished(
                    hole.in_progress
                ):
                    break
                del self._holes[previous]
                log.debug("outbox ids %d..%d never committed: passed", previous + 1, row.id - 1)
            admitted.append(row)
            previous = row.id
        return admitted


# --- checking and publishing ----------------------------------------------------------------


@dataclass(frozen=True)
class Ident:
    """Dead-letter header fields that could be read and have their code format."""

    agency_code: str | None = None
    event_type: str | None = None
    dossier_code: str | None = None


def ident_of(data: object) -> Ident:
    if not isinstance(data, dict):
        return Ident()

    def code(name: str, pattern: re.Pattern[str]) -> str | None:
        value = data.get(name)
        if isinstance(value, str) and len(value) <= 64 and pattern.fullmatch(value.strip()):
            return value.strip()
        return None

    event_type = data.get("event_type")
    return Ident(
        agency_code=code("agency_code", _AGENCY_RE),
        event_type=event_type
        if isinstance(event_type, str) and event_type in _EVENT_TYPES
        else None,
        dossier_code=code("dossier_code", _DOSSIER_RE),
    )


Event = InboundDossierEvent | InboundFeedbackEvent


class Validator(Protocol):
    def validate(self, data: Any) -> Event | list[FieldProblem]: ...


@dataclass(frozen=True)
class Rejection:
    reason: str  # "undecodable" or "validation"
    problems: tuple[FieldProblem, ...]
    ident: Ident = field(default_factory=Ident)


def check_row(validator: Validator, row: OutboxRow) -> Event | Rejection:
    """The valid event of an outbox row, or why it has none (never quoting the payload)."""
    try:
        data = json.loads(row.payload)
    except json.JSONDecodeError as exc:
        problem = FieldProblem(
            "payload", "json", f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        )
        return Rejection("undecodable", (problem,))
    if not isinstance(data, dict):
        return Rejection("validation", (FieldProblem("", "type", "expected a JSON object"),))
    result = validator.validate(data)
    if isinstance(result, list):
        return Rejection("validation", tuple(result), ident_of(data))
    if result.dossier_code != row.dossier_code.strip():
        problem = FieldProblem(
            "dossier_code", "mismatch", "the row's dossier_code column differs from the payload's"
        )
        return Rejection("validation", (problem,), ident_of(data))
    return result


class Sender(Protocol):
    """What the poller needs of :class:`connectors.publisher.EventPublisher`."""

    def validate(self, data: Any) -> Event | list[FieldProblem]: ...

    def send_async(self, event: Event) -> Any: ...


class DeadLetterSink(Protocol):
    def publish(
        self, letter: DeadLetter, key: bytes | None, value: bytes | None, original_headers: Any = ()
    ) -> None: ...


@dataclass
class PollResult:
    read: int = 0
    published: int = 0
    dead_lettered: int = 0
    committed: int | None = None  # the offset committed by this poll, if any
    waiting_on_gap: bool = False


class OutboxPoller:
    """Reads the outbox after the committed id, publishes, waits for Kafka, commits.

    ``name`` identifies this outbox: the offset key is ``outbox:<name>`` and dead letters go to
    ``<prefix>outbox.<name>.dlq``.
    """

    def __init__(
        self,
        table: OutboxTable,
        publisher: Sender,
        offsets: OffsetStore,
        dead_letters: DeadLetterSink,
        *,
        name: str,
        topic_prefix: str = "",
        batch_size: int = 500,
        gap_grace_s: float = 1.0,
        ack_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.publisher = publisher
        self.offsets = offsets
        self.dead_letters = dead_letters
        self.name = name
        self.offset_key = f"outbox:{name}"
        self.source_topic = f"{topic_prefix}outbox.{name}"
        self.dlq = dlq_topic(self.source_topic)
        self.batch_size = batch_size
        self.ack_timeout_s = ack_timeout_s
        self.guard = GapGuard(gap_grace_s, clock)
        self.totals = PollResult()

    @property
    def committed_id(self) -> int:
        stored = self.offsets.get(self.offset_key)
        return int(stored["id"]) if stored else 0

    def poll_once(self) -> PollResult:
        """One read, publish and commit. Raises (KafkaError, a database error...) without
        committing when something other than a row is wrong."""
        last = self.committed_id
        read = self.table.read(last, self.batch_size)
        rows = self.guard.admit(last, read)
        result = self.publish(rows)
        result.read = len(read.rows)
        result.waiting_on_gap = len(rows) < len(read.rows)
        return result

    def publish(self, rows: Sequence[OutboxRow]) -> PollResult:
        """Publish or dead-letter ``rows`` (in id order), wait for every acknowledgement, then
        commit the last id."""
        result = PollResult()
        futures = []
        for row in rows:
            outcome = check_row(self.publisher, row)
            if isinstance(outcome, Rejection):
                self.dead_letter(row, outcome)
                result.dead_lettered += 1
            else:
                futures.append(self.publisher.send_async(outcome))
        for future in futures:
            future.get(timeout=self.ack_timeout_s)
        result.published = len(futures)
        if rows:
            self.commit(rows[-1].id)
            result.committed = rows[-1].id
        self.totals.published += result.published
        self.totals.dead_lettered += result.dead_lettered
        return result

    def commit(self, row_id: int) -> None:
        self.offsets.put(self.offset_key, {"id": row_id})

    def dead_letter(self, row: OutboxRow, rejection: Rejection) -> None:
        letter = self.letter(row, rejection)
        self.dead_letters.publish(letter, row.dossier_code.encode(), row.payload.encode())
        log.warning("outbox %s row %d dead-lettered: %s", self.name, row.id, letter.detail)

    def letter(self, row: OutboxRow, rejection: Rejection) -> DeadLetter:
        summary = f"{len(rejection.problems)} problem(s) in outbox row {row.id}"
        return DeadLetter(
            reason=rejection.reason,
            detail=f"row {row.id}: {detail_from_problems(list(rejection.problems))}",
            exception_class="hub.contract.inbound.FieldProblem",
            exception_message=summary,
            source_topic=self.source_topic,
            source_partition=0,
            source_offset=row.id,
            processor=PROCESSOR,
            agency_code=rejection.ident.agency_code,
            event_type=rejection.ident.event_type,
            dossier_code=rejection.ident.dossier_code,
        )

    def run(self, stop: threading.Event, interval_s: float = 0.5) -> None:
        """Poll until ``stop``; an idle poll or one waiting on a hole sleeps ``interval_s``; a
        failed one (database or Kafka unreachable) is retried with capped backoff."""
        failures = 0
        while not stop.is_set():
            try:
                result = self.poll_once()
            except Exception as exc:  # database or Kafka away: nothing was committed
                failures += 1
                delay = min(30.0, interval_s * 2 ** min(failures, 6))
                log.warning("outbox %s: %s: %s; retrying in %.1fs", self.name,
                            type(exc).__name__, exc, delay)  # fmt: skip
                stop.wait(delay)
                continue
            failures = 0
            if result.read == 0 or result.waiting_on_gap or result.committed is None:
                stop.wait(interval_s)


# --- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from hub.settings import HubSettings

    hub = HubSettings()
    parser = argparse.ArgumentParser(
        prog="python -m connectors.outbox",
        description="Publish the rows of an agency's outbox table (SQLite or PostgreSQL) as "
        "dossier events, in id order, committing the last id only after Kafka acknowledged.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sqlite", type=Path, help="SQLite database file")
    where.add_argument(
        "--dsn-env", help="name of the environment variable holding the PostgreSQL DSN"
    )
    parser.add_argument("--table", default="outbox", help="outbox table (default %(default)s)")
    parser.add_argument("--name", required=True, help="this outbox's name (offsets, DLQ topic)")
    parser.add_argument("--offsets-file", type=Path, required=True, help="offsets JSON file")
    parser.add_argument("--create", action="store_true", help="create the table if missing")
    parser.add_argument("--interval", type=float, default=0.5, help="idle poll pause, seconds")
    parser.add_argument("--gap-grace", type=float, default=1.0, help="hole grace, seconds")
    add_kafka_arguments(parser, hub)
    parser.add_argument("-l", "--log-level", default="info")
    return parser


def main(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    from connectors.publisher import EventPublisher

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    table: OutboxTable
    if args.sqlite is not None:
        table = SqliteOutbox(args.sqlite, args.table, create=args.create)
    else:
        dsn = os.environ.get(args.dsn_env)
        if not dsn:
            print(f"outbox: environment variable {args.dsn_env} is not set", file=sys.stderr)
            return 2
        table = PostgresOutbox(dsn, args.table, create=args.create)
    publisher = EventPublisher(
        args.bootstrap_server, args.registry_url, topic_prefix=args.topic_prefix,
        client_id=f"outbox-{args.name}",
    )  # fmt: skip
    dead_letters = DeadLetterPublisher(args.bootstrap_server, client_id=f"outbox-{args.name}")
    poller = OutboxPoller(
        table, publisher, FileOffsetStore(args.offsets_file), dead_letters, name=args.name,
        topic_prefix=args.topic_prefix, gap_grace_s=args.gap_grace,
    )  # fmt: skip
    stopping = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
    try:
        poller.run(stopping, args.interval)
    except KafkaError as exc:
        print(f"outbox: stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        publisher.close()
        dead_letters.close()
        table.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --- as an SDK connector ------------------------------------------------------------------------


class OutboxSettings(BaseModel):
    """``settings`` of an outbox connector: ``backend`` ``sqlite`` (``path``) or ``postgres``
    (``dsn``, a secret: give it as ``${env:NAME}``)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["sqlite", "postgres"]
    path: Path | None = None
    dsn: SecretStr | None = None
    table: str = Field("outbox", pattern=_TABLE_RE.pattern)
    batch_size: int = Field(500, ge=1, le=10_000)
    gap_grace_s: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _where(self) -> OutboxSettings:
        if self.backend == "sqlite" and self.path is None:
            raise ValueError("a sqlite outbox needs path")
        if self.backend == "postgres" and (self.dsn is None or not self.dsn.get_secret_value()):
            raise ValueError("a postgres outbox needs dsn")
        return self


class OutboxConnector(SourceConnector):
    """Database outbox table (SQLite or PostgreSQL), read in id order without gaps."""

    Settings: ClassVar[type[BaseModel]] = OutboxSettings
    settings: OutboxSettings

    def __init__(self, config: ConnectorConfig, settings: BaseModel | None = None) -> None:
        super().__init__(config, settings)
        self.table: OutboxTable | None = None
        self.guard = GapGuard(self.settings.gap_grace_s)
        self.cursor = 0

    @property
    def source_partition(self) -> str:
        return f"outbox:{self.settings.table}"

    def start(self) -> None:
        s = self.settings
        if s.backend == "sqlite":
            assert s.path is not None
            self.table = SqliteOutbox(s.path, s.table)
        else:
            assert s.dsn is not None
            self.table = PostgresOutbox(s.dsn.get_secret_value(), s.table)
        stored = self.context.offset(self.source_partition)
        self.cursor = int(stored["id"]) if stored else 0

    def poll(self) -> list[SourceRecord]:
        if self.table is None:
            raise RuntimeError("poll before start")
        read = self.table.read(self.cursor, self.settings.batch_size)
        rows = self.guard.admit(self.cursor, read)
        records = []
        for row in rows:
            try:
                value = json.loads(row.payload)
            except json.JSONDecodeError:
                value = None
            # a row that is not a JSON object is handed on empty: the runtime's validation
            # dead-letters it with the row's bytes and its id in the source-offset header
            records.append(
                SourceRecord(
                    value=value if isinstance(value, dict) else {},
                    source_partition=self.source_partition,
                    source_offset={"id": row.id},
                    raw=row.payload.encode(),
                )
            )
        if rows:
            self.cursor = rows[-1].id
        return records

    def stop(self) -> None:
        if self.table is not None:
            self.table.close()
            self.table = None

    def health(self) -> dict[str, Any]:
        return {"status": "up" if self.table is not None else "down", "cursor": self.cursor,
                "pending_holes": self.guard.pending_holes}  # fmt: skip
