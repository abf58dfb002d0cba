"""The outbox connector without Kafka: gap rules, SQLite reads, and, through the real SDK
runtime (``tests/fixtures/fake_kafka.py`` stands in for the broker), order, commit after the
acknowledgement, restart and dead letters."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.outbox import (
    GapGuard,
    OutboxConnector,
    OutboxRead,
    OutboxRow,
    OutboxTable,
    Snapshot,
    SqliteOutbox,
)
from connectors.scenarios import VN, dossier_code, dossier_life
from connectors.sdk import ConnectorFailedError, RetriableError
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.runtime import HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION
from tests.fixtures.fake_kafka import FakeKafka, fake_kafka

__all__ = ["fake_kafka"]  # the fixture, used by name

JUSTICE = "000.00.03.H40"
CRIMINAL_RECORD = "2.000488"
ROWS = "outbox:outbox"  # the source partition of table "outbox"


def events(n: int = 1) -> list[dict[str, Any]]:
    start = datetime.now(VN) - timedelta(days=1)
    out: list[dict[str, Any]] = []
    for i in range(n):
        out += dossier_life(dossier_code(JUSTICE, start, 100 + i), JUSTICE, CRIMINAL_RECORD, start)
    return out


def row(i: int) -> OutboxRow:
    return OutboxRow(i, "c", "{}")


# --- snapshots and holes ----------------------------------------------------------------------


def test_snapshot_parses_and_knows_which_transactions_ended() -> None:
    snap = Snapshot.parse("100:105:100,103")
    assert snap == Snapshot(100, 105, frozenset({100, 103}))
    assert snap.finished([99, 101, 104])
    assert not snap.finished([100])  # in progress
    assert not snap.finished([105])  # started after the snapshot
    assert Snapshot.parse("7:7:") == Snapshot(7, 7)
    with pytest.raises(ValueError):
        Snapshot.parse("nonsense")


def test_contiguous_rows_pass_and_a_hole_waits_for_its_transactions_and_the_grace() -> None:
    now = [0.0]
    guard = GapGuard(grace_s=1.0, clock=lambda: now[0])
    busy = Snapshot(50, 60, frozenset({55}))
    # 1, 2 then a hole (3 missing): only 1 and 2 pass
    assert guard.admit(0, OutboxRead([row(1), row(2), row(4)], busy)) == [row(1), row(2)]
    assert guard.pending_holes == 1
    # still in progress after the grace: nothing passes
    now[0] = 5.0
    assert guard.admit(2, OutboxRead([row(4)], Snapshot(50, 61, frozenset({55})))) == []
    # the transaction ended but the row never came (rolled back): the hole is passed
    assert guard.admit(2, OutboxRead([row(4), row(5)], Snapshot(61, 61))) == [row(4), row(5)]
    assert guard.pending_holes == 0


def test_a_hole_is_never_passed_before_the_grace_even_with_nothing_in_progress() -> None:
    now = [0.0]
    guard = GapGuard(grace_s=1.0, clock=lambda: now[0])
    quiet = Snapshot(70, 70)
    assert guard.admit(0, OutboxRead([row(2)], quiet)) == []  # id 1 may be mid-insert
    now[0] = 0.5
    assert guard.admit(0, OutboxRead([row(2)], quiet)) == []
    now[0] = 1.0
    # the late row 1 committed meanwhile: it comes first, no hole any more
    assert guard.admit(0, OutboxRead([row(1), row(2)], quiet)) == [row(1), row(2)]


def test_every_hole_of_a_read_is_timed_together() -> None:
    now = [0.0]
    guard = GapGuard(grace_s=1.0, clock=lambda: now[0])
    snap = Snapshot(10, 10)
    rows = [row(2), row(4), row(6)]
    assert guard.admit(0, OutboxRead(rows, snap)) == []
    now[0] = 1.0
    assert guard.admit(0, OutboxRead(rows, snap)) == rows


def test_reads_without_a_snapshot_have_final_holes() -> None:
    guard = GapGuard(grace_s=100)
    assert guard.admit(0, OutboxRead([row(3), row(9)])) == [row(3), row(9)]


# --- SQLite through the runtime ----------------------------------------------------------------


def insert(db: Path, items: list[tuple[str, str]]) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("INSERT INTO outbox (dossier_code, payload) VALUES (?, ?)", items)
    conn.close()


def as_rows(evs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["dossier_code"], json.dumps(e, ensure_ascii=False)) for e in evs]


def sqlite_config(kafka: FakeKafka, db: Path, **extra: Any) -> ConnectorConfig:
    settings = {"backend": "sqlite", "path": str(db), **extra.pop("settings", {})}
    return kafka.config(OutboxConnector, settings, **extra)


def test_the_connector_publishes_in_order_commits_after_ack_and_resumes(
    tmp_path: Path, fake_kafka: FakeKafka
) -> None:
    db = tmp_path / "agency.db"
    SqliteOutbox(db, create=True).close()
    evs = events(2)
    insert(db, as_rows(evs[:5]))
    config = sqlite_config(fake_kafka, db, settings={"batch_size": 3})
    fake_kafka.run_once(config)
    # two batches, each offset stored after its rows were acknowledged
    assert fake_kafka.commits == [{ROWS: {"id": 3}}, {ROWS: {"id": 5}}]
    assert fake_kafka.event_ids == [e["event_id"] for e in evs[:5]]

    # Kafka does not acknowledge: nothing committed, the rows are read again next time
    insert(db, as_rows(evs[5:8]))
    fake_kafka.down = True
    with pytest.raises(ConnectorFailedError, match="did not acknowledge"):
        fake_kafka.run_once(config)
    assert fake_kafka.stored("under-test") == {ROWS: {"id": 5}}

    # a new runtime (a restart) resumes after the last committed id
    fake_kafka.down = False
    fake_kafka.run_once(config)
    assert fake_kafka.stored("under-test") == {ROWS: {"id": 8}}
    assert fake_kafka.event_ids == [e["event_id"] for e in evs[:8]]


def test_an_uncommitted_sqlite_row_is_not_read_and_a_rolled_back_one_never(
    tmp_path: Path, fake_kafka: FakeKafka
) -> None:
    db = tmp_path / "agency.db"
    evs = events(1)
    config = sqlite_config(fake_kafka, db, settings={"create_table": True})
    fake_kafka.run_once(config)  # creates the table: the writer below needs it
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")  # readers go on while the writer holds a txn
    writer.execute("BEGIN")
    writer.execute("INSERT INTO outbox (dossier_code, payload) VALUES (?, ?)", as_rows(evs[:1])[0])
    fake_kafka.run_once(config)
    assert fake_kafka.event_ids == [] and fake_kafka.commits == []
    writer.execute("ROLLBACK")
    insert(db, as_rows(evs[1:3]))
    fake_kafka.run_once(config)
    assert fake_kafka.event_ids == [e["event_id"] for e in evs[1:3]]
    # SQLite hands the rolled-back id 1 out again: the two rows are ids 1 and 2
    assert fake_kafka.stored("under-test") == {ROWS: {"id": 2}}
    writer.close()


def test_bad_rows_are_dead_lettered_with_their_id_and_the_rest_flows(
    tmp_path: Path, fake_kafka: FakeKafka
) -> None:
    db = tmp_path / "agency.db"
    SqliteOutbox(db, create=True).close()
    good = events(1)[:2]
    wrong_type = dict(good[1], event_type="NoSuchThing")
    insert(
        db,
        [
            as_rows(good[:1])[0],
            ("000.00.03.H40-250101-0001", "{not json"),
            (good[1]["dossier_code"], json.dumps(wrong_type)),
            ("000.00.03.H40-250101-0009", json.dumps(good[1])),  # column differs from payload
            as_rows(good[1:2])[0],
        ],
    )
    config = sqlite_config(fake_kafka, db, **{"topic.prefix": "p.", "errors.tolerance": "all"})
    fake_kafka.run_once(config)
    assert fake_kafka.event_ids == [e["event_id"] for e in good]
    assert fake_kafka.stored("under-test") == {ROWS: {"id": 5}}
    dead = fake_kafka.dead_letters("p.dossier.events.dlq")
    assert len(fake_kafka.written) == len(dead) == 3
    found = [
        (w.letter.reason, json.loads(w.header(HEADER_SOURCE_OFFSET) or b""),
         w.header(HEADER_SOURCE_PARTITION))
        for w in dead
    ]  # fmt: skip
    assert found == [
        ("undecodable", {"id": 2}, ROWS.encode()),
        ("validation", {"id": 3}, ROWS.encode()),
        ("validation", {"id": 4}, ROWS.encode()),
    ]
    assert dead[0].value == b"{not json"  # the row's bytes, untouched
    assert "payload: json" in dead[0].letter.detail
    assert "event_type" in dead[1].letter.detail
    assert "dossier_code: mismatch" in dead[2].letter.detail
    assert dead[1].letter.dossier_code == good[1]["dossier_code"]
    assert {w.letter.processor for w in dead} == {"connector:under-test"}


def test_a_bad_row_stops_the_connector_with_tolerance_none_after_the_rows_before_it(
    tmp_path: Path, fake_kafka: FakeKafka
) -> None:
    db = tmp_path / "agency.db"
    SqliteOutbox(db, create=True).close()
    good = events(1)[:2]
    insert(db, [as_rows(good[:1])[0], ("c", "[1, 2]"), as_rows(good[1:2])[0]])
    with pytest.raises(ConnectorFailedError, match=r"errors\.tolerance=none"):
        fake_kafka.run_once(sqlite_config(fake_kafka, db))
    assert fake_kafka.event_ids == [good[0]["event_id"]]
    assert fake_kafka.stored("under-test") == {ROWS: {"id": 1}}
    assert fake_kafka.written == []


# --- what --once and the runtime's retries mean for an outbox ---------------------------------


class ScriptedTable:
    """A PostgreSQL-like table: ``reads`` are answered in turn (the last one forever);
    an exception in the list is raised instead."""

    def __init__(self, reads: Sequence[OutboxRead | Exception]) -> None:
        self.reads = list(reads)
        self.calls = 0

    def read(self, after: int, limit: int) -> OutboxRead:
        answer = self.reads[min(self.calls, len(self.reads) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return OutboxRead([r for r in answer.rows if r.id > after], answer.snapshot)

    def close(self) -> None:
        pass


class ScriptedOutbox(OutboxConnector):
    table_to_use: OutboxTable

    def start(self) -> None:
        super().start()
        self.table = self.table_to_use


def payload_row(i: int, event: dict[str, Any]) -> OutboxRow:
    return OutboxRow(i, event["dossier_code"], json.dumps(event))


def test_once_does_not_stop_at_a_hole_while_a_transaction_may_still_fill_it(
    tmp_path: Path, fake_kafka: FakeKafka
) -> None:
    evs = events(1)[:3]
    r1, r2, r3 = (payload_row(i + 1, e) for i, e in enumerate(evs))
    busy = Snapshot(50, 60, frozenset({55}))  # id 2's transaction is still in progress
    done = Snapshot(61, 61)
    table = ScriptedTable([OutboxRead([r1, r3], busy)] * 4 + [OutboxRead([r1, r2, r3], done)])
    config = sqlite_config(fake_kafka, tmp_path / "unused.db", settings={"gap_grace_s": 0.0})
    connector = ScriptedOutbox(config)
    connector.table_to_use = table
    fake_kafka.run_once(config, connector)
    # row 1 went first; the empty polls behind the hole did not end the run; then 2 and 3
    assert fake_kafka.event_ids == [e["event_id"] for e in evs]
    assert table.calls >= 5
    assert fake_kafka.stored("under-test") == {ROWS: {"id": 3}}


def test_a_database_away_is_retried_and_nothing_is_skipped(
    tmp_path: Path, fake_kafka: FakeKafka
) -> None:
    evs = events(1)[:2]
    rows = [payload_row(i + 1, e) for i, e in enumerate(evs)]
    away = RetriableError("postgres outbox outbox: OperationalError: connection refused")
    table = ScriptedTable([away, away, OutboxRead(rows, Snapshot(9, 9))])
    config = sqlite_config(fake_kafka, tmp_path / "unused.db")
    connector = ScriptedOutbox(config)
    connector.table_to_use = table
    fake_kafka.run_once(config, connector)
    assert fake_kafka.event_ids == [e["event_id"] for e in evs]

    # away for longer than errors.retry.timeout: the connector stops and says why
    table = ScriptedTable([away])
    connector = ScriptedOutbox(config)
    connector.table_to_use = table
    with pytest.raises(ConnectorFailedError, match=r"polling the source failed.*refused"):
        fake_kafka.run_once(config, connector)
    assert connector.health()["status"] == "down"


def test_create_table_makes_a_missing_sqlite_table(tmp_path: Path, fake_kafka: FakeKafka) -> None:
    db = tmp_path / "new.db"
    fake_kafka.run_once(sqlite_config(fake_kafka, db, settings={"create_table": True}))
    conn = sqlite3.connect(db)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(outbox)")]
    conn.close()
    assert columns == ["id", "dossier_code", "payload", "created_at"]
    # without it a missing table is the database's answer, retried until the budget is spent
    with pytest.raises(ConnectorFailedError, match="no such table"):
        fake_kafka.run_once(sqlite_config(fake_kafka, tmp_path / "other.db"))
