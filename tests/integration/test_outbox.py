"""The outbox connector, run by the SDK runtime on the real broker, with SQLite and a
throwaway PostgreSQL cluster; and ``hub connector run --once`` in a subprocess.

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
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.outbox import PostgresOutbox, SqliteOutbox
from connectors.scenarios import VN, dossier_code, dossier_life
from connectors.sdk import parse_config
from connectors.sdk.offsets import OffsetStore
from connectors.sdk.runtime import (
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    ConnectorRuntime,
)
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from hub.dlq.headers import DeadLetter
from hub.stack.tools import free_port
from tests.fixtures.stack import Broker, create_topics
from tests.fixtures.topics import read_topic

pytestmark = pytest.mark.broker

JUSTICE = "000.00.03.H40"
CRIMINAL_RECORD = "2.000488"
ROOT = Path(__file__).resolve().parents[2]


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

    def config(self, name: str, settings: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "connector.class": "outbox",
            "bootstrap.servers": self.broker.bootstrap,
            "schema.registry.url": self.broker.registry_url,
            "topic.prefix": self.prefix,
            "errors.tolerance": "all",
            "poll.interval.ms": 50,
            "settings": {"gap_grace_s": 0.3, **settings},
        }

    def runtime(self, name: str, settings: dict[str, Any]) -> ConnectorRuntime:
        runtime = ConnectorRuntime(parse_config(self.config(name, settings), "test"))
        runtime.start_thread()
        deadline = time.monotonic() + 60
        while not runtime.started.is_set():
            assert time.monotonic() < deadline, "the connector did not start"
            time.sleep(0.05)
        assert runtime.error is None and runtime.state == "running", runtime.error
        return runtime

    def stored(self, name: str) -> dict[str, Any]:
        """The offsets in Kafka, as a restart reads them."""
        return OffsetStore(self.broker.bootstrap, f"{self.prefix}hub.connect.offsets", name).load()

    def event_ids(self, expect: int) -> list[str]:
        decode = AvroDeserializer(SchemaRegistryClient(self.broker.registry_url))
        found = read_topic(self.broker.bootstrap, f"{self.prefix}dossier.events", expect)
        return [str(decode(m.value)["event_id"]) for m in found]

    def dead_letters(self, expect: int) -> list[Any]:
        return read_topic(self.broker.bootstrap, f"{self.prefix}dossier.events.dlq", expect)


@pytest.fixture
def rig(broker: Broker) -> Rig:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    # one partition, so that the order across dossiers (id order) is observable in Kafka
    create_topics(broker.bootstrap, [f"{prefix}dossier.events"], partitions=1)
    return Rig(broker, prefix)


def committed_id(runtime: ConnectorRuntime, partition: str) -> int:
    found = runtime.committed.get(partition)
    return int(found["id"]) if found else 0


def wait_committed(
    runtime: ConnectorRuntime, partition: str, want: int, timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while committed_id(runtime, partition) < want:
        assert runtime.error is None, runtime.error
        assert time.monotonic() < deadline, f"stuck at {committed_id(runtime, partition)}"
        time.sleep(0.05)


def stop(runtime: ConnectorRuntime) -> None:
    runtime.request_stop()
    runtime.join(timeout=60)  # re-raises the connector's failure, if any
    assert runtime.state == "stopped"


def payload(event: dict[str, Any]) -> tuple[str, str]:
    return event["dossier_code"], json.dumps(event, ensure_ascii=False)


def pg_table(postgres: Postgres) -> str:
    name = f"outbox_{uuid.uuid4().hex[:8]}"
    table = PostgresOutbox(postgres.dsn, name, create=True)
    table.read(0, 1)  # the connection, and with it the table, is made at the first read
    table.close()
    return name


# --- PostgreSQL -----------------------------------------------------------------------------


def test_postgres_interleaved_transactions_arrive_once_in_id_order(
    rig: Rig, postgres: Postgres
) -> None:
    table_name = pg_table(postgres)
    settings = {"backend": "postgres", "dsn": postgres.dsn, "table": table_name}
    rows = f"outbox:{table_name}"
    a_life, b_life = lives(1, 2)
    insert = f"INSERT INTO {table_name} (dossier_code, payload) VALUES (%s, %s) RETURNING id"
    a = psycopg.connect(postgres.dsn)
    b = psycopg.connect(postgres.dsn)
    runtime = rig.runtime("agency", settings)
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
    time.sleep(1.0)  # 20 polls: B's rows are visible but must wait behind A's in-flight ids
    assert committed_id(runtime, rows) == 0
    health = runtime.connector.health()
    assert (health["cursor"], health["pending_holes"]) == (0, 1)
    # a rolled-back row leaves a permanent hole that must not stop the rest
    rolled = psycopg.connect(postgres.dsn)
    rolled.execute(insert, payload(a_life[5]))
    rolled.rollback()
    a.commit()
    c = psycopg.connect(postgres.dsn, autocommit=True)
    last = c.execute(insert, payload(b_life[2])).fetchone()[0]  # type: ignore[index]
    ids[b_life[2]["event_id"]] = last
    wait_committed(runtime, rows, last)
    stop(runtime)
    expected = [eid for eid, _ in sorted(ids.items(), key=lambda kv: kv[1])]
    got = rig.event_ids(len(expected))
    assert got == expected
    assert a_life[5]["event_id"] not in got

    # a restart resumes after the last committed id: only the new row goes out
    assert rig.stored("agency") == {rows: {"id": last}}
    new = c.execute(insert, payload(b_life[3])).fetchone()[0]  # type: ignore[index]
    restarted = rig.runtime("agency", settings)
    wait_committed(restarted, rows, new)
    stop(restarted)
    assert rig.event_ids(len(expected) + 1) == [*expected, b_life[3]["event_id"]]
    for conn in (a, b, rolled, c):
        conn.close()


def test_postgres_a_row_in_flight_during_polling_is_never_skipped(
    rig: Rig, postgres: Postgres
) -> None:
    """The connector polling continuously while writers interleave and roll back."""
    table_name = pg_table(postgres)
    insert = f"INSERT INTO {table_name} (dossier_code, payload) VALUES (%s, %s)"
    runtime = rig.runtime(
        "agency", {"backend": "postgres", "dsn": postgres.dsn, "table": table_name}
    )
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
        got = rig.event_ids(len(committed))
    finally:
        for conn in conns:
            conn.close()
        stop(runtime)  # raises if the connector failed meanwhile
    assert sorted(got) == sorted(committed)
    assert len(got) == len(set(got))


def test_postgres_bad_rows_go_to_the_dead_letter_topic_and_the_rest_flow(
    rig: Rig, postgres: Postgres
) -> None:
    table_name = pg_table(postgres)
    life = lives(3, 1)[0][:3]
    insert = f"INSERT INTO {table_name} (dossier_code, payload) VALUES (%s, %s) RETURNING id"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(insert, payload(life[0]))
        bad_id = conn.execute(insert, (life[1]["dossier_code"], '{"event_type": 7}')).fetchone()[0]  # type: ignore[index]
        conn.execute(insert, payload(life[1]))
        last = conn.execute(insert, payload(life[2])).fetchone()[0]  # type: ignore[index]
    runtime = rig.runtime(
        "justice", {"backend": "postgres", "dsn": postgres.dsn, "table": table_name}
    )
    wait_committed(runtime, f"outbox:{table_name}", last)
    stop(runtime)
    assert rig.event_ids(3) == [e["event_id"] for e in life]
    [dead] = rig.dead_letters(1)
    letter = DeadLetter.from_headers(dead.headers)
    headers = dict(dead.headers)
    assert (letter.reason, letter.processor) == ("validation", "connector:justice")
    assert json.loads(headers[HEADER_SOURCE_OFFSET]) == {"id": bad_id}
    assert headers[HEADER_SOURCE_PARTITION] == f"outbox:{table_name}".encode()
    assert dead.value == b'{"event_type": 7}'


# --- SQLite ---------------------------------------------------------------------------------


def test_sqlite_outbox_on_the_broker_in_order_once_with_restart_and_dead_letters(
    rig: Rig, tmp_path: Path
) -> None:
    db = tmp_path / "agency.db"
    SqliteOutbox(db, create=True).close()
    settings = {"backend": "sqlite", "path": str(db)}
    rows = "outbox:outbox"
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
    runtime = rig.runtime("commune", settings)
    wait_committed(runtime, rows, 4)
    time.sleep(0.5)  # 10 polls more
    assert committed_id(runtime, rows) == 4  # the open transaction is invisible
    writer.execute("COMMIT")
    writer.execute("BEGIN")
    writer.execute(insert, payload(a_life[3]))
    writer.execute("ROLLBACK")  # never appears
    wait_committed(runtime, rows, 7)
    stop(runtime)
    expected = [a_life[0], b_life[0], a_life[1], b_life[1], a_life[2], b_life[2]]
    assert rig.event_ids(6) == [e["event_id"] for e in expected]

    # restart: a new runtime with the offsets in Kafka publishes only what is new
    writer.execute(insert, payload(b_life[3]))
    assert rig.stored("commune") == {rows: {"id": 7}}
    restarted = rig.runtime("commune", settings)
    wait_committed(restarted, rows, 8)  # the rolled-back id 8 is taken again (AUTOINCREMENT)
    stop(restarted)
    assert rig.event_ids(7) == [e["event_id"] for e in [*expected, b_life[3]]]
    [dead] = rig.dead_letters(1)
    letter = DeadLetter.from_headers(dead.headers)
    assert letter.reason == "undecodable"
    assert json.loads(dict(dead.headers)[HEADER_SOURCE_OFFSET]) == {"id": 6}
    assert dead.value == b"not json"
    writer.close()


def test_hub_connector_run_once_publishes_what_is_there_and_exits(rig: Rig, tmp_path: Path) -> None:
    """The command line as an operator runs it: a catch-up that ends by itself."""
    db = tmp_path / "agency.db"
    config = rig.config("batch", {"backend": "sqlite", "path": str(db), "create_table": True})
    config_file = tmp_path / "outbox.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run_once() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hub", "connector", "run", "--config", str(config_file),
             "--once"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip

    first = run_once()  # an empty, missing table: created, nothing to do, exit 0
    assert first.returncode == 0, first.stderr
    life = lives(5, 1)[0][:4]
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO outbox (dossier_code, payload) VALUES (?, ?)", map(payload, life[:3])
        )
    second = run_once()
    assert second.returncode == 0, second.stderr
    # all three published and committed before the exit, not after
    assert rig.stored("batch") == {"outbox:outbox": {"id": 3}}
    assert rig.event_ids(3) == [e["event_id"] for e in life[:3]]
    with conn:
        conn.execute("INSERT INTO outbox (dossier_code, payload) VALUES (?, ?)", payload(life[3]))
    conn.close()
    third = run_once()  # resumes after the stored offset: only the new row
    assert third.returncode == 0, third.stderr
    assert rig.event_ids(4) == [e["event_id"] for e in life]
    assert rig.stored("batch") == {"outbox:outbox": {"id": 4}}
