"""The outbox poller on the real broker, with SQLite and a throwaway PostgreSQL cluster.

PostgreSQL: Debian's package (``scripts/_env.sh`` installs it); this module runs ``initdb``
and ``pg_ctl`` itself on a free loopback port in a temporary directory (as the ``postgres``
user when the tests run as root: the server refuses root) and stops the server by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.outbox import (
    FileOffsetStore,
    OutboxPoller,
    OutboxTable,
    PostgresOutbox,
    SqliteOutbox,
)
from connectors.publisher import EventPublisher
from connectors.scenarios import VN, dossier_code, dossier_life
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from hub.dlq import DeadLetterPublisher
from hub.dlq.headers import DeadLetter
from hub.stack.tools import free_port
from tests.fixtures.stack import Broker, create_topics
from tests.fixtures.topics import read_topic

pytestmark = pytest.mark.broker

JUSTICE = "000.00.03.H40"
CRIMINAL_RECORD = "2.000488"


# --- a throwaway PostgreSQL ---------------------------------------------------------------


def _pg_bin(name: str) -> str:
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if (p / "bin" / name).exists()),
            key=lambda p: int(p.name) if p.name.isdigit() else 0,
        )
        if versions:
            return str(versions[-1] / "bin" / name)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"PostgreSQL's {name} not found: install Debian's postgresql package "
            "(scripts/_env.sh does it when run as root)",
            pytrace=False,
        )
    return found


@dataclass
class Postgres:
    dsn: str
    pid: int


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    root_user = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="hub-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if root_user:
        owner = pwd.getpwnam("postgres")
        for path in (base, sock):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    log = base / "server.log"
    subprocess.run(
        [*prefix, _pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
         "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*prefix, _pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
         "-t", "60", "start"],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield Postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # fast shutdown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)


# --- helpers --------------------------------------------------------------------------------


def lives(tag: int, n: int) -> list[list[dict[str, Any]]]:
    start = datetime.now(VN) - timedelta(hours=6)
    return [
        dossier_life(dossier_code(JUSTICE, start, tag * 100 + i), JUSTICE, CRIMINAL_RECORD,
                     start, rating=None)
        for i in range(n)
    ]  # fmt: skip


@dataclass
class Rig:
    broker: Broker
    prefix: str
    publisher: EventPublisher
    dead_letters: DeadLetterPublisher
    offsets_path: Path

    def poller(self, table: OutboxTable, name: str = "agency") -> OutboxPoller:
        return OutboxPoller(
            table, self.publisher, FileOffsetStore(self.offsets_path), self.dead_letters,
            name=name, topic_prefix=self.prefix, gap_grace_s=0.3,
        )  # fmt: skip

    def event_ids(self, expect: int) -> list[str]:
        decode = AvroDeserializer(SchemaRegistryClient(self.broker.registry_url))
        found = read_topic(self.broker.bootstrap, f"{self.prefix}dossier.events", expect)
        return [str(decode(m.value)["event_id"]) for m in found]


@pytest.fixture
def rig(broker: Broker, tmp_path: Path) -> Iterator[Rig]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    # one partition, so that the order across dossiers (id order) is observable in Kafka
    create_topics(broker.bootstrap, [f"{prefix}dossier.events"], partitions=1)
    publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
    dead = DeadLetterPublisher(broker.bootstrap)
    try:
        yield Rig(broker, prefix, publisher, dead, tmp_path / "offsets.json")
    finally:
        publisher.close()
        dead.close()


def drain_poller(poller: OutboxPoller, want_committed: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while poller.committed_id < want_committed:
        assert time.monotonic() < deadline, f"stuck at {poller.committed_id}"
        if poller.poll_once().committed is None:
            time.sleep(0.1)


def payload(event: dict[str, Any]) -> tuple[str, str]:
    return event["dossier_code"], json.dumps(event, ensure_ascii=False)


# --- PostgreSQL -----------------------------------------------------------------------------


def test_postgres_interleaved_transactions_arrive_once_in_id_order(
    rig: Rig, postgres: Postgres
) -> None:
    table_name = f"outbox_{uuid.uuid4().hex[:8]}"
    table = PostgresOutbox(postgres.dsn, table_name, create=True)
    a_life, b_life = lives(1, 2)
    insert = f"INSERT INTO {table_name} (dossier_code, payload) VALUES (%s, %s) RETURNING id"
    a = psycopg.connect(postgres.dsn)
    b = psycopg.connect(postgres.dsn)
    poller = rig.poller(table)
    ids: dict[str, int] = {}
    # A takes the first ids, B takes later ones and commits first: a naive cursor would pass
    # A's rows while they are invisible and never see them
    for event in a_life[:2]:
        ids[event["event_id"]] = a.execute(insert, payload(event)).fetchone()[0]  # type: ignore[index]
    for event in b_life[:2]:
        ids[event["event_id"]] = b.execute(insert, payload(event)).fetchone()[0]  # type: ignore[index]
    for event in a_life[2:4]:
        ids[event["event_id"]] = a.execute(insert, payload(event)).fetchone()[0]  # type: ignore[index]
    b.commit()
    for _ in range(5):  # B's rows are visible but must wait behind A's in-flight ids
        assert poller.poll_once().committed is None
        time.sleep(0.1)
    # a rolled-back row leaves a permanent hole that must not stop the rest
    rolled = psycopg.connect(postgres.dsn)
    rolled.execute(insert, payload(a_life[5]))
    rolled.rollback()
    a.commit()
    c = psycopg.connect(postgres.dsn, autocommit=True)
    last = c.execute(insert, payload(b_life[2])).fetchone()[0]  # type: ignore[index]
    ids[b_life[2]["event_id"]] = last
    drain_poller(poller, last)
    expected = [eid for eid, _ in sorted(ids.items(), key=lambda kv: kv[1])]
    got = rig.event_ids(len(expected))
    assert got == expected
    assert a_life[5]["event_id"] not in got

    # a restart resumes after the last committed id: only the new row goes out
    table.close()
    table = PostgresOutbox(postgres.dsn, table_name)
    restarted = rig.poller(table)
    new = c.execute(insert, payload(b_life[3])).fetchone()[0]  # type: ignore[index]
    drain_poller(restarted, new)
    assert rig.event_ids(len(expected) + 1) == [*expected, b_life[3]["event_id"]]
    for conn in (a, b, rolled, c):
        conn.close()
    table.close()


def test_postgres_a_row_in_flight_during_polling_is_never_skipped(
    rig: Rig, postgres: Postgres
) -> None:
    """A poller thread polling continuously while writers interleave and roll back."""
    table_name = f"outbox_{uuid.uuid4().hex[:8]}"
    table = PostgresOutbox(postgres.dsn, table_name, create=True)
    insert = f"INSERT INTO {table_name} (dossier_code, payload) VALUES (%s, %s)"
    poller = rig.poller(table)
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            poller.run(stop, interval_s=0.05)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    committed: list[str] = []
    events = [e for life in lives(2, 4) for e in life[:5]]
    conns = [psycopg.connect(postgres.dsn) for _ in range(3)]
    pending: dict[int, list[str]] = {0: [], 1: [], 2: []}
    try:
        for i, event in enumerate(events):
            k = i % 3
            conns[k].execute(insert, payload(event))
            pending[k].append(event["event_id"])
            if i % 7 == 3:
                conns[k].rollback()  # the whole transaction of that writer
                pending[k].clear()
            elif k == 2:  # commit in a different order from the inserts
                for j in (2, 0, 1):
                    conns[j].commit()
                    committed += pending[j]
                    pending[j].clear()
            time.sleep(0.02)
        for j in (1, 0, 2):
            conns[j].commit()
            committed += pending[j]
            pending[j].clear()
        deadline = time.monotonic() + 20
        while poller.totals.published < len(committed) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(10)
        for conn in conns:
            conn.close()
        table.close()
    assert not errors
    got = rig.event_ids(len(committed))
    assert sorted(got) == sorted(committed)
    assert len(got) == len(set(got))


def test_postgres_bad_rows_go_to_the_dead_letter_topic_and_the_rest_flow(
    rig: Rig, postgres: Postgres
) -> None:
    table_name = f"outbox_{uuid.uuid4().hex[:8]}"
    table = PostgresOutbox(postgres.dsn, table_name, create=True)
    life = lives(3, 1)[0][:3]
    insert = f"INSERT INTO {table_name} (dossier_code, payload) VALUES (%s, %s) RETURNING id"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(insert, payload(life[0]))
        bad_id = conn.execute(insert, (life[1]["dossier_code"], '{"event_type": 7}')).fetchone()[0]  # type: ignore[index]
        conn.execute(insert, payload(life[1]))
        last = conn.execute(insert, payload(life[2])).fetchone()[0]  # type: ignore[index]
    poller = rig.poller(table, name="justice")
    drain_poller(poller, last)
    assert rig.event_ids(3) == [e["event_id"] for e in life]
    [dead] = read_topic(rig.broker.bootstrap, f"{rig.prefix}outbox.justice.dlq", 1)
    letter = DeadLetter.from_headers(dead.headers)
    assert (letter.reason, letter.source_offset, letter.processor) == (
        "validation",
        bad_id,
        "outbox",
    )
    assert dead.value == b'{"event_type": 7}'
    table.close()


# --- SQLite ---------------------------------------------------------------------------------


def test_sqlite_outbox_on_the_broker_in_order_once_with_restart_and_dead_letters(
    rig: Rig, tmp_path: Path
) -> None:
    db = tmp_path / "agency.db"
    table = SqliteOutbox(db, create=True)
    a_life, b_life = lives(4, 2)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    insert = "INSERT INTO outbox (dossier_code, payload) VALUES (?, ?)"
    # two transactions one after the other, interleaving the two dossiers
    writer.execute("BEGIN")
    for x, y in zip(a_life[:2], b_life[:2], strict=True):
        writer.execute(insert, payload(x))
        writer.execute(insert, payload(y))
    writer.execute("COMMIT")
    writer.execute("BEGIN")
    writer.execute(insert, payload(a_life[2]))
    writer.execute(insert, ("000.00.03.H40-250101-0001", "not json"))
    writer.execute(insert, payload(b_life[2]))
    poller = rig.poller(table, name="commune")
    drain_poller(poller, 4)
    assert poller.poll_once().committed is None  # the open transaction is invisible
    writer.execute("COMMIT")
    writer.execute("BEGIN")
    writer.execute(insert, payload(a_life[3]))
    writer.execute("ROLLBACK")  # never appears
    drain_poller(poller, 7)
    expected = [a_life[0], b_life[0], a_life[1], b_life[1], a_life[2], b_life[2]]
    assert rig.event_ids(6) == [e["event_id"] for e in expected]

    # restart: a new poller with the same offsets file publishes only what is new
    table.close()
    table = SqliteOutbox(db)
    writer.execute(insert, payload(b_life[3]))
    restarted = rig.poller(table, name="commune")
    assert restarted.committed_id == 7
    drain_poller(restarted, 8)  # the rolled-back id 8 is taken again (AUTOINCREMENT)
    assert rig.event_ids(7) == [e["event_id"] for e in [*expected, b_life[3]]]
    [dead] = read_topic(rig.broker.bootstrap, f"{rig.prefix}outbox.commune.dlq", 1)
    letter = DeadLetter.from_headers(dead.headers)
    assert (letter.reason, letter.source_offset) == ("undecodable", 6)
    writer.close()
    table.close()
