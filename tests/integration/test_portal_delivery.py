"""The national-portal sink against the portal emulator: both real HTTP, the sink run by the
connector runtime on a real broker fed by a real hub worker.

The emulator's own behaviour and the sink's delivery rules (retry, Retry-After, circuit
breaker, never skipping a failing status) are checked first without Kafka, through the
runtime's own delivery of one record (:meth:`SinkRunner.deliver`); the broker test then runs
the whole path with the portal down for ~10 s and ~10% injected 5xx, and checks that every
status on ``portal.outbox`` reached the portal exactly once (by idempotency key), in
per-dossier order, with a rejected dossier's statuses dead-lettered while the others kept
flowing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import REGISTRY

from connectors.portal.connector import PortalConnector
from connectors.portal.contract import PortalContract
from connectors.portal.emulator import PortalEmulator
from connectors.publisher import EventPublisher
from connectors.scenarios import VN, dossier_code, dossier_life
from connectors.sdk import ConnectorConfig, PermanentError, SinkRecord, parse_config
from connectors.sdk.runtime import ConnectorRuntime
from connectors.sdk.sink import SinkRunner
from hub.consumer_group import Record
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from hub.dlq.headers import DeadLetter
from hub.stack.tools import free_port
from tests.fixtures.stack import Broker
from tests.fixtures.topics import read_topic
from tests.fixtures.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
JUSTICE = "000.00.03.H40"
CRIMINAL_RECORD = "2.000488"
TOKEN = "test-portal-token"
NOWHERE = "127.0.0.1:1"  # the rules below never reach Kafka


def body(code: str = "000.00.03.H40-250805-0001", status: int = 2) -> dict[str, Any]:
    return {"MaHoSo": code, "MaTTHC": CRIMINAL_RECORD, "KenhThucHien": 2,
            "TrangThaiHoSo": status, "DonViXuLy": JUSTICE, "ChuHoSo": "Lê Văn Tám"}  # fmt: skip


def status(code: str = "000.00.03.H40-250805-0001", event_id: str = "e1") -> dict[str, Any]:
    """A decoded status record (what the JSON converter gives ``put``)."""
    return {"event_id": event_id, "dossier_code": code, "procedure_code": CRIMINAL_RECORD,
            "channel": "ONLINE", "portal_status_code": 2, "agency_code_handling": JUSTICE,
            "applicant_name": "Lê Văn Tám"}  # fmt: skip


def post(
    emulator: PortalEmulator, data: Any, key: str | None = "k1", token: str | None = TOKEN
) -> requests.Response:
    headers = {}
    if key is not None:
        headers["Idempotency-Key"] = key
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(
        f"{emulator.url}/api/dossiers/status", json=data, headers=headers, timeout=5
    )


def portal_config(url: str, bootstrap: str = NOWHERE, **changes: Any) -> ConnectorConfig:
    """The portal sink's config as an operator writes it, with quick retries."""
    settings = {"portal_url": url, "token": TOKEN, "breaker_failures": 3,
                "breaker_cooldown_s": 0.5, "rate_limit_rps": 200.0, "rate_burst": 20,
                "request_timeout_s": 5.0, "connect_timeout_s": 1.0}  # fmt: skip
    settings.update(changes.pop("settings", {}))
    raw: dict[str, Any] = {
        "name": "national-portal", "connector.class": "portal-sink", "topics": "portal.outbox",
        "value.converter": "json", "errors.tolerance": "all", "errors.retry.timeout": -1,
        "errors.retry.delay.max.ms": 500, "bootstrap.servers": bootstrap, "settings": settings,
    }  # fmt: skip
    raw.update(changes)
    return parse_config(raw, "test")


@pytest.fixture
def sender(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``sender(url)``: a started portal connector and the runtime's delivery of one record."""
    made: list[PortalConnector] = []

    def make(url: str, **changes: Any) -> tuple[PortalConnector, SinkRunner]:
        config = portal_config(url, **changes)
        connector = PortalConnector(config)
        connector.start()
        made.append(connector)
        runner = SinkRunner(config, connector, threading.Event())
        return connector, runner

    yield make
    for connector in made:
        connector.stop()


def one(value: dict[str, Any], offset: int = 0) -> Record:
    return Record("portal.outbox", 0, offset, b"k", json.dumps(value).encode(), [], None)


@pytest.fixture
def contract() -> PortalContract:
    return PortalContract(auth={"token": TOKEN, "token_env": None})


# --- the emulator ---------------------------------------------------------------------------


def test_the_emulator_checks_auth_fields_and_stores_each_key_once(
    contract: PortalContract,
) -> None:
    with PortalEmulator(contract) as emulator:
        assert post(emulator, body(), token=None).status_code == 401
        assert post(emulator, body(), token="wrong").status_code == 401
        assert post(emulator, body(), key=None).status_code == 400
        incomplete = body()
        del incomplete["MaTTHC"]
        incomplete["DonViXuLy"] = ""
        answer = post(emulator, incomplete)
        assert answer.status_code == 422
        assert answer.json()["fields"] == ["MaTTHC", "DonViXuLy"]

        first = post(emulator, body(status=1), key="a")
        assert (first.status_code, first.json()["result"]) == (201, "stored")
        again = post(emulator, body(status=1), key="a")
        assert (again.status_code, again.json()["result"]) == (200, "duplicate")
        assert post(emulator, body(status=2), key="a").status_code == 409  # key reused
        assert post(emulator, body(status=2), key="b").status_code == 201

        held = requests.get(f"{emulator.url}/admin/received", timeout=5).json()
        assert held["count"] == 2
        assert held["duplicates"] == 1
        assert held["by_dossier"] == {"000.00.03.H40-250805-0001": ["a", "b"]}
        assert [item["body"]["TrangThaiHoSo"] for item in held["items"]] == [1, 2]


def test_the_emulator_faults_are_set_over_http_and_survive_a_restart(
    contract: PortalContract,
) -> None:
    emulator = PortalEmulator(contract, port=free_port(), seed=3).start()
    try:
        admin = f"{emulator.url}/admin/faults"
        code = "000.00.03.H40-250805-0009"
        assert requests.post(admin, json={"reject_dossiers": [code]}, timeout=5).ok
        assert post(emulator, body(code), key="r").status_code == 422
        requests.post(admin, json={"down_for_s": 30}, timeout=5)
        answer = post(emulator, body(), key="x")
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        requests.post(admin, json={"down_mode": "close"}, timeout=5)
        with pytest.raises(requests.ConnectionError):
            post(emulator, body(), key="x")
        requests.post(admin, json={"down_for_s": 0, "error_rate": 1.0}, timeout=5)
        assert post(emulator, body(), key="x").status_code in (500, 502, 503)
        faults = requests.get(admin, timeout=5).json()
        assert faults["error_rate"] == 1.0 and faults["reject_dossiers"] == [code]
        assert requests.post(admin, json={"error_rate": 2}, timeout=5).status_code == 400

        requests.post(admin, json={"error_rate": 0}, timeout=5)
        assert post(emulator, body(), key="x").status_code == 201
        emulator.stop()  # the portal goes away: connections are refused
        with pytest.raises(requests.ConnectionError):
            post(emulator, body(), key="y")
        emulator.start()  # and comes back on the same port with what it held
        assert post(emulator, body(), key="x").json()["result"] == "duplicate"
    finally:
        emulator.stop()


def test_the_command_lines_answer_help() -> None:
    for argv in (["connectors.portal.emulator", "--help"], ["hub", "connector", "run", "--help"]):
        done = subprocess.run(
            [sys.executable, "-m", *argv],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "usage: " in done.stdout


# --- delivery rules, without Kafka ----------------------------------------------------------


def test_429_waits_the_retry_after_the_portal_asked_for(
    contract: PortalContract, sender: Any
) -> None:
    with PortalEmulator(contract, throttle_rate=1.0, retry_after_s=0.6) as emulator:

        def relent() -> None:
            time.sleep(0.2)
            requests.post(f"{emulator.url}/admin/faults", json={"throttle_rate": 0}, timeout=5)

        threading.Thread(target=relent).start()
        _, runner = sender(emulator.url)
        started = time.monotonic()
        assert runner.deliver(one(status()), threading.Event())
        elapsed = time.monotonic() - started
        held = emulator.received()
    assert held["count"] == 1
    assert held["answers"].get("429") == 1  # two attempts: throttled, then stored
    assert elapsed >= 0.55  # Retry-After, not the runtime's first backoff (<= 0.3 s)


def test_5xx_and_downtime_are_retried_through_the_circuit_breaker(
    contract: PortalContract, sender: Any
) -> None:
    with PortalEmulator(contract, down_for_s=2.0) as emulator:
        # the emulator's 503s ask for Retry-After: 1, which the runtime honours
        connector, runner = sender(emulator.url, settings={"breaker_failures": 2})
        assert runner.deliver(one(status()), threading.Event())
        held = emulator.received()
    assert connector.breaker is not None
    assert connector.breaker.opened_count >= 1
    assert connector.breaker.state.name == "CLOSED"
    # the open circuit held requests back: far fewer than 2 s of 0.15-0.5 s retries would make
    assert held["answers"].get("503", 0) <= 8
    assert held["count"] == 1


def test_a_status_failing_longer_than_any_budget_is_retried_not_skipped(
    contract: PortalContract, sender: Any
) -> None:
    """``errors.retry.timeout = -1`` (required): a portal failing for a while holds the status
    (and its partition) until it answers; nothing is dead-lettered or skipped."""
    with PortalEmulator(contract, error_rate=1.0) as emulator:
        threading.Timer(
            2.0,
            lambda: requests.post(
                f"{emulator.url}/admin/faults", json={"error_rate": 0}, timeout=5
            ),
        ).start()
        _, runner = sender(emulator.url, settings={"breaker_failures": 100})
        started = time.monotonic()
        assert runner.deliver(one(status()), threading.Event())
        assert time.monotonic() - started >= 1.9
        held = emulator.received()
    assert held["count"] == 1
    assert sum(n for code, n in held["answers"].items() if code.startswith("5")) >= 3


def test_a_4xx_is_a_rejection_naming_known_fields_only(
    contract: PortalContract, sender: Any
) -> None:
    code = "000.00.03.H40-250805-0002"
    with PortalEmulator(contract, reject_dossiers=[code]) as emulator:
        connector, _ = sender(emulator.url)
        record = SinkRecord("portal.outbox", 0, 0, b"k", status(code))
        with pytest.raises(PermanentError) as refused:
            connector.put(record)
    assert refused.value.reason == "portal-rejected-422"
    assert refused.value.detail == "the portal answered HTTP 422 about MaHoSo"


def test_a_stop_abandons_the_retries_without_an_outcome(
    contract: PortalContract, sender: Any
) -> None:
    with PortalEmulator(contract, error_rate=1.0) as emulator:
        _, runner = sender(emulator.url)
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        started = time.monotonic()
        assert runner.deliver(one(status()), stop) is False  # not done: read again later
        assert time.monotonic() - started < 3


# --- the whole path on a broker -------------------------------------------------------------


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.mark.broker
@pytest.mark.timeout(360)  # the session's broker may start inside this test's setup
def test_every_status_reaches_the_portal_once_and_in_order_through_an_outage(
    broker: Broker, hub_worker: Worker, contract: PortalContract
) -> None:
    began = time.monotonic()
    budget = began + 180  # the test's own waits end within this, whatever the portal does
    prefix = hub_worker.env["HUB_TOPIC_PREFIX"]
    start = datetime.now(VN) - timedelta(hours=6)
    codes = [dossier_code(JUSTICE, start, n) for n in range(1, 31)]
    rejected = codes[6]
    supplemented = set(codes[::4])
    expected_total = sum(8 if c in supplemented else 6 for c in codes)
    labels = ("delivered", "duplicate", "dead_lettered")
    before = {o: metric("hub_portal_deliveries_total", {"outcome": o}) for o in labels}
    retries_before = metric("hub_portal_retries_total")

    # The portal is down at first: not even listening (connections refused).
    emulator = PortalEmulator(
        contract, port=free_port(), error_rate=0.10, lost_ack_rate=0.05,
        reject_dossiers=[rejected], seed=20250805,
    )  # fmt: skip
    config = portal_config(
        emulator.url, broker.bootstrap, **{"schema.registry.url": broker.registry_url,
        "topic.prefix": prefix, "value.converter": "avro", "errors.retry.delay.max.ms": 1000,
        "settings": {"breaker_failures": 5, "breaker_cooldown_s": 1.0}},
    )  # fmt: skip
    runtime = ConnectorRuntime(config)
    assert isinstance(runtime.connector, PortalConnector)
    connector = runtime.connector
    runner = runtime.start_thread()
    try:
        publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
        for code in codes:
            for event in dossier_life(
                code, JUSTICE, CRIMINAL_RECORD, start, supplement=code in supplemented
            ):
                assert publisher.publish(event) == []
        publisher.close()
        time.sleep(max(0.0, 5 - (time.monotonic() - began)))
        # ... then answers by closing every connection for another 5 s ...
        emulator.start()
        requests.post(
            f"{emulator.url}/admin/faults", json={"down_mode": "close", "down_for_s": 5}, timeout=5
        )
        outage_end = time.monotonic() + 5

        outbox = read_topic(
            broker.bootstrap, f"{prefix}portal.outbox", expect=expected_total, timeout_s=90
        )
        assert len(outbox) == expected_total
        decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
        order: dict[str, list[str]] = defaultdict(list)
        for message in outbox:
            record = decode(message.value)
            order[record["dossier_code"]].append(str(record["event_id"]))
        wanted = {key for code, keys in order.items() if code != rejected for key in keys}

        def dead_lettered() -> float:
            return (
                metric("hub_portal_deliveries_total", {"outcome": "dead_lettered"})
                - before["dead_lettered"]
            )

        while time.monotonic() < budget and runtime.error is None:
            held = emulator.received()
            if held["count"] >= len(wanted) and dead_lettered() >= len(order[rejected]):
                break
            time.sleep(0.5)
        delivered_at = time.monotonic()
        assert runtime.error is None, runtime.error
        assert delivered_at > outage_end  # the outage really happened before delivery ended

        held = emulator.received()
        keys = [item["key"] for item in held["items"]]
        assert len(keys) == len(set(keys))
        assert set(keys) == wanted  # every status once; nothing of the rejected dossier
        assert held["count"] == expected_total - len(order[rejected])
        for code, expected_order in order.items():
            if code != rejected:
                assert held["by_dossier"][code] == expected_order, code

        letters = read_topic(
            broker.bootstrap, f"{prefix}portal.outbox.dlq", expect=len(order[rejected]),
            timeout_s=max(5.0, budget - time.monotonic()),
        )  # fmt: skip
        assert [str(decode(m.value)["event_id"]) for m in letters] == order[rejected]
        for message in letters:
            letter = DeadLetter.from_headers(message.headers)
            assert letter.reason == "portal-rejected-422"
            assert letter.processor == "connector:national-portal"
            assert letter.source_topic == f"{prefix}portal.outbox"
            assert letter.dossier_code == rejected
            assert "Nguyễn" not in letter.detail  # no personal data in the headers
    finally:
        runtime.request_stop()
        runner.join(timeout=60)
        committed = (
            {
                int(where.rsplit("[", 1)[1].rstrip("]")): offset["offset"]
                for where, offset in runtime.committed.items()
            }
            if not runner.is_alive()
            else {}
        )
        # A retry after a lost ack may land after the snapshot above: count repeats at the end.
        final_duplicates = emulator.received()["duplicates"]
        emulator.stop()

    # Offsets were committed up to the end: everything was acknowledged or dead-lettered. The
    # worker writes the outbox in transactions, so a partition's end offset is one past its
    # last commit marker: compare with the offset after each partition's last record instead.
    last: dict[int, int] = {}
    for message in read_topic(broker.bootstrap, f"{prefix}portal.outbox", settle_s=0):
        last[message.partition] = max(last.get(message.partition, -1), message.offset)
    assert last, "nothing on the outbox"
    assert {p: o + 1 for p, o in last.items()} == {
        p: o for p, o in committed.items() if o is not None
    }

    after = {o: metric("hub_portal_deliveries_total", {"outcome": o}) - before[o] for o in labels}
    retries = metric("hub_portal_retries_total") - retries_before
    assert after["delivered"] + after["duplicate"] == len(wanted)
    assert after["dead_lettered"] == len(order[rejected])
    assert retries > 0
    assert metric("hub_portal_circuit_state") == 0
    assert final_duplicates == after["duplicate"] > 0  # lost acks came back as duplicates
    print(
        f"\nportal delivery: {len(outbox)} statuses on the outbox, {held['count']} stored by the "
        f"portal, {after['delivered']:.0f} stored as new, "
        f"{after['duplicate']:.0f} duplicates suppressed, {after['dead_lettered']:.0f} "
        f"dead-lettered, {retries:.0f} retries, circuit opened "
        f"{connector.breaker.opened_count if connector.breaker else 0}x, "
        f"portal answers {held['answers']}, {held['requests']} requests, "
        f"{delivered_at - began:.1f}s from the first publish to the last delivery"
    )
