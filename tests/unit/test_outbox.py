"""The outbox poller without Kafka: gap rules, SQLite reads, commit-after-ack, dead letters."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.outbox import (
    FileOffsetStore,
    GapGuard,
    MemoryOffsetStore,
    OutboxPoller,
    OutboxRead,
    OutboxRow,
    Snapshot,
    SqliteOutbox,
)
from connectors.scenarios import VN, dossier_code, dossier_life
from hub.contract.inbound import (
    FieldProblem,
    InboundDossierEvent,
    InboundFeedbackEvent,
    validate_dossier_event,
    validate_feedback_event,
)

JUSTICE = "000.00.03.H40"
CRIMINAL_RECORD = "2.000488"


class Done:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def get(self, timeout: float | None = None) -> None:
        if self.fail:
            raise TimeoutError("no ack")


class FakePublisher:
    """EventPublisher's validate, and sends recorded instead of written to Kafka."""

    def __init__(self) -> None:
        self.sent: list[InboundDossierEvent | InboundFeedbackEvent] = []
        self.fail = False

    def validate(
        self, data: Any
    ) -> InboundDossierEvent | InboundFeedbackEvent | list[FieldProblem]:
        if isinstance(data, dict) and data.get("event_type") in ("ServiceRated", "ComplaintFiled"):
            return validate_feedback_event(data)
        return validate_dossier_event(data)

    def send_async(self, event: InboundDossierEvent | InboundFeedbackEvent) -> Done:
        if not self.fail:
            self.sent.append(event)
        return Done(self.fail)


class FakeDeadLetters:
    def __init__(self) -> None:
        self.letters: list[tuple[Any, bytes | None, bytes | None]] = []

    def publish(
        self, letter: Any, key: bytes | None, value: bytes | None, original_headers: Any = ()
    ) -> None:
        self.letters.append((letter, key, value))


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


# --- SQLite and the poller --------------------------------------------------------------------


def insert(db: Path, items: list[tuple[str, str]]) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("INSERT INTO outbox (dossier_code, payload) VALUES (?, ?)", items)
    conn.close()


def as_rows(evs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["dossier_code"], json.dumps(e, ensure_ascii=False)) for e in evs]


def test_the_poller_publishes_in_order_commits_after_ack_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "agency.db"
    table = SqliteOutbox(db, create=True)
    evs = events(2)
    insert(db, as_rows(evs[:5]))
    offsets = MemoryOffsetStore()
    publisher = FakePublisher()
    poller = OutboxPoller(table, publisher, offsets, FakeDeadLetters(), name="t", batch_size=3)
    assert poller.poll_once().committed == 3
    assert poller.poll_once().committed == 5
    assert poller.poll_once().committed is None
    assert [str(e.event_id) for e in publisher.sent] == [e["event_id"] for e in evs[:5]]

    # Kafka does not acknowledge: nothing committed, the rows are read again next time
    insert(db, as_rows(evs[5:8]))
    publisher.fail = True
    with pytest.raises(TimeoutError):
        poller.poll_once()
    assert offsets.get("outbox:t") == {"id": 5}

    # a new poller (a restart) resumes after the last committed id
    publisher.fail = False
    again = OutboxPoller(table, publisher, offsets, FakeDeadLetters(), name="t")
    assert again.poll_once().committed == 8
    assert [str(e.event_id) for e in publisher.sent] == [e["event_id"] for e in evs[:8]]
    table.close()


def test_an_uncommitted_sqlite_row_is_not_read_and_a_rolled_back_one_never(tmp_path: Path) -> None:
    db = tmp_path / "agency.db"
    table = SqliteOutbox(db, create=True)
    evs = events(1)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")  # readers go on while the writer holds a txn
    writer.execute("BEGIN")
    writer.execute("INSERT INTO outbox (dossier_code, payload) VALUES (?, ?)", as_rows(evs[:1])[0])
    publisher = FakePublisher()
    poller = OutboxPoller(table, publisher, MemoryOffsetStore(), FakeDeadLetters(), name="t")
    assert poller.poll_once().read == 0
    writer.execute("ROLLBACK")
    insert(db, as_rows(evs[1:3]))
    result = poller.poll_once()
    assert result.published == 2
    assert [str(e.event_id) for e in publisher.sent] == [e["event_id"] for e in evs[1:3]]
    writer.close()
    table.close()


def test_bad_rows_are_dead_lettered_with_their_id_and_the_rest_flows(tmp_path: Path) -> None:
    db = tmp_path / "agency.db"
    table = SqliteOutbox(db, create=True)
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
    dead = FakeDeadLetters()
    publisher = FakePublisher()
    poller = OutboxPoller(
        table, publisher, MemoryOffsetStore(), dead, name="justice", topic_prefix="p."
    )
    result = poller.poll_once()
    assert (result.published, result.dead_lettered, result.committed) == (2, 3, 5)
    letters = [
        (letter.reason, letter.source_offset, letter.source_topic) for letter, _, _ in dead.letters
    ]
    assert letters == [
        ("undecodable", 2, "p.outbox.justice"),
        ("validation", 3, "p.outbox.justice"),
        ("validation", 4, "p.outbox.justice"),
    ]
    assert dead.letters[0][0].dlq_topic == "p.outbox.justice.dlq"
    assert dead.letters[0][2] == b"{not json"  # the row's bytes, untouched
    assert "dossier_code: mismatch" in dead.letters[2][0].detail
    assert dead.letters[1][0].dossier_code == good[1]["dossier_code"]
    table.close()


def test_file_offsets_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "offsets.json"
    store = FileOffsetStore(path)
    assert store.get("outbox:a") is None
    store.put("outbox:a", {"id": 7})
    store.put("outbox:b", {"id": 1})
    assert FileOffsetStore(path).get("outbox:a") == {"id": 7}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["offsets.json"]  # no temp file left
