"""Deadlines, mergers, recovery, crash and scale-out: each proved on the real broker.

Expectations come from the pure domain: the same events run through
``hub.domain.lifecycle.apply`` give the status changes the worker must emit, and the output
ids are deterministic (``hub.outputs.output_id``), so input and output sets can be compared
as Kafka's own system tests do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from connectors.publisher import EventPublisher
from connectors.scenarios import VN, dossier_code, dossier_life
from hub.consumers import READ_COMMITTED
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from hub.reference import load_reference
from tests.fixtures.ledger import CRIMINAL_RECORD, JUSTICE, Ledger, province_events, validated
from tests.fixtures.stack import Broker
from tests.fixtures.topics import read_topic as drain
from tests.fixtures.worker import Worker, start_worker, view_status, wait_for

pytestmark = pytest.mark.broker

HOME_AFFAIRS = "000.00.02.H40"  # Sở Nội vụ, successor of Sở LĐTBXH since 2025-03-01
LABOUR_RETIRED = "000.00.26.H40"  # Sở Lao động - Thương binh và Xã hội, merged 2025-03-01
REFERENCE = load_reference()


def expected_status_ids(events: list[dict[str, Any]]) -> tuple[set[str], dict[str, str]]:
    """Output ids the worker must emit, and each dossier's final status, by the pure domain."""
    ledger = Ledger()
    for event in events:
        ledger.acknowledged(event)
    ids, final = ledger.expected()
    return {i for per_dossier in ids.values() for i in per_dossier}, final


def publish(broker: Broker, prefix: str, events: list[dict[str, Any]]) -> None:
    publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
    try:
        for event in events:
            assert publisher.publish(event) == []
    finally:
        publisher.close()


def test_overdue_dossier_alerts_once_with_apology_owed_and_due_soon_for_a_near_deadline(
    broker: Broker, hub_worker: Worker
) -> None:
    prefix = hub_worker.env["HUB_TOPIC_PREFIX"]
    long_ago = datetime.now(VN) - timedelta(days=30)
    late = dossier_code(JUSTICE, long_ago, 1)
    events = dossier_life(late, JUSTICE, CRIMINAL_RECORD, long_ago, finish=False, rating=None)
    # the receipt promised a date that is long gone
    events[1]["payload"]["appointment_date"] = (long_ago + timedelta(days=14)).date().isoformat()
    today = datetime.now(VN).date()
    near_day = REFERENCE.calendar.next_working_day(today)
    near = dossier_code(JUSTICE, long_ago, 2)
    near_events = dossier_life(near, JUSTICE, CRIMINAL_RECORD, long_ago, finish=False, rating=None)
    near_events[1]["payload"]["appointment_date"] = near_day.isoformat()
    near_events[2]["payload"]["step_deadline"] = (today + timedelta(days=60)).isoformat()
    events[2]["payload"]["step_deadline"] = (today + timedelta(days=60)).isoformat()
    publish(broker, prefix, events + near_events)

    # Several clock ticks (every 2 s in tests) pass while we read: nothing may repeat.
    time.sleep(8)
    alerts = drain(broker.bootstrap, f"{prefix}dossier.alerts", expect=3, timeout_s=60)
    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    seen = Counter(
        (r["dossier_code"], r["kind"], r["scope"]) for r in (decode(m.value) for m in alerts)
    )
    assert seen == Counter(
        {
            (late, "OVERDUE", "DOSSIER"): 1,
            (late, "APOLOGY_OWED", "DOSSIER"): 1,
            (near, "DUE_SOON", "DOSSIER"): 1,
        }
    )
    status, overdue = hub_worker.get(f"/overdue?agency={JUSTICE}")
    assert status == 200
    assert [item["dossier_code"] for item in overdue["items"]] == [late]


def test_a_transfer_to_a_merged_agency_reaches_its_successor_with_its_history(
    broker: Broker, hub_worker: Worker
) -> None:
    prefix = hub_worker.env["HUB_TOPIC_PREFIX"]
    start = datetime.now(VN) - timedelta(hours=5)
    code = dossier_code(JUSTICE, start, 3)
    events = dossier_life(
        code, JUSTICE, CRIMINAL_RECORD, start, transfer_to=LABOUR_RETIRED, rating=None
    )
    publish(broker, prefix, events)

    inbox = drain(broker.bootstrap, f"{prefix}agency.inbox.{HOME_AFFAIRS}", expect=1)
    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    assert [decode(m.value)["dossier_code"] for m in inbox] == [code]
    wait_for(lambda: view_status(hub_worker, code) == "RESULT_RETURNED", 60, "the view")
    _, view = hub_worker.get(f"/dossiers/{code}")
    assert view["agency_code"] == HOME_AFFAIRS
    assert view["handled_by"] == [JUSTICE, HOME_AFFAIRS]
    assert len(view["timeline"]) == len(events)


def test_kill_9_mid_stream_then_restart_loses_nothing_and_counts_nothing_twice(
    broker: Broker, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"k{tag}.", f"hub-kill-{tag}"
    start = datetime.now(VN) - timedelta(hours=8)
    events = province_events(60, start)
    want_ids, want_status = expected_status_ids(events)

    worker = start_worker(broker, tmp_path / "a", prefix=prefix, app_id=app_id)
    kills = 0
    try:
        publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
        for i, event in enumerate(events):
            publisher.send_async(validated(event))
            if i in (len(events) // 3, 2 * len(events) // 3):
                publisher.flush()
                time.sleep(1.5)  # let it get mid-stream
                os.kill(worker.process.pid, signal.SIGKILL)
                worker.process.wait()
                kills += 1
                # a fresh data dir: the view must come back from the changelog alone
                worker = start_worker(
                    broker, tmp_path / f"after-kill-{kills}", prefix=prefix, app_id=app_id
                )
        publisher.flush()
        publisher.close()

        # First every expected status must reach the outbox (one cheap consumer), then the
        # view is checked dossier by dossier.
        got = collect_ids(broker, f"{prefix}portal.outbox", want_ids, timeout_s=300)
        lost = want_ids - set(got)
        unexpected = set(got) - want_ids
        repeats = sum(n - 1 for n in got.values())
        print(
            f"\nkill -9 x{kills}: inputs {len(events)}, expected statuses {len(want_ids)}, "
            f"delivered distinct {len(set(got))}, lost {len(lost)}, unexpected "
            f"{len(unexpected)}, repeated deliveries (same id) {repeats}"
        )
        assert not lost
        assert not unexpected
        # every dossier's view reached its final status, each event in its timeline once
        for code, final in want_status.items():
            wait_for(lambda c=code, f=final: view_status(worker, c) == f, 60, f"view of {code}")
            _, view = worker.get(f"/dossiers/{code}")
            ids = [entry[0] for entry in view["timeline"]]
            assert len(ids) == len(set(ids)), code
        _, summary = worker.get(f"/agencies/{JUSTICE}/summary")
        assert summary["counts"]["submitted_total"] == len(want_status)
        assert summary["counts"]["returned"] == sum(
            1 for s in want_status.values() if s == "RESULT_RETURNED"
        )
    finally:
        worker.stop(kill=True)


#: long enough that a restart waiting it out is unmistakable
STATIC_SESSION_S = 60


def test_a_named_worker_restarted_on_an_empty_disk_takes_its_partitions_back_at_once(
    broker: Broker, tmp_path: Path
) -> None:
    """HUB_WORKER_NAME makes a worker a static member (group.instance.id): killed with
    ``kill -9`` mid-stream and started again under its name on an empty disk, it holds its
    partitions again (``/ready``) well before the dead incarnation's session would have
    expired, and nothing is lost or delivered twice. A dynamic member waits that session out
    (``bench.run``'s restart step: 28 of 29 s)."""
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"n{tag}.", f"hub-named-{tag}"
    named = {"HUB_WORKER_NAME": "worker-a", "HUB_SESSION_TIMEOUT_S": str(STATIC_SESSION_S)}
    events = province_events(40, datetime.now(VN) - timedelta(hours=8))
    want_ids, _ = expected_status_ids(events)

    worker = start_worker(broker, tmp_path / "a", prefix=prefix, app_id=app_id, extra=named)
    try:
        publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
        half = len(events) // 2
        for event in events[:half]:
            publisher.send_async(validated(event))
        publisher.flush()
        time.sleep(1.5)  # mid-stream: some checkpoints committed, maybe one open
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        started = time.monotonic()
        worker = start_worker(broker, tmp_path / "empty", prefix=prefix, app_id=app_id, extra=named)
        back_in = time.monotonic() - started
        print(f"\nnamed worker: ready {back_in:.1f}s after its restart on an empty disk")
        assert back_in < STATIC_SESSION_S / 2, worker.log_tail()
        for event in events[half:]:
            publisher.send_async(validated(event))
        publisher.flush()
        publisher.close()

        got = collect_ids(broker, f"{prefix}portal.outbox", want_ids, timeout_s=120)
        assert want_ids - set(got) == set(), "lost"
        assert set(got) - want_ids == set(), "unexpected"
        assert [i for i, n in got.items() if n > 1] == [], "delivered twice"
    finally:
        worker.stop(kill=True)


def test_two_workers_under_one_name_stop_the_older_one_saying_why(
    broker: Broker, tmp_path: Path
) -> None:
    """A second worker started under a name already running replaces it in the group (what
    a restart is); the replaced one must not go on as a zombie: it stops, and its log names
    the setting to fix."""
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"d{tag}.", f"hub-dup-{tag}"
    named = {"HUB_WORKER_NAME": "twin"}
    first = start_worker(broker, tmp_path / "a", prefix=prefix, app_id=app_id, extra=named)
    second = start_worker(broker, tmp_path / "b", prefix=prefix, app_id=app_id, extra=named)
    try:
        try:
            first.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the replaced worker kept running:\n{first.log_tail()}")
        assert first.process.returncode != 0
        assert "HUB_WORKER_NAME=twin" in first.log_tail(20_000)
        assert second.process.poll() is None
        assert second.get("/ready")[0] == 200
    finally:
        first.stop(kill=True)
        second.stop(kill=True)


def workers_cli(broker: Broker, prefix: str, app_id: str, *args: str) -> tuple[int, str]:
    """``hub workers ...`` as an operator runs it: exit code, and stdout (or stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "hub", "workers", *args, "--bootstrap-server", broker.bootstrap,
         "--app-id", app_id],
        env={**os.environ, "HUB_TOPIC_PREFIX": prefix},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout or result.stderr


def test_a_named_worker_scaled_down_hands_its_partitions_over_once_removed(
    broker: Broker, tmp_path: Path
) -> None:
    """A named worker stopped for good (SIGTERM) stays in the group with its partitions until
    its session expires (60 s here): ``hub workers list`` shows it; ``hub workers remove`` takes
    it out, and the worker left holds every partition well before that session would end."""
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"s{tag}.", f"hub-scale-{tag}"
    session = {"HUB_SESSION_TIMEOUT_S": str(STATIC_SESSION_S)}
    kept = start_worker(broker, tmp_path / "a", prefix=prefix, app_id=app_id,
                        extra={**session, "HUB_WORKER_NAME": "keep-me"})  # fmt: skip
    gone = start_worker(broker, tmp_path / "b", prefix=prefix, app_id=app_id,
                        extra={**session, "HUB_WORKER_NAME": "scale-me-down"})  # fmt: skip
    try:

        def listed() -> dict[str, Any]:
            code, out = workers_cli(broker, prefix, app_id, "list", "--json")
            assert code == 0, out
            document: dict[str, Any] = json.loads(out)
            return document

        wait_for(lambda: len(listed()["members"]) == 2 and not listed()["unheld_partitions"],
                 60, "both workers holding partitions")  # fmt: skip
        gone.stop()  # SIGTERM: a static member does not leave the group
        stopped = time.monotonic()
        time.sleep(2)
        names = {m["name"]: m["partitions"] for m in listed()["members"]}
        assert set(names) == {"keep-me", "scale-me-down"} and names["scale-me-down"], names

        code, out = workers_cli(broker, prefix, app_id, "remove", "scale-me-down")
        assert code == 0, out
        assert "scale-me-down: removed" in out

        def held() -> list[tuple[str, list[int]]]:
            return [(m["name"], m["partitions"]) for m in listed()["members"]]

        wait_for(lambda: held() == [("keep-me", [0, 1, 2])], 30, "one worker holding all")
        assert time.monotonic() - stopped < STATIC_SESSION_S / 2
        code, out = workers_cli(broker, prefix, app_id, "list")
        assert code == 0 and "keep-me" in out and "scale-me-down" not in out, out

        code, out = workers_cli(broker, prefix, app_id, "remove", "never-was")
        assert code == 1
        assert f"never-was: not a member of group {app_id}" in out
    finally:
        kept.stop(kill=True)
        gone.stop(kill=True)


def collect_ids(broker: Broker, topic: str, want: set[str], timeout_s: float) -> Counter[str]:
    """Event ids seen on ``topic`` (with repeats) once all of ``want`` arrived or time is up."""
    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
        isolation_level=READ_COMMITTED,
    )
    consumer.subscribe([topic])
    got: Counter[str] = Counter()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for message in consumer:
                got[str(decode(message.value)["event_id"])] += 1
            if want <= set(got):
                for message in consumer:  # a last quiet read for late repeats
                    got[str(decode(message.value)["event_id"])] += 1
                break
    finally:
        consumer.close()
    return got


def test_two_workers_split_the_partitions_and_either_answers_for_any_dossier(
    broker: Broker, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"s{tag}.", f"hub-scale-{tag}"
    start = datetime.now(VN) - timedelta(hours=8)
    events = province_events(30, start)
    _, want_status = expected_status_ids(events)
    first = start_worker(broker, tmp_path / "one", prefix=prefix, app_id=app_id)
    second = start_worker(broker, tmp_path / "two", prefix=prefix, app_id=app_id)
    try:
        publish(broker, prefix, events)
        for worker in (first, second):
            wait_for(
                lambda w=worker: all(view_status(w, c) == s for c, s in want_status.items()),
                180,
                "both workers to answer for every dossier",
            )
        # each worker holds some partitions; either answers for the province: its own part
        # and the other's, every dossier once
        answers = []
        for worker in (first, second):
            status, summary = worker.get(f"/agencies/{JUSTICE}/summary")
            assert status == 200, summary
            assert summary["counts"].get("submitted_total", 0) == len(want_status), summary
            status, overdue = worker.get("/overdue?size=500")
            assert status == 200, overdue
            answers.append((summary, overdue))
        assert answers[0] == answers[1]
    finally:
        first.stop()
        second.stop()
