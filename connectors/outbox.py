"""Database outbox: for agency systems that can only write a table.

Run it as a connector (``connector.class = "outbox"``, ``hub connector run --config FILE``;
``connectors/examples/outbox-sqlite.toml``, ``outbox-postgres.toml``). The agency system
inserts one row per dossier event, in the same transaction as its own change, into an outbox
table (DDL below: :data:`SQLITE_DDL`, :data:`POSTGRES_DDL`; ``settings.create_table = true``
creates it when missing)::

    id            integer/bigserial primary key, assigned by the database (never by the writer)
    dossier_code  the dossier's code (must equal the payload's dossier_code)
    payload       the event as JSON text: the JSON of hub.contract.inbound (the HTTP ingress's)
    created_at    when the row was written (informative only)

:class:`OutboxConnector` reads rows with ``id >`` the last committed offset, in id order, and
hands them to the SDK runtime (:mod:`connectors.sdk.runtime`), which validates and publishes
them (Avro, keyed by dossier code), waits until Kafka acknowledged all of them and only then
stores the offset (``{"id": <last id>}`` under source partition ``outbox:<table>``) in
``<prefix>hub.connect.offsets``. A crash between the acknowledgement and the commit re-sends
the batch; the hub deduplicates on ``event_id``. Rows are never updated or deleted by the
connector: pruning old rows (``DELETE ... WHERE id <= <committed offset>``) is the agency's
job.

Bad rows go to the runtime's dead-letter topic (``<prefix>dossier.events.dlq`` with
``errors.tolerance = "all"``) with the row's bytes and the ``hub.errors.*`` headers: reason
``undecodable`` (not JSON) or ``validation`` (not a valid event, or its ``dossier_code``
column differs from the payload's), and ``hub.connect.source.partition`` /
``hub.connect.source.offset`` (``{"id": <row id>}``) saying which row it was. They never block
the rows after them. Fix the row at the source and insert it again to replay it. A database
that cannot be reached is retried per ``errors.retry.*`` (the connector reconnects).

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

What the connector does instead (:class:`GapGuard`), with no lock and no extra column:

1. it reads in a REPEATABLE READ transaction and takes that transaction's snapshot
   (``pg_current_snapshot()``: xmin, xmax and the in-progress xids);
2. rows are handed on in id order while each id is exactly the previous + 1;
3. at a hole (an id missing between two visible ids, or between the committed offset and the
   first visible row) it stops. The missing ids were taken before the row above them
   committed, so they belong to transactions that were in progress in that snapshot (or were
   rolled back, or were taken by a bare ``nextval``). The connector remembers the in-progress
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

import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.sdk.base import SourceConnector, SourceRecord
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import RetriableError
from hub.contract.inbound import FieldProblem

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "POSTGRES_DDL",
    "SQLITE_DDL",
    "GapGuard",
    "OutboxConnector",
    "OutboxRead",
    "OutboxRow",
    "OutboxSettings",
    "OutboxTable",
    "PostgresOutbox",
    "Snapshot",
    "SqliteOutbox",
    "row_record",
]

log = logging.getLogger("connectors.outbox")

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


def _check_table(table: str) -> str:
    if not _TABLE_RE.fullmatch(table):
        raise ValueError(f"not a plain table name: {table!r}")
    return table


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
    def read(self, after: int, limit: int) -> OutboxRead:
        """Rows with ``id > after`` in id order; raises :class:`RetriableError` when the
        database cannot answer now."""
        ...

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
        try:
            cur = self._conn.execute(
                f"SELECT id, dossier_code, payload, created_at FROM {self.table} "
                "WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            )
            rows = [OutboxRow(int(i), str(c), _text(p), str(t)) for i, c, p, t in cur.fetchall()]
            self._conn.rollback()  # end the implicit read transaction
        except sqlite3.Error as exc:  # locked past busy_timeout, I/O error, table dropped
            raise RetriableError(f"sqlite outbox {self.path}: {exc}") from exc
        return OutboxRead(rows, None)

    def close(self) -> None:
        self._conn.close()


class PostgresOutbox:
    """An outbox table in PostgreSQL (psycopg 3): each read runs in its own REPEATABLE READ
    transaction and returns the snapshot it saw, for :class:`GapGuard`. The connection is
    opened at the first read and opened again after it failed, so a database restart costs
    a few retried polls, not the connector."""

    def __init__(self, dsn: str, table: str = "outbox", *, create: bool = False) -> None:
        from psycopg import sql

        self.dsn = dsn
        self.table = _check_table(table)
        self.create = create
        self._ident = sql.Identifier(*self.table.split("."))
        self._conn: psycopg.Connection[Any] | None = None
        self._select = sql.SQL(
            "SELECT id, dossier_code, payload, created_at::text FROM {} "
            "WHERE id > %s ORDER BY id LIMIT %s"
        ).format(self._ident)

    def _connection(self) -> psycopg.Connection[Any]:
        import psycopg
        from psycopg import sql

        if self._conn is not None:
            return self._conn
        conn = psycopg.connect(self.dsn, autocommit=False)
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            if self.create:
                with conn.transaction():
                    conn.execute(sql.SQL(POSTGRES_DDL.replace("{table}", "{}")).format(
                        self._ident
                    ))  # fmt: skip
                conn.commit()
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def read(self, after: int, limit: int) -> OutboxRead:
        import psycopg

        try:
            conn = self._connection()
            try:
                with conn.cursor() as cur:
                    # the first statement fixes the transaction's snapshot; the second reads
                    # in it
                    cur.execute("SELECT pg_current_snapshot()::text")
                    found = cur.fetchone()
                    assert found is not None
                    snapshot = Snapshot.parse(str(found[0]))
                    cur.execute(self._select, (after, limit))
                    rows = [
                        OutboxRow(int(i), str(c), _text(p), str(t)) for i, c, p, t in cur.fetchall()
                    ]
            finally:
                if not conn.closed:
                    conn.rollback()
        except psycopg.Error as exc:  # server away or restarted: reconnect on the next read
            self.close()
            raise RetriableError(
                f"postgres outbox {self.table}: {type(exc).__name__}: {exc}"
            ) from exc
        return OutboxRead(rows, snapshot)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


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


# --- rows as source records -------------------------------------------------------------------


def row_record(row: OutboxRow, source_partition: str) -> SourceRecord:
    """One row as a source record. What only the row can show is checked here (the payload
    is JSON, an object, for the dossier its ``dossier_code`` column names): such a row
    carries its problems and the runtime dead-letters it without validating it; the rest of
    the validation is the runtime's. The row's bytes go with it, for the dead letter."""
    offset = {"id": row.id}
    raw = row.payload.encode()
    try:
        data = json.loads(row.payload)
    except json.JSONDecodeError as exc:
        problem = FieldProblem(
            "payload", "json", f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        )
        return SourceRecord({}, source_partition, offset, raw, (problem,), "undecodable")
    if not isinstance(data, dict):
        problem = FieldProblem("", "type", "expected a JSON object")
        return SourceRecord({}, source_partition, offset, raw, (problem,))
    code = data.get("dossier_code")
    if isinstance(code, str) and code.strip() != row.dossier_code.strip():
        # keyed and routed by the payload, recorded by the agency under the column: a row
        # that disagrees with itself is not guessed at
        problem = FieldProblem(
            "dossier_code", "mismatch", "the row's dossier_code column differs from the payload's"
        )
        return SourceRecord(data, source_partition, offset, raw, (problem,))
    return SourceRecord(data, source_partition, offset, raw)


# --- the connector ------------------------------------------------------------------------------


class OutboxSettings(BaseModel):
    """``settings`` of an outbox connector: ``backend`` ``sqlite`` (``path``) or ``postgres``
    (``dsn``, a secret: give it as ``${env:NAME}``)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["sqlite", "postgres"]
    path: Path | None = None
    dsn: SecretStr | None = None
    table: str = Field("outbox", pattern=_TABLE_RE.pattern)
    #: create the table (:data:`SQLITE_DDL` / :data:`POSTGRES_DDL`) when it is missing
    create_table: bool = False
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
        self.last_error: str | None = None

    @property
    def source_partition(self) -> str:
        return f"outbox:{self.settings.table}"

    def start(self) -> None:
        s = self.settings
        if s.backend == "sqlite":
            assert s.path is not None
            self.table = SqliteOutbox(s.path, s.table, create=s.create_table)
        else:
            assert s.dsn is not None
            self.table = PostgresOutbox(s.dsn.get_secret_value(), s.table, create=s.create_table)
        stored = self.context.offset(self.source_partition)
        self.cursor = int(stored["id"]) if stored else 0

    def poll(self) -> list[SourceRecord]:
        if self.table is None:
            raise RuntimeError("poll before start")
        try:
            read = self.table.read(self.cursor, self.settings.batch_size)
        except RetriableError as exc:
            self.last_error = str(exc)
            raise
        self.last_error = None
        rows = self.guard.admit(self.cursor, read)
        if rows:
            self.cursor = rows[-1].id
        return [row_record(row, self.source_partition) for row in rows]

    def pending(self) -> bool:
        # rows wait behind an id hole: "nothing now" is not "nothing there"
        return self.guard.pending_holes > 0

    def stop(self) -> None:
        if self.table is not None:
            self.table.close()
            self.table = None

    def health(self) -> dict[str, Any]:
        up = self.table is not None and self.last_error is None
        out: dict[str, Any] = {"status": "up" if up else "down", "cursor": self.cursor,
                               "pending_holes": self.guard.pending_holes}  # fmt: skip
        if self.last_error is not None:
            out["error"] = self.last_error
        return out
