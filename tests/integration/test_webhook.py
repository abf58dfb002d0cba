"""Agency webhooks end to end: a real hub worker transfers dossiers, the sink delivers the
``agency.inbox.<agency>`` records to a real local HTTP receiver."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import REGISTRY

from connectors.publisher import EventPublisher
from connectors.scenarios import VN, dossier_code, dossier_life
from connectors.sdk import parse_config
from connectors.sdk.runtime import ConnectorRuntime
from connectors.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    inbox_pattern,
    sign,
    to_json,
    verify,
)
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from hub.dlq.headers import DeadLetter
from tests.fixtures.stack import Broker
from tests.fixtures.topics import read_topic
from tests.fixtures.worker import Worker

JUSTICE = "000.00.03.H40"
HEALTH = "000.00.09.H40"
CRIMINAL_RECORD = "2.000488"
SECRET = b"s3cret-for-tests"


@dataclass
class Request:
    key: str
    timestamp: str
    signature: str
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver; ``answer(request_number, body)`` chooses each status."""

    answer: Callable[[int, dict[str, Any]], int] = lambda n, body: 201
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def accepted(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                status = state.answer(len(state.requests), json.loads(body))
                state.requests.append(
                    Request(
                        self.headers.get("Idempotency-Key", ""),
                        self.headers.get(TIMESTAMP_HEADER, ""),
                        self.headers.get(SIGNATURE_HEADER, ""),
                        body,
                        status,
                    )
                )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hub/inbox"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def finished(outcome: str) -> float:
    return REGISTRY.get_sample_value("hub_webhook_deliveries_total", {"outcome": outcome}) or 0.0


@dataclass
class Running:
    """The agency-webhook connector run by the connector runtime, as ``hub connector run``
    runs it; ``delivered``/``dead_lettered`` count what it finished since it started."""

    runtime: ConnectorRuntime
    thread: threading.Thread
    before: dict[str, float]

    def count(self, outcome: str) -> float:
        return finished(outcome) - self.before[outcome]

    @property
    def delivered(self) -> float:
        return self.count("delivered")

    @property
    def dead_lettered(self) -> float:
        return self.count("dead_lettered")

    def close(self) -> None:
        self.runtime.request_stop()
        self.runtime.join(30)


def start_sink(broker: Broker, prefix: str, receiver: Receiver) -> Running:
    config = parse_config(
        {
            "name": "agency-webhook",
            "connector.class": "agency-webhook",
            "bootstrap.servers": broker.bootstrap,
            "schema.registry.url": broker.registry_url,
            "topic.prefix": prefix,
            "errors.tolerance": "all",
            "errors.retry.timeout": -1,
            "errors.retry.delay.max.ms": 500,
            "metadata.max.age.ms": 1000,  # the inbox topic appears after the sink joined
            "settings": {
                "endpoints": {HEALTH: {"url": receiver.url, "secret": SECRET.decode()}},
                "breaker_failures": 5,
                "breaker_cooldown_s": 0.3,
                "rate_limit_rps": 100.0,
                "rate_burst": 10,
                "request_timeout_s": 5.0,
                "connect_timeout_s": 1.0,
            },
        },
        "test",
    )
    before = {outcome: finished(outcome) for outcome in ("delivered", "dead_lettered")}
    runtime = ConnectorRuntime(config)
    return Running(runtime, runtime.start_thread(), before)


def transfer(broker: Broker, prefix: str, numbers: list[int]) -> list[str]:
    publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
    start = datetime.now(VN) - timedelta(hours=6)
    codes = []
    try:
        for n in numbers:
            code = dossier_code(JUSTICE, start, n)
            codes.append(code)
            for event in dossier_life(code, JUSTICE, CRIMINAL_RECORD, start, transfer_to=HEALTH,
                                      finish=False):  # fmt: skip
                assert publisher.publish(event) == []
    finally:
        publisher.close()
    return codes


def wait_for(check: Callable[[], bool], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


# --- without Kafka ----------------------------------------------------------------------------


def test_signatures_and_the_subscription_pattern() -> None:
    body = b'{"a":1}'
    signature = sign(SECRET, "1700000000", body)
    assert signature.startswith("sha256=")
    assert verify(SECRET, "1700000000", body, signature, now=1700000100)
    assert not verify(SECRET, "1700000000", body + b" ", signature, now=1700000100)
    assert not verify(b"other", "1700000000", body, signature, now=1700000100)
    assert not verify(SECRET, "1700000000", body, signature, now=1700009999)  # stale
    pattern = re.compile(inbox_pattern("t1."))
    assert pattern.match("t1.agency.inbox.000.00.09.H40")
    assert not pattern.match("t1.agency.inbox.000.00.09.H40.dlq")
    assert not pattern.match("t2.agency.inbox.000.00.09.H40")
    assert not pattern.match("t1.portal.outbox")
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=VN)
    assert to_json({"at": moment, "step": ("DossierStep", {"n": 1})}) == {
        "at": "2026-01-02T03:04:05+07:00",
        "step": {"n": 1},
    }


# --- on the broker, fed by a real hub worker --------------------------------------------------


@pytest.mark.broker
def test_a_transferred_dossier_reaches_the_agency_once_signed_with_its_event_id(
    broker: Broker, hub_worker: Worker, receiver: Receiver
) -> None:
    prefix = hub_worker.env["HUB_TOPIC_PREFIX"]
    running = start_sink(broker, prefix, receiver)
    try:
        [code] = transfer(broker, prefix, [11])
        # first the worker's output (slow when the machine is busy), then the delivery
        [inbox] = read_topic(broker.bootstrap, f"{prefix}agency.inbox.{HEALTH}", 1, 90)
        wait_for(lambda: len(receiver.accepted()) >= 1, 15)
        time.sleep(2)  # anything extra would have arrived by now
    finally:
        running.close()
    record = AvroDeserializer(SchemaRegistryClient(broker.registry_url))(inbox.value)
    [request] = receiver.requests
    assert request.key == str(record["event_id"])
    assert verify(SECRET, request.timestamp, request.body, request.signature)
    assert request.json["dossier_code"] == code
    assert request.json["agency_code_handling"] == HEALTH
    assert request.json == to_json(record)
    assert running.delivered == 1


@pytest.mark.broker
def test_a_500_is_retried_until_it_recovers_and_a_400_goes_to_the_dead_letter_topic(
    broker: Broker, hub_worker: Worker, receiver: Receiver
) -> None:
    prefix = hub_worker.env["HUB_TOPIC_PREFIX"]
    start = datetime.now(VN) - timedelta(hours=6)
    flaky, refused = dossier_code(JUSTICE, start, 21), dossier_code(JUSTICE, start, 22)
    seen: dict[str, int] = {}

    def answer(n: int, body: dict[str, Any]) -> int:
        code = body["dossier_code"]
        seen[code] = seen.get(code, 0) + 1
        if code == refused:
            return 400
        return 503 if seen[code] <= 2 else 200

    receiver.answer = answer
    running = start_sink(broker, prefix, receiver)
    try:
        transfer(broker, prefix, [21, 22])
        wait_for(lambda: running.delivered + running.dead_lettered >= 2)
        time.sleep(1)
    finally:
        running.close()
    flaky_requests = [r for r in receiver.requests if r.json["dossier_code"] == flaky]
    assert [r.status for r in flaky_requests] == [503, 503, 200]
    assert len({r.key for r in flaky_requests}) == 1  # the same idempotency key every time
    assert [r.status for r in receiver.requests if r.json["dossier_code"] == refused] == [400]
    [dead] = read_topic(broker.bootstrap, f"{prefix}agency.inbox.{HEALTH}.dlq", 1)
    letter = DeadLetter.from_headers(dead.headers)
    assert (letter.reason, letter.processor) == ("webhook-rejected-400", "connector:agency-webhook")
    assert letter.dossier_code == refused
    assert letter.source_topic == f"{prefix}agency.inbox.{HEALTH}"
