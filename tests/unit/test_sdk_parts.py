"""The SDK's shared parts, without Kafka: rate limit, circuit breaker, Retry-After, HTTP
delivery's verdicts (against a real local HTTP server), dead-letter codes, topic
subscriptions, and a sink's lanes (order within a partition, partitions in parallel)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from connectors.sdk import (
    ConnectorFailedError,
    PermanentError,
    RetriableError,
    SinkConnector,
    SinkRecord,
    parse_config,
)
from connectors.sdk.http import HttpDelivery, Verdict, admit, settle
from connectors.sdk.identity import codes_of
from connectors.sdk.limits import BreakerState, CircuitBreaker, TokenBucket
from connectors.sdk.retry import MAX_RETRY_AFTER_S, retry_after_seconds
from connectors.sdk.sink import Lane, SinkRunner
from hub.consumer_group import Partition, Record


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- rate limit and circuit breaker -----------------------------------------------------------


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.wait_s() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.wait_s() == pytest.approx(0.5)  # empty: half a second to the next token
    clock.now += 0.5
    assert bucket.wait_s() == 0.0
    clock.now += 100  # saved up, but never more than the burst
    assert [bucket.wait_s() for _ in range(4)][-1] > 0
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


def test_the_circuit_opens_after_consecutive_failures_and_probes_once_after_cooldown() -> None:
    clock = Clock()
    seen: list[BreakerState] = []
    breaker = CircuitBreaker(3, 5.0, name="portal", on_change=seen.append, clock=clock)
    breaker.failure()
    breaker.failure()
    breaker.success()  # a success resets the count
    breaker.failure()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED and breaker.wait_s() == 0
    breaker.failure()
    assert breaker.state.name == "OPEN"
    assert breaker.wait_s() == pytest.approx(5.0)
    clock.now += 5
    assert breaker.wait_s() == 0  # the probe may go
    assert breaker.state.name == "HALF_OPEN"
    assert breaker.wait_s() > 0  # only one probe at a time
    breaker.failure()  # the probe failed: open again at once
    assert breaker.state.name == "OPEN" and breaker.opened_count == 2
    clock.now += 5
    assert breaker.wait_s() == 0
    breaker.success()
    assert breaker.state.name == "CLOSED"
    assert seen == [
        BreakerState.CLOSED,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_retry_after_reads_seconds_and_http_dates_within_bounds() -> None:
    now = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=42), usegmt=True),
                               now=now) == pytest.approx(42)  # fmt: skip
    assert retry_after_seconds(format_datetime(now - timedelta(hours=1), usegmt=True),
                               now=now) == 0.0  # fmt: skip
    assert retry_after_seconds("86400") == MAX_RETRY_AFTER_S
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


# --- HTTP delivery ------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server answering each POST with the next planned (status, headers, body)."""

    def __init__(self) -> None:
        self.plan: list[tuple[int, dict[str, str], Any]] = []
        self.keys: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.keys.append(self.headers.get("Idempotency-Key", ""))
                status, headers, body = outer.plan.pop(0)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/in"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_answers_are_sorted_into_what_to_do_with_the_record(receiver: Receiver) -> None:
    http = HttpDelivery(connect_timeout_s=1, request_timeout_s=5)
    receiver.plan = [
        (201, {}, {"result": "stored"}),
        (200, {}, {"result": "duplicate"}),
        (200, {"Idempotent-Replayed": "true"}, None),
        (429, {"Retry-After": "2"}, None),
        (503, {}, None),
        (408, {}, None),
        (422, {}, {"fields": ["MaHoSo"]}),
    ]
    answers = [http.post(receiver.url, b"{}", f"k{n}") for n in range(7)]
    assert [a.verdict for a in answers] == [
        Verdict.ACKNOWLEDGED,
        Verdict.DUPLICATE,
        Verdict.DUPLICATE,
        Verdict.THROTTLED,
        Verdict.FAILED,
        Verdict.FAILED,
        Verdict.REJECTED,
    ]
    assert answers[3].retry_after_s == 2.0
    assert answers[6].body == {"fields": ["MaHoSo"]}
    assert receiver.keys == [f"k{n}" for n in range(7)]  # the idempotency key on each
    nobody = http.post("http://127.0.0.1:1/in", b"{}", "k")
    assert (nobody.verdict, nobody.status, nobody.error) == (
        Verdict.FAILED,
        None,
        "ConnectionError",
    )
    http.close()


def test_settle_raises_what_the_runtime_acts_on_and_keeps_the_breaker_informed(
    receiver: Receiver,
) -> None:
    http = HttpDelivery()
    breaker = CircuitBreaker(1, 60.0, name="agency X")
    receiver.plan = [(422, {}, None), (429, {"Retry-After": "1"}, None), (500, {}, None)]
    with pytest.raises(PermanentError) as rejected:
        settle(http.post(receiver.url, b"{}", "a"), breaker, rejected="webhook-rejected")
    assert rejected.value.reason == "webhook-rejected-422"
    assert breaker.state is BreakerState.CLOSED  # a 4xx means the receiver is up
    with pytest.raises(RetriableError) as throttled:
        settle(http.post(receiver.url, b"{}", "b"), breaker, rejected="webhook-rejected")
    assert throttled.value.retry_after_s == 1.0
    with pytest.raises(RetriableError):
        settle(http.post(receiver.url, b"{}", "c"), breaker, rejected="webhook-rejected")
    assert breaker.state.name == "OPEN"
    with pytest.raises(RetriableError, match="agency X circuit open") as held:
        admit(breaker, TokenBucket(10, 1), threading.Event())
    assert held.value.retry_after_s == pytest.approx(60.0, abs=1)
    http.close()


# --- dead-letter codes and subscriptions --------------------------------------------------------


def test_a_dead_letter_carries_codes_never_free_text() -> None:
    good = codes_of({"agency_code": "000.00.03.H40", "event_type": "DossierReceived",
                     "dossier_code": "000.00.03.H40-250805-0001"})  # fmt: skip
    assert (good.agency_code, good.event_type) == ("000.00.03.H40", "DossierReceived")
    assert good.dossier_code == "000.00.03.H40-250805-0001"
    status = codes_of({"agency_code_handling": "000.00.09.H40"})
    assert status.agency_code == "000.00.09.H40"
    typed_wrong = codes_of({"agency_code": "Nguyễn Văn An", "dossier_code": "Lê Thị Hoa",
                            "event_type": "a name, not a type"})  # fmt: skip
    assert typed_wrong == codes_of(None) == codes_of("text") == codes_of(b"\xff not json")
    raw = codes_of(b'{"dossier_code": "000.00.03.H40-250805-0001", "event_type": "X!"}')
    assert (raw.dossier_code, raw.event_type) == ("000.00.03.H40-250805-0001", None)
    assert typed_wrong.agency_code is None and typed_wrong.dossier_code is None


def test_topics_regex_is_anchored_after_the_escaped_prefix() -> None:
    config = parse_config(
        {
            "name": "s",
            "connector.class": "tests.unit.test_sdk:NoopSink",
            "topic.prefix": "t1.",
            "topics": "portal.outbox",
            "topics.regex": r"agency\.inbox\..*",
        },
    )
    plain, regex = config.input_topics
    assert plain == "t1.portal.outbox"
    assert re.fullmatch(regex, "t1.agency.inbox.000.00.09.H40")
    assert not re.fullmatch(regex, "t1xagency.inbox.000.00.09.H40")  # the prefix's dot is literal
    assert not re.fullmatch(regex, "t2.agency.inbox.000.00.09.H40")


def test_a_sink_without_topics_is_refused_unless_its_class_has_a_default() -> None:
    from connectors.sdk import ConnectorConfigError

    with pytest.raises(ConnectorConfigError, match="topics: missing"):
        parse_config({"name": "s", "connector.class": "tests.unit.test_sdk:NoopSink"})
    webhook = parse_config(
        {"name": "w", "connector.class": "agency-webhook", "errors.retry.timeout": -1,
         "settings": {"endpoints": {"000.00.09.H40": {"url": "http://127.0.0.1:1/"}}}}
    )  # fmt: skip
    assert webhook.input_topics == []  # the class's default pattern is used by the runtime


# --- a sink's lanes -------------------------------------------------------------------------------


class Recording(SinkConnector):
    """Puts into a list; partition 0's first record blocks until ``release`` is set, and the
    values in ``retry`` fail that many times first."""

    retry: ClassVar[dict[str, int]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.put_order: list[tuple[int, str]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def put(self, record: SinkRecord) -> None:
        value = record.value
        assert isinstance(value, str)
        if record.partition == 0 and record.offset == 0:
            self.release.wait(10)
        if self.retry.get(value, 0) > 0:
            self.retry[value] -= 1
            raise RetriableError("not yet", retry_after_s=0.01)
        if value == "bad":
            raise PermanentError("refused", "the receiver said no")
        with self.lock:
            self.put_order.append((record.partition, value))


def runner_for(tolerance: str = "all") -> tuple[Recording, SinkRunner]:
    config = parse_config(
        {
            "name": "lanes",
            "connector.class": "tests.unit.test_sdk:NoopSink",
            "topics": "in",
            "value.converter": "json",
            "errors.tolerance": tolerance,
            "errors.retry.delay.max.ms": 50,
            "bootstrap.servers": "127.0.0.1:1",
        },
    )
    connector = Recording(config, config.connector_settings)
    return connector, SinkRunner(config, connector, threading.Event())


def records(partition: int, *values: str) -> list[Record]:
    return [Record("in", partition, n, None, json.dumps(v).encode(), [], None)
            for n, v in enumerate(values)]  # fmt: skip


def test_lanes_keep_each_partitions_order_and_do_not_wait_for_each_other() -> None:
    connector, runner = runner_for()
    Recording.retry = {"b2": 2}
    slow, fast = Lane(runner, Partition("in", 0)), Lane(runner, Partition("in", 1))
    try:
        slow.add(records(0, "a0", "a1", "a2"))
        fast.add(records(1, "b0", "b1", "b2", "b3"))
        deadline = time.monotonic() + 10
        while fast.done_offset != 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        # partition 1 finished while partition 0's first record is still being put
        assert fast.done_offset == 3 and slow.done_offset is None
        connector.release.set()
        while slow.done_offset != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        slow.halt(5)
        fast.halt(5)
    assert [v for p, v in connector.put_order if p == 0] == ["a0", "a1", "a2"]
    assert [v for p, v in connector.put_order if p == 1] == ["b0", "b1", "b2", "b3"]


def test_a_permanent_failure_stops_the_connector_when_nothing_may_be_dead_lettered() -> None:
    _, runner = runner_for(tolerance="none")
    [record] = records(3, "bad")
    with pytest.raises(ConnectorFailedError, match=r"in\[3\]@0 failed \(refused"):
        runner.deliver(record, threading.Event())


def test_a_stop_during_retries_leaves_the_record_undone() -> None:
    connector, runner = runner_for()
    Recording.retry = {"late": 10_000}
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    [record] = records(2, "late")
    assert runner.deliver(record, stop) is False
    assert connector.put_order == []
