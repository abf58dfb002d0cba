"""The national-portal sink: every status on ``<prefix>portal.outbox`` POSTed to the portal.

Delivery guarantee: at-least-once to the portal, exactly-once in effect. Each status is sent
with the idempotency key = its ``event_id`` (deterministic per status change, see
``docs/events.md``), so a retry, a redelivery after a crash or a rebalance is recognised by
the portal as a duplicate. An offset is committed only once every record before it was
acknowledged by the portal (2xx, a duplicate included) or dead-lettered (acknowledged by Kafka).

Order: one lane (thread) per assigned partition delivers that partition's records one at a
time, in offset order; a dossier's statuses share its key, hence its partition, so they never
overtake each other. Partitions do not wait for each other.

Failures:

* 5xx, 408, 401 (a token problem is not the record's fault), timeouts and connection errors
  are retried with capped, jittered exponential backoff (``retry_initial_s`` doubling up to
  ``retry_max_s``, each delay drawn from [d/2, d]). After ``retry_timeout_s`` on one record the
  partition is paused for ``pause_s`` (no fetching) and then retried again: a record is never
  skipped.
* 429 waits the ``Retry-After`` the portal asked for (seconds or an HTTP date).
* Other 4xx: the record goes to ``<prefix>portal.outbox.dlq`` with its original bytes and the
  ``hub.errors.*`` headers (processor ``portal-sink``, reason ``portal-rejected-<code>``), and
  delivery carries on. Undecodable or unmappable records go there too.
* A circuit breaker shared by all lanes opens after ``breaker_failures`` consecutive failures,
  lets one probe through after ``breaker_cooldown_s`` (half-open), and closes on its success.
* A token bucket caps the request rate (``rate_limit_rps``, bursts of ``rate_burst``).

Metrics: ``hub_portal_circuit_state`` (0 closed, 1 half-open, 2 open),
``hub_portal_deliveries_total{outcome}`` (delivered, duplicate, dead_lettered),
``hub_portal_retries_total``, ``hub_portal_delivery_latency_seconds`` (status occurred_at to
the portal's acknowledgement) and ``hub_portal_paused_partitions``.

Personal data: bodies are never logged; logs name the dossier code, key and HTTP status only.
Run ``python -m connectors.portal.sink --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import enum
import json
import logging
import random
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import requests
from kafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram, start_http_server
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.cli import add_kafka_arguments
from connectors.portal.contract import (
    MappingError,
    PortalContract,
    idempotency_key,
    load_contract,
    to_portal_payload,
)
from hub.consumer_group import (
    CommitFailedError,
    ConsumerError,
    Partition,
    Record,
    manual_commit_consumer,
)
from hub.contract.errors import ContractError, RegistryUnavailableError
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from hub.dlq import (
    DeadLetter,
    DeadLetterError,
    DeadLetterPublisher,
    DeadLetterPublishError,
    attempt_of,
    dlq_topic,
)
from hub.settings import HubSettings
from hub.topic_admin import TopicCreator

__all__ = [
    "PROCESSOR",
    "Attempt",
    "CircuitBreaker",
    "Deliverer",
    "Lane",
    "Outcome",
    "PortalClient",
    "PortalSink",
    "RebalanceListener",
    "SinkSettings",
    "TokenBucket",
    "Totals",
    "Verdict",
    "backoff_delay",
    "build_parser",
    "main",
    "retry_after_seconds",
    "text_field",
]

log = logging.getLogger("connectors.portal.sink")

PROCESSOR: Final = "portal-sink"
OUTBOX: Final = "portal.outbox"

CIRCUIT_STATE = Gauge(
    "hub_portal_circuit_state", "Portal circuit breaker: 0 closed, 1 half-open, 2 open."
)
DELIVERIES = Counter(
    "hub_portal_deliveries_total",
    "Statuses finished by the portal sink: delivered, duplicate (the portal had it already) "
    "or dead_lettered.",
    ["outcome"],
)
RETRIES = Counter("hub_portal_retries_total", "Portal requests repeated after a failure.")
LATENCY = Histogram(
    "hub_portal_delivery_latency_seconds",
    "From a status change's occurred_at to the portal's acknowledgement.",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400),
)
PAUSED = Gauge("hub_portal_paused_partitions", "portal.outbox partitions paused by the sink.")

#: 4xx answers that are not the record's fault: retried like 5xx
RETRYABLE_4XX: Final = frozenset({401, 408})
_MAX_RETRY_AFTER_S: Final = 300.0


class SinkSettings(BaseSettings):
    """``HUB_PORTAL_SINK_*`` variables; Kafka, registry and prefix come from HubSettings."""

    model_config = SettingsConfigDict(env_prefix="HUB_PORTAL_SINK_", extra="ignore")

    portal_url: str = "http://127.0.0.1:8089"
    group_id: str | None = None  # default <prefix>portal-sink
    connect_timeout_s: float = Field(3.0, gt=0)
    request_timeout_s: float = Field(10.0, gt=0)
    retry_initial_s: float = Field(0.2, gt=0)
    retry_max_s: float = Field(15.0, gt=0)
    #: a record failing this long pauses its partition for pause_s, then is retried again
    retry_timeout_s: float = Field(120.0, gt=0)
    pause_s: float = Field(10.0, ge=0)
    rate_limit_rps: float = Field(50.0, gt=0)
    rate_burst: int = Field(10, ge=1)
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(5.0, gt=0)
    #: records fetched ahead per partition before fetching pauses
    max_pending: int = Field(500, ge=1)
    commit_interval_s: float = Field(1.0, gt=0)
    shutdown_timeout_s: float = Field(20.0, gt=0)
    metrics_port: int | None = None
    contract_file: Path | None = None


# --- building blocks (no Kafka) -------------------------------------------------------------


def backoff_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (1-based): capped exponential, jittered in
    [d/2, d] so that lanes retrying together spread out."""
    ceiling = min(cap, initial * (2 ** min(attempt - 1, 30)))
    return rng.uniform(ceiling / 2, ceiling)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; thread-safe."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def _wait_s(self) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate

    def acquire(self, stop: threading.Event) -> bool:
        """Take a token, waiting as needed; False if ``stop`` was set meanwhile."""
        while True:
            wait = self._wait_s()
            if wait == 0:
                return True
            if stop.wait(wait):
                return False


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Open after ``failures`` consecutive failures; after ``cooldown_s`` one probe may go
    (half-open); its success closes the circuit, its failure opens it again. Thread-safe."""

    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        gauge: Gauge | None = CIRCUIT_STATE,
    ) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._gauge = gauge
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probe_since: float | None = None
        self.opened_count = 0
        self._export()

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    def _export(self) -> None:
        if self._gauge is not None:
            self._gauge.set(int(self._state))

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            log.info("portal circuit %s -> %s", self._state.name, state.name)
            if state is BreakerState.OPEN:
                self.opened_count += 1
        self._state = state
        self._export()

    def wait_s(self) -> float:
        """0 when a request may go now (the caller then reports its result), else how long
        to wait before asking again."""
        with self._lock:
            now = self._clock()
            if self._state is BreakerState.CLOSED:
                return 0.0
            if self._state is BreakerState.OPEN:
                left = self._opened_at + self.cooldown_s - now
                if left > 0:
                    return left
                self._set(BreakerState.HALF_OPEN)
                self._probe_since = now
                return 0.0
            # half-open: one probe at a time; a probe that never reported expires
            if self._probe_since is None or now - self._probe_since > self.cooldown_s * 4:
                self._probe_since = now
                return 0.0
            return min(0.2, self.cooldown_s)

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._probe_since = None
            self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            self._probe_since = None
            if self._state is BreakerState.HALF_OPEN or self._consecutive >= self.failures:
                self._opened_at = self._clock()
                self._set(BreakerState.OPEN)


class Verdict(enum.Enum):
    ACKNOWLEDGED = "acknowledged"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"  # a 4xx that is the record's fault: dead-letter it
    THROTTLED = "throttled"  # 429
    FAILED = "failed"  # 5xx, 408, 401, timeout, connection error: retry


@dataclass(frozen=True)
class Attempt:
    verdict: Verdict
    status: int | None = None  # HTTP status, None when there was no answer
    retry_after_s: float | None = None
    fields: tuple[str, ...] = ()  # field names the portal complained about (known names only)
    error: str | None = None  # exception class for failures without an answer


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    return min(_MAX_RETRY_AFTER_S, max(0.0, seconds))


class PortalClient:
    """One HTTP session to the portal (one per lane: sessions are not shared across threads)."""

    def __init__(
        self,
        base_url: str,
        contract: PortalContract,
        *,
        connect_timeout_s: float = 3.0,
        request_timeout_s: float = 10.0,
    ) -> None:
        self.url = base_url.rstrip("/") + contract.endpoint_path
        self.contract = contract
        self.timeout = (connect_timeout_s, request_timeout_s)
        self._known_fields = set(contract.required_fields) | {
            v for v in contract.fields.model_dump().values() if isinstance(v, str)
        }
        self._session = requests.Session()

    def post(self, payload: dict[str, Any], key: str) -> Attempt:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            self.contract.idempotency_header: key,
            **self.contract.auth.header(),
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            resp = self._session.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            return Attempt(Verdict.FAILED, error=type(exc).__name__)
        status = resp.status_code
        answer: Any = None
        with contextlib.suppress(ValueError):
            answer = resp.json()
        if 200 <= status < 300:
            duplicate = (isinstance(answer, dict) and answer.get("result") == "duplicate") or (
                resp.headers.get("Idempotent-Replayed", "").lower() == "true"
            )
            return Attempt(Verdict.DUPLICATE if duplicate else Verdict.ACKNOWLEDGED, status)
        if status == 429:
            return Attempt(
                Verdict.THROTTLED, status, retry_after_seconds(resp.headers.get("Retry-After"))
            )
        if status >= 500 or status in RETRYABLE_4XX:
            return Attempt(
                Verdict.FAILED, status, retry_after_seconds(resp.headers.get("Retry-After"))
            )
        named = answer.get("fields") if isinstance(answer, dict) else None
        fields = tuple(
            f for f in (named if isinstance(named, list) else []) if f in self._known_fields
        )
        return Attempt(Verdict.REJECTED, status, fields=fields)

    def close(self) -> None:
        self._session.close()


@dataclass(frozen=True)
class Outcome:
    """How one record's delivery ended; ``None`` from :meth:`Deliverer.deliver` if stopped."""

    verdict: Verdict  # ACKNOWLEDGED, DUPLICATE or REJECTED
    status: int
    attempts: int
    fields: tuple[str, ...] = ()


class Deliverer:
    """Delivers one payload until the portal acknowledges or rejects it, or ``stop`` is set."""

    def __init__(
        self,
        client: PortalClient,
        settings: SinkSettings,
        breaker: CircuitBreaker,
        bucket: TokenBucket,
        rng: random.Random | None = None,
        retries: Counter | None = RETRIES,
    ) -> None:
        self.client = client
        self.settings = settings
        self.breaker = breaker
        self.bucket = bucket
        self.rng = rng or random.Random()
        self._retries = retries

    def deliver(
        self,
        payload: dict[str, Any],
        key: str,
        stop: threading.Event,
        on_stuck: Callable[[bool], None] = lambda _: None,
        label: str = "",
    ) -> Outcome | None:
        s = self.settings
        attempts = 0
        failures = 0  # in this cycle; reset after a pause
        first_failure: float | None = None
        stuck = False
        try:
            while not stop.is_set():
                wait = self.breaker.wait_s()
                if wait > 0:
                    if stop.wait(wait):
                        return None
                    continue
                if not self.bucket.acquire(stop):
                    return None
                if attempts and self._retries is not None:
                    self._retries.inc()
                attempts += 1
                attempt = self.client.post(payload, key)
                if attempt.verdict in (Verdict.ACKNOWLEDGED, Verdict.DUPLICATE, Verdict.REJECTED):
                    self.breaker.success()
                    assert attempt.status is not None
                    return Outcome(attempt.verdict, attempt.status, attempts, attempt.fields)
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                if attempt.verdict is Verdict.THROTTLED:
                    self.breaker.success()  # the portal is up, only busy
                    failures += 1
                    delay = attempt.retry_after_s
                    if delay is None:
                        delay = backoff_delay(failures, s.retry_initial_s, s.retry_max_s, self.rng)
                else:
                    self.breaker.failure()
                    failures += 1
                    delay = backoff_delay(failures, s.retry_initial_s, s.retry_max_s, self.rng)
                    if attempt.retry_after_s is not None:
                        delay = max(delay, min(attempt.retry_after_s, s.retry_max_s))
                log.debug(
                    "portal %s for %s (attempt %d), retrying in %.2fs",
                    attempt.status or attempt.error, label, attempts, delay,
                )  # fmt: skip
                if now - first_failure >= s.retry_timeout_s:
                    log.warning(
                        "portal still failing for %s after %.0fs (%d attempts, last %s): "
                        "pausing the partition for %.1fs, then trying again",
                        label, now - first_failure, attempts, attempt.status or attempt.error,
                        s.pause_s,
                    )  # fmt: skip
                    if not stuck:
                        stuck = True
                        on_stuck(True)
                    if stop.wait(s.pause_s):
                        return None
                    failures = 0
                    first_failure = None
                    continue
                if stop.wait(delay):
                    return None
            return None
        finally:
            if stuck:
                on_stuck(False)

    def close(self) -> None:
        self.client.close()


# --- Kafka --------------------------------------------------------------------------------


class Lane:
    """One partition's records, delivered in order by one thread."""

    def __init__(self, sink: PortalSink, tp: Partition) -> None:
        self.sink = sink
        self.tp = tp
        self.records: deque[Record] = deque()
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.done_offset: int | None = None  # last offset acknowledged or dead-lettered
        self.committed_offset: int | None = None
        self.stuck = False
        self.paused = False
        self.error: BaseException | None = None
        self.deliverer = sink.new_deliverer()
        self.thread = threading.Thread(
            target=self._run, name=f"portal-lane-{tp.topic}-{tp.partition}", daemon=True
        )
        self.thread.start()

    def add(self, records: Sequence[Record]) -> None:
        with self.cond:
            self.records.extend(records)
            self.cond.notify()

    def pending(self) -> int:
        with self.cond:
            return len(self.records)

    def _set_stuck(self, stuck: bool) -> None:
        self.stuck = stuck

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                with self.cond:
                    if not self.records:
                        self.cond.wait(0.2)
                        continue
                    record = self.records[0]
                if not self.sink.handle(record, self):
                    return  # stopped mid-record: not done, not committed
                with self.cond:
                    self.records.popleft()
                    self.done_offset = record.offset
        except BaseException as exc:  # reported by the main loop, which stops the sink
            self.error = exc
            log.exception("portal lane %s[%s] failed", self.tp.topic, self.tp.partition)
        finally:
            self.deliverer.close()

    def halt(self, timeout_s: float) -> None:
        self.stop.set()
        with self.cond:
            self.cond.notify()
        self.thread.join(timeout=timeout_s)
        if self.thread.is_alive():
            log.warning("lane %s[%s] still busy after %.0fs", *self.tp, timeout_s)


class RebalanceListener:
    """The sink's side of a rebalance (a :class:`hub.consumer_group.PartitionListener`)."""

    def __init__(self, sink: PortalSink) -> None:
        self.sink = sink

    def on_partitions_revoked(self, revoked: list[Partition]) -> None:
        self.sink.drop_lanes(list(revoked))

    def on_partitions_assigned(self, assigned: list[Partition]) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


@dataclass
class Totals:
    delivered: int = 0
    duplicates: int = 0
    dead_lettered: int = 0


class PortalSink:
    def __init__(
        self,
        settings: SinkSettings,
        *,
        bootstrap: str,
        registry_url: str,
        topic_prefix: str = "",
        contract: PortalContract | None = None,
        partitions: int | None = None,
        replication_factor: int = 1,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.contract = contract or load_contract(settings.contract_file)
        self.topic = f"{topic_prefix}{OUTBOX}"
        self.dlq = dlq_topic(self.topic)
        self.group_id = settings.group_id or f"{topic_prefix}{PROCESSOR}"
        self.rng = rng or random.Random()
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self.bucket = TokenBucket(settings.rate_limit_rps, settings.rate_burst)
        self.totals = Totals()
        self._totals_lock = threading.Lock()
        self._lanes: dict[Partition, Lane] = {}
        self._last_commit = 0.0
        if partitions is not None:
            TopicCreator(bootstrap, partitions, replication_factor).ensure([self.dlq])
        self.registry = SchemaRegistryClient(registry_url)
        self.decoder = AvroDeserializer(self.registry)
        self.dead_letters = DeadLetterPublisher(bootstrap, client_id=PROCESSOR)
        try:
            self.consumer = manual_commit_consumer(bootstrap, self.group_id, PROCESSOR)
        except Exception:
            self.dead_letters.close()
            raise
        self.consumer.subscribe([self.topic], listener=RebalanceListener(self))

    def new_deliverer(self) -> Deliverer:
        s = self.settings
        client = PortalClient(
            s.portal_url,
            self.contract,
            connect_timeout_s=s.connect_timeout_s,
            request_timeout_s=s.request_timeout_s,
        )
        return Deliverer(client, s, self.breaker, self.bucket, random.Random(self.rng.random()))

    # --- one record (in a lane's thread) --------------------------------------------------------

    def handle(self, record: Any, lane: Lane) -> bool:
        """Deliver or dead-letter one record; False if the lane was stopped first."""
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if record.value is None:
            return self._dead(record, lane, "empty-value", "record has no value", None)
        decoded = self._decode(record, lane)
        if decoded is None:
            return False
        if isinstance(decoded, ContractError):
            return self._dead(record, lane, decoded.reason, str(decoded), None, decoded)
        try:
            payload = to_portal_payload(decoded, self.contract)
            key = idempotency_key(decoded)
        except MappingError as exc:
            return self._dead(record, lane, "unmappable", str(exc), decoded, exc)
        label = f"{decoded.get('dossier_code')} key={key} ({where})"
        outcome = lane.deliverer.deliver(payload, key, lane.stop, lane._set_stuck, label)
        if outcome is None:
            return False
        if outcome.verdict is Verdict.REJECTED:
            detail = f"the portal answered HTTP {outcome.status}"
            if outcome.fields:
                detail += f" about {', '.join(outcome.fields)}"
            return self._dead(
                record, lane, f"portal-rejected-{outcome.status}", detail, decoded,
                _PortalRejectedError(f"HTTP {outcome.status}"),
            )  # fmt: skip
        occurred = decoded.get("occurred_at")
        if isinstance(occurred, datetime):
            LATENCY.observe(max(0.0, (datetime.now(UTC) - occurred).total_seconds()))
        self.count_outcome("duplicate" if outcome.verdict is Verdict.DUPLICATE else "delivered")
        log.debug("delivered %s: HTTP %s after %d attempt(s)", label, outcome.status,
                  outcome.attempts)  # fmt: skip
        return True

    def _decode(self, record: Any, lane: Lane) -> dict[str, Any] | ContractError | None:
        failures = 0
        while not lane.stop.is_set():
            try:
                _, value = self.decoder.decode(record.value)
            except RegistryUnavailableError as exc:
                failures += 1
                delay = backoff_delay(
                    failures, self.settings.retry_initial_s, self.settings.retry_max_s, self.rng
                )
                log.warning("%s; retrying in %.1fs", exc, delay)
                lane.stop.wait(delay)
                continue
            except ContractError as exc:
                return exc
            if not isinstance(value, dict):
                return ContractError("the record is not an Avro record")
            return value
        return None

    def _dead(
        self,
        record: Any,
        lane: Lane,
        reason: str,
        detail: str,
        decoded: dict[str, Any] | None,
        exc: BaseException | None = None,
    ) -> bool:
        """Dead-letter one record, retrying the DLQ write until it succeeds or the lane
        stops (False: not done, re-read after the restart)."""
        error = exc or ValueError(detail)
        letter = DeadLetter(
            reason=reason,
            detail=detail,
            exception_class=f"{type(error).__module__}.{type(error).__qualname__}",
            exception_message=str(error),
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            processor=self.processor,
            agency_code=self.dead_letter_agency(record, decoded),
            event_type=text_field(decoded, "event_type"),
            dossier_code=text_field(decoded, "dossier_code"),
            attempt=attempt_of(record.headers),
        )
        failures = 0
        while not lane.stop.is_set():
            try:
                self.prepare_dead_letter_topic(record.topic)
                self.dead_letters.publish(letter, record.key, record.value, record.headers or [])
            except (DeadLetterPublishError, KafkaError) as exc2:
                failures += 1
                delay = backoff_delay(
                    failures, self.settings.retry_initial_s, self.settings.retry_max_s, self.rng
                )
                log.warning("%s; retrying in %.1fs", exc2, delay)
                lane.stop.wait(delay)
                continue
            self.count_outcome("dead_lettered")
            log.warning(
                "dead letter: %s from %s[%s]@%s (%s)",
                reason, record.topic, record.partition, record.offset, detail,
            )  # fmt: skip
            return True
        return False

    # --- what a sink delivering elsewhere (agency webhooks) changes -----------------------------

    processor: str = PROCESSOR
    #: finished records by outcome (the webhook sink counts its own)
    deliveries: Counter = DELIVERIES

    def dead_letter_agency(self, record: Any, decoded: dict[str, Any] | None) -> str | None:
        """The agency a dead letter is filed under: the record's own agency code."""
        return text_field(decoded, "agency_code")

    def prepare_dead_letter_topic(self, source_topic: str) -> None:
        """Nothing to do: the portal's one DLQ topic is created at start."""

    def count_outcome(self, outcome: str) -> None:
        """Count a finished record: ``delivered``, ``duplicate`` or ``dead_lettered``."""
        self.deliveries.labels(outcome).inc()
        with self._totals_lock:
            if outcome == "delivered":
                self.totals.delivered += 1
            elif outcome == "duplicate":
                self.totals.duplicates += 1
            else:
                self.totals.dead_lettered += 1

    # --- the consumer (main thread) -------------------------------------------------------------

    def poll_once(self, timeout_ms: int = 100) -> int:
        """Fetch, hand records to their lanes, pause or resume partitions, commit what is
        done. Returns the number of records fetched."""
        batch = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.settings.max_pending)
        fetched = 0
        for tp, records in batch.items():
            if records:
                lane = self._lanes.get(tp)
                if lane is None:
                    lane = self._lanes[tp] = Lane(self, tp)
                lane.add(records)
                fetched += len(records)
        for tp, lane in self._lanes.items():
            if lane.error is not None:
                raise RuntimeError(f"lane {tp.topic}[{tp.partition}] failed") from lane.error
            should_pause = lane.stuck or lane.pending() >= self.settings.max_pending
            if should_pause and not lane.paused:
                self.consumer.pause(tp)
                lane.paused = True
            elif lane.paused and not lane.stuck and lane.pending() < self.settings.max_pending // 2:
                self.consumer.resume(tp)
                lane.paused = False
        PAUSED.set(sum(1 for lane in self._lanes.values() if lane.paused))
        if time.monotonic() - self._last_commit >= self.settings.commit_interval_s:
            self.commit()
        return fetched

    def commit(self, lanes: Sequence[Lane] | None = None) -> None:
        chosen = list(self._lanes.values()) if lanes is None else list(lanes)
        offsets: dict[Partition, int] = {}
        for lane in chosen:
            done = lane.done_offset
            if done is not None and done != lane.committed_offset:
                offsets[lane.tp] = done + 1
        self._last_commit = time.monotonic()
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # a rebalance moved the partition: its new owner re-sends from the last commit and
            # the portal recognises the repeated idempotency keys
            log.warning("commit failed after a rebalance: %s", exc)
            return
        for lane in chosen:
            if lane.tp in offsets:
                lane.committed_offset = offsets[lane.tp] - 1

    def drop_lanes(self, tps: Sequence[Partition]) -> None:
        """Stop the lanes of revoked partitions after their record in flight, commit them."""
        lanes = [self._lanes[tp] for tp in tps if tp in self._lanes]
        for lane in lanes:
            lane.stop.set()
        for lane in lanes:
            lane.halt(self.settings.request_timeout_s + self.settings.connect_timeout_s + 1)
        with contextlib.suppress(ConsumerError):
            self.commit(lanes)
        for lane in lanes:
            del self._lanes[lane.tp]

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; then finish in-flight requests, commit and return
        (the caller closes)."""
        try:
            while not stop.is_set():
                self.poll_once()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.stop.set()
            with lane.cond:
                lane.cond.notify()
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        for lane in lanes:
            lane.halt(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ConsumerError):
            self.commit(lanes)

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.dead_letters.close()
            self.registry.close()

    def committed(self) -> dict[int, int | None]:
        """Committed offsets of this group per partition (for checks and tests)."""
        parts = self.consumer.partitions_for_topic(self.topic) or set()
        return {p: self.consumer.committed(Partition(self.topic, p)) for p in sorted(parts)}


class _PortalRejectedError(Exception):
    """The portal refused a status with a 4xx that retrying cannot fix."""


def text_field(decoded: dict[str, Any] | None, name: str) -> str | None:
    value = decoded.get(name) if decoded else None
    return str(value) if isinstance(value, str) and value else None


# --- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    hub = HubSettings()
    s = SinkSettings()
    parser = argparse.ArgumentParser(
        prog="python -m connectors.portal.sink",
        description=(
            "Deliver every status change on <prefix>portal.outbox to the national public "
            "service portal: one POST per status with Idempotency-Key = event_id, in order per "
            "dossier, retried with capped jittered backoff, rate-limited and behind a circuit "
            "breaker; 4xx rejections go to <prefix>portal.outbox.dlq. Offsets are committed "
            "only after the portal acknowledged or the record was dead-lettered."
        ),
        epilog="Defaults come from KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, HUB_* and "
        "HUB_PORTAL_SINK_* variables; the portal contract (endpoint, headers, field names, "
        "token source) from --contract or HUB_PORTAL_* variables. The token itself is read "
        "from the variable or file the contract names, never from the command line.",
    )
    add_kafka_arguments(parser, hub)
    parser.add_argument(
        "--portal-url", default=s.portal_url, help="portal base URL (default %(default)s)"
    )
    parser.add_argument(
        "--contract",
        type=Path,
        default=s.contract_file,
        help="portal contract file (.json or .toml)",
    )
    parser.add_argument(
        "--group-id", default=s.group_id, help="consumer group (default <prefix>portal-sink)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=s.rate_limit_rps,
        help="requests per second at most (default %(default)s)",
    )
    parser.add_argument(
        "--retry-initial",
        type=float,
        default=s.retry_initial_s,
        help="first retry delay, seconds (default %(default)s)",
    )
    parser.add_argument(
        "--retry-max",
        type=float,
        default=s.retry_max_s,
        help="longest retry delay, seconds (default %(default)s)",
    )
    parser.add_argument(
        "--retry-timeout",
        type=float,
        default=s.retry_timeout_s,
        help="seconds of failures on one record before its partition pauses (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=s.metrics_port,
        help="serve Prometheus metrics on this port",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=hub.partitions,
        help="partitions of the .dlq topic if the sink creates it (default %(default)s)",
    )
    parser.add_argument("-l", "--log-level", default="info", help="log level (default %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = SinkSettings().model_copy(
        update={
            "portal_url": args.portal_url,
            "contract_file": args.contract,
            "group_id": args.group_id,
            "rate_limit_rps": args.rate,
            "retry_initial_s": args.retry_initial,
            "retry_max_s": args.retry_max,
            "retry_timeout_s": args.retry_timeout,
            "metrics_port": args.metrics_port,
        }
    )
    try:
        sink = PortalSink(
            settings,
            bootstrap=args.bootstrap_server,
            registry_url=args.registry_url,
            topic_prefix=args.topic_prefix,
            partitions=args.partitions,
        )
    except (KafkaError, ConsumerError, DeadLetterError, ValueError) as exc:
        print(f"portal-sink: cannot start: {exc}", file=sys.stderr)
        return 1
    if settings.metrics_port is not None:
        start_http_server(settings.metrics_port)
    log.info("portal sink: %s -> %s (group %s)", sink.topic, settings.portal_url, sink.group_id)
    stopping = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
    try:
        sink.run(stopping)
    except (KafkaError, ConsumerError, RuntimeError) as exc:
        print(f"portal-sink: stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        sink.close()
    t = sink.totals
    log.info(
        "portal sink stopped: %d delivered, %d duplicates, %d dead-lettered",
        t.delivered, t.duplicates, t.dead_lettered,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
