"""Running one connector from its config: the worker half of Kafka Connect, for one task.

Sources (:class:`SourceConnector`): ``poll`` → validate each record with the inbound models →
publish the valid ones with :class:`connectors.publisher.EventPublisher` → wait until Kafka
acknowledged the batch (and its dead letters) → store the offsets in
``<prefix>hub.connect.offsets`` and wait for that acknowledgement → ``on_committed``. An
invalid record goes to the dead-letter topic (``errors.tolerance=all``: original bytes,
``hub.errors.*`` headers, reason ``validation``; its ``hub.errors.topic`` is the JSON
bridge's input, ``<prefix>dossier.events.json`` or ``feedback.events.json``, so ``hub dlq
replay`` sends a corrected record through the bridge) or, with ``none``, the records before
it are committed and the connector stops with an error naming the record and the rules.
A failed send is retried (from the first unacknowledged record, in order) per
``errors.retry.*``; past the budget the connector stops without committing them. A ``poll``
raising :class:`RetriableError` (its database away) is retried the same way. With
``once`` (``hub connector run --once``) the runtime stops by itself at the first empty poll
once the connector has nothing :meth:`~SourceConnector.pending`: everything the source held
is then published, acknowledged, its offsets stored and ``on_committed`` called.

Push sources (:class:`PushSourceConnector`) get a :class:`PushPublisher`. Kafka is reached
in the background: while it cannot be, ``publish`` raises
:class:`~connectors.sdk.errors.BrokerUnavailableError` (the ingress answers 503).

Sinks (:class:`SinkConnector`): a consumer group (``group.id``, default
``<prefix>connect-<name>``) with manual commits; each record is decoded per
``value.converter`` and given to ``put`` in offset order. ``RetriableError`` (and a schema
registry that does not answer) is retried with :class:`~connectors.sdk.retry.Backoff`;
``PermanentError``, an undecodable record, an unexpected exception, or retries past
``errors.retry.timeout`` dead-letter the record (``all``) or stop the connector (``none``).
An offset is committed only after ``put`` returned or the dead letter was acknowledged.

Shutdown (SIGTERM/SIGINT or :meth:`ConnectorRuntime.request_stop`): the batch in hand is
finished (published and acknowledged, or put), its offsets committed, then ``stop()`` is
called and everything closed. A record whose retries are interrupted by the stop is not
committed; it is read again on the next start.

Metrics: ``hub_connector_records_total{connector,outcome}``, ``hub_connector_up{connector}``,
``hub_connector_retries_total{connector}``; ``health.port`` serves ``/health`` and
``/metrics``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

from kafka import KafkaProducer
from kafka.errors import KafkaError

from connectors.publisher import EventPublisher
from connectors.sdk.base import (
    Connector,
    PushSourceConnector,
    SinkConnector,
    SinkRecord,
    SourceConnector,
    SourceContext,
    SourceRecord,
)
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import (
    BrokerUnavailableError,
    ConnectorError,
    ConnectorFailedError,
    PermanentError,
    RetriableError,
)
from connectors.sdk.metrics import RECORDS, RETRIES, UP, HealthServer
from connectors.sdk.offsets import Offset, OffsetStore
from connectors.sdk.retry import Backoff
from hub.consumer_group import (
    CommitFailedError,
    ConsumerError,
    GroupConsumer,
    Partition,
    Record,
    manual_commit_consumer,
)
from hub.contract.errors import ContractError, DecodeError, RegistryError
from hub.contract.inbound import (
    AGENCY_CODE_PATTERN,
    DOSSIER_CODE_PATTERN,
    FieldProblem,
    InboundDossierEvent,
    InboundFeedbackEvent,
    validate_dossier_event,
    validate_feedback_event,
)
from hub.dlq import DeadLetter, attempt_of, count_dead_letter, dead_letter_record
from hub.dlq.headers import detail_from_problems
from hub.security.environment import env_client_kwargs

__all__ = [
    "FEEDBACK_EVENT_TYPES",
    "ConnectorRuntime",
    "PublisherHandle",
    "PushPublisher",
    "procedure_lookup",
    "run_connector",
    "validate_event",
]

log = logging.getLogger("connectors.sdk.runtime")

Event = InboundDossierEvent | InboundFeedbackEvent
FEEDBACK_EVENT_TYPES: Final = frozenset({"ServiceRated", "ComplaintFiled"})
_AGENCY_RE: Final = re.compile(AGENCY_CODE_PATTERN)
_DOSSIER_RE: Final = re.compile(DOSSIER_CODE_PATTERN)
_EVENT_TYPE_RE: Final = re.compile(r"^[A-Z][A-Za-z]{2,40}$")
#: header of a source connector's dead letter: where the record sat in its source
HEADER_SOURCE_PARTITION: Final = "hub.connect.source.partition"
HEADER_SOURCE_OFFSET: Final = "hub.connect.source.offset"


def procedure_lookup() -> Callable[[str], date | None]:
    """Procedure code → the date it took effect, from the shipped reference data."""
    from hub.reference import load_reference

    procedures = load_reference().procedures

    def effective_from(code: str) -> date | None:
        found = procedures.get(code)
        return found.effective_from if found is not None else None

    return effective_from


def validate_event(
    data: object,
    *,
    procedure_effective_from: Callable[[str], date | None] | None = None,
    now: datetime | None = None,
) -> Event | list[FieldProblem]:
    """Validate like :meth:`EventPublisher.validate`, without needing Kafka."""
    event_type = data.get("event_type") if isinstance(data, dict) else None
    if not isinstance(data, dict):
        return [FieldProblem("", "type", "expected a JSON object")]
    if event_type in FEEDBACK_EVENT_TYPES:
        return validate_feedback_event(data, now=now)
    return validate_dossier_event(data, now=now, procedure_effective_from=procedure_effective_from)


def _code(data: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str | None:
    # only values in their code format go into headers: never free text that may be PII
    value = data.get(name)
    if isinstance(value, str) and len(value) <= 64 and pattern.fullmatch(value.strip()):
        return value.strip()
    return None


# --- Kafka, reached in the background -----------------------------------------------------------


class PublisherHandle:
    """The :class:`EventPublisher`, created on a background thread and re-created while Kafka
    cannot be reached, so a caller never blocks on kafka-python's 30 s bootstrap."""

    def __init__(
        self,
        config: ConnectorConfig,
        *,
        procedure_effective_from: Callable[[str], date | None] | None,
        reconnect_s: float = 2.0,
    ) -> None:
        self.config = config
        self._lookup = procedure_effective_from
        self._reconnect_s = reconnect_s
        self._publisher: EventPublisher | None = None
        self._ready = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None

    def connect(self) -> None:
        """Start connecting (idempotent)."""
        with self._lock:
            if self._thread is not None or self._closed.is_set():
                return
            self._thread = threading.Thread(
                target=self._connect_loop, name=f"connect-{self.config.name}-kafka", daemon=True
            )
            self._thread.start()

    def _connect_loop(self) -> None:
        while not self._closed.is_set():
            try:
                publisher = EventPublisher(
                    self.config.bootstrap_servers,
                    self.config.schema_registry_url,
                    topic_prefix=self.config.topic_prefix,
                    procedure_effective_from=self._lookup,
                    client_id=f"connect-{self.config.name}",
                )
            except Exception as exc:  # KafkaError, OSError: keep trying until closed
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("connector %s: Kafka not reachable: %s", self.config.name, exc)
                self._closed.wait(self._reconnect_s)
                continue
            # a send must not block for the producer's default 60 s waiting for metadata
            publisher.producer.config["max_block_ms"] = self.config.ack_timeout_ms
            with self._lock:
                if self._closed.is_set():
                    publisher.close()
                    return
                self._publisher = publisher
                self.last_error = None
                self._ready.set()
            return

    @property
    def available(self) -> bool:
        return self._ready.is_set() and self.last_error is None

    def get(self, timeout_s: float = 0.0) -> EventPublisher:
        """The publisher, waiting up to ``timeout_s`` for the connection; raises
        :class:`BrokerUnavailableError`."""
        self.connect()
        if not self._ready.wait(timeout_s) or self._publisher is None:
            raise BrokerUnavailableError(
                f"Kafka at {self.config.bootstrap_servers} not reachable"
                + (f" ({self.last_error})" if self.last_error else "")
            )
        return self._publisher

    def mark(self, error: str | None) -> None:
        """Record the outcome of the latest send (health and ``hub_connector_up``)."""
        self.last_error = error

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            try:
                publisher.flush(timeout_s=self.config.ack_timeout_ms / 1000)
            except KafkaError as exc:
                log.warning("connector %s: flush at close failed: %s", self.config.name, exc)
            publisher.close()


def _send_error(exc: BaseException) -> ConnectorError:
    if isinstance(exc, RegistryError | KafkaError | OSError):
        return BrokerUnavailableError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ContractError):
        return PermanentError(exc.reason, str(exc))
    return BrokerUnavailableError(f"{type(exc).__name__}: {exc}")


class PushPublisher:
    """The :class:`~connectors.sdk.base.PushContext` of a push source."""

    def __init__(
        self,
        config: ConnectorConfig,
        handle: PublisherHandle,
        procedure_effective_from: Callable[[str], date | None] | None,
    ) -> None:
        self.config = config
        self.handle = handle
        self._lookup = procedure_effective_from

    def validate(self, value: object) -> Event | list[FieldProblem]:
        return validate_event(value, procedure_effective_from=self._lookup)

    def publish(self, events: Sequence[Event], *, timeout_s: float | None = None) -> None:
        if not events:
            return
        timeout = self.config.ack_timeout_ms / 1000 if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        publisher = self.handle.get(timeout)
        try:
            futures = [publisher.send_async(event) for event in events]
            for future in futures:
                future.get(timeout=max(0.001, deadline - time.monotonic()))
        except Exception as exc:
            error = _send_error(exc)
            if isinstance(error, BrokerUnavailableError):
                self.handle.mark(str(error))
                UP.labels(self.config.name).set(0)
            raise error from exc
        self.handle.mark(None)
        UP.labels(self.config.name).set(1)
        RECORDS.labels(self.config.name, "published").inc(len(events))

    def count(self, outcome: str, n: int = 1) -> None:
        RECORDS.labels(self.config.name, outcome).inc(n)

    def available(self) -> bool:
        return self.handle.available


# --- the runtime --------------------------------------------------------------------------------


class ConnectorRuntime:
    """Runs one connector until asked to stop. ``run()`` blocks (the CLI); tests use
    :meth:`start_thread` / :meth:`request_stop` / :meth:`join`."""

    def __init__(
        self,
        config: ConnectorConfig,
        *,
        connector: Connector | None = None,
        procedure_effective_from: Callable[[str], date | None] | None = None,
        once: bool = False,
    ) -> None:
        self.config = config
        #: sources: stop at the first empty poll with nothing pending (``--once``)
        self.once = once
        self.connector = connector if connector is not None else config.connector_cls(config)
        self.name = config.name
        self.stop_event = threading.Event()
        self.started = threading.Event()
        self.state = "created"
        self.error: BaseException | None = None
        self._lookup = procedure_effective_from
        self._thread: threading.Thread | None = None
        self._health: HealthServer | None = None
        self.committed: dict[str, Offset] = {}

    # --- lifecycle -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        try:
            own = dict(self.connector.health())
        except Exception as exc:
            own = {"status": "down", "error": f"{type(exc).__name__}"}
        up = self.state == "running" and own.get("status", "up") == "up"
        return {
            **own,
            "connector": self.name,
            "kind": self.connector.kind,
            "state": self.state,
            "status": "up" if up else "down",
        }

    @property
    def health_port(self) -> int | None:
        return self._health.port if self._health is not None else None

    def request_stop(self) -> None:
        self.stop_event.set()

    def start_thread(self) -> threading.Thread:
        self._thread = threading.Thread(
            target=self._run_quietly, name=f"connector-{self.name}", daemon=True
        )
        self._thread.start()
        return self._thread

    def _run_quietly(self) -> None:
        with contextlib.suppress(BaseException):  # kept in self.error
            self.run()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the runtime thread; re-raises the connector's failure, if any."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"connector {self.name} did not stop within {timeout}s")
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        """Run until :meth:`request_stop`; raises :class:`ConnectorFailedError` on failure."""
        if self.config.health_port is not None:
            self._health = HealthServer(
                self.config.health_host, self.config.health_port, self.health
            )
            self._health.start()
        if self._lookup is None:
            self._lookup = procedure_lookup()
        UP.labels(self.name).set(0)
        self.state = "starting"
        try:
            if isinstance(self.connector, SourceConnector):
                self._run_source(self.connector)
            elif isinstance(self.connector, PushSourceConnector):
                self._run_push(self.connector)
            elif isinstance(self.connector, SinkConnector):
                self._run_sink(self.connector)
            else:
                raise ConnectorFailedError(f"{type(self.connector).__name__} is no connector kind")
            self.state = "stopped"
        except BaseException as exc:
            self.state = "failed"
            if not isinstance(exc, ConnectorFailedError):
                exc = ConnectorFailedError(
                    f"connector {self.name} failed: {type(exc).__name__}: {exc}"
                )
            self.error = exc
            raise exc from None
        finally:
            UP.labels(self.name).set(0)
            self.started.set()
            if self._health is not None:
                self._health.close()

    def _running(self) -> None:
        self.state = "running"
        UP.labels(self.name).set(1)
        self.started.set()

    # --- push sources -----------------------------------------------------------------------

    def _run_push(self, connector: PushSourceConnector) -> None:
        handle = PublisherHandle(self.config, procedure_effective_from=self._lookup)
        handle.connect()
        connector.initialize(PushPublisher(self.config, handle, self._lookup))
        try:
            connector.start()
            self._running()
            while not self.stop_event.wait(0.5):
                UP.labels(self.name).set(1 if handle.available else 0)
        finally:
            self.state = "stopping"
            try:
                connector.stop()
            finally:
                handle.close()

    # --- sources ----------------------------------------------------------------------------

    def _backoff(self) -> Backoff:
        return Backoff(
            min(0.3, self.config.retry_delay_max_s),
            self.config.retry_delay_max_s,
            self.config.retry_timeout_s,
        )

    def _run_source(self, connector: SourceConnector) -> None:
        handle = PublisherHandle(self.config, procedure_effective_from=self._lookup)
        ack_timeout = self.config.ack_timeout_ms / 1000
        try:
            publisher = self._wait_publisher(handle)
            if publisher is None:
                return  # stopped while waiting for Kafka
            self._ensure_topics()
            store = OffsetStore(
                self.config.bootstrap_servers,
                self.config.offsets_topic,
                self.name,
                producer=publisher.producer,
                timeout_s=ack_timeout,
            )
            store.ensure_topic()
            self.committed = store.load()
            connector.initialize(SourceContext(self.committed))
            connector.start()
            try:
                self._running()
                while not self.stop_event.is_set():
                    records = self._poll(connector)
                    if not records:
                        if self.once and not connector.pending():
                            log.info("connector %s: source drained (--once), stopping", self.name)
                            break
                        self.stop_event.wait(self.config.poll_interval_ms / 1000)
                        continue
                    self._source_batch(connector, publisher, store, records)
            finally:
                self.state = "stopping"
                connector.stop()
        finally:
            handle.close()

    def _poll(self, connector: SourceConnector) -> list[SourceRecord]:
        """``connector.poll()``, retried per ``errors.retry.*`` while it raises
        :class:`RetriableError` (a database restarting must not end the connector)."""
        backoff = self._backoff()
        while True:
            try:
                return connector.poll()
            except RetriableError as exc:
                log.warning("connector %s: poll failed, retrying: %s", self.name, exc)
                if not backoff.wait(self.stop_event):
                    if self.stop_event.is_set():
                        return []  # nothing in hand: a clean stop
                    raise ConnectorFailedError(
                        f"connector {self.name}: polling the source failed: {exc}"
                    ) from exc
                RETRIES.labels(self.name).inc()

    def _wait_publisher(self, handle: PublisherHandle) -> EventPublisher | None:
        backoff = self._backoff()
        while True:
            try:
                return handle.get(timeout_s=min(5.0, self.config.ack_timeout_ms / 1000))
            except BrokerUnavailableError as exc:
                if self.stop_event.is_set():
                    return None
                if not backoff.wait(self.stop_event):
                    if self.stop_event.is_set():
                        return None
                    raise ConnectorFailedError(
                        f"connector {self.name}: {exc}; gave up after "
                        f"errors.retry.timeout={self.config.errors_retry_timeout_ms} ms"
                    ) from exc
                RETRIES.labels(self.name).inc()

    def _ensure_topics(self) -> None:
        from hub.settings import HubSettings
        from hub.topic_admin import TopicCreator

        names = [
            self.config.full("dossier.events"),
            self.config.full("feedback.events"),
            self.config.dlq_topic(self.config.output_topic),
        ]
        creator = TopicCreator.for_settings(HubSettings(), self.config.bootstrap_servers)
        try:
            creator.ensure(names)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot create topics: {exc}") from exc

    def _dead_letter_source(
        self, record: SourceRecord, problems: list[FieldProblem], publisher: EventPublisher
    ) -> Any:
        value = record.value
        event_type = value.get("event_type")
        feedback = event_type in FEEDBACK_EVENT_TYPES
        json_topic = self.config.full("feedback.events.json" if feedback else "dossier.events.json")
        dossier = _code(value, "dossier_code", _DOSSIER_RE)
        letter = DeadLetter(
            reason=record.reason if record.problems else "validation",
            detail=detail_from_problems(problems),
            exception_class="hub.contract.inbound.FieldProblem",
            exception_message=f"{len(problems)} problem(s) in the event",
            source_topic=json_topic,
            source_partition=-1,
            source_offset=-1,
            processor=f"connector:{self.name}",
            agency_code=_code(value, "agency_code", _AGENCY_RE),
            event_type=event_type
            if isinstance(event_type, str) and _EVENT_TYPE_RE.fullmatch(event_type)
            else None,
            dossier_code=dossier,
        )
        raw = record.raw
        if raw is None:
            raw = json.dumps(value, ensure_ascii=False, default=str).encode()
        dead = dead_letter_record(
            letter,
            dossier.encode() if dossier else None,
            raw,
            [
                (HEADER_SOURCE_PARTITION, record.source_partition.encode()),
                (HEADER_SOURCE_OFFSET, json.dumps(record.source_offset, default=str).encode()),
            ],
        )
        topic = self.config.dlq_topic(self.config.output_topic)
        future = publisher.producer.send(
            topic, key=dead.key, value=dead.value, headers=dead.headers
        )
        return future, letter

    def _source_batch(
        self,
        connector: SourceConnector,
        publisher: EventPublisher,
        store: OffsetStore,
        records: list[SourceRecord],
    ) -> None:
        failure: ConnectorFailedError | None = None
        prepared: list[tuple[SourceRecord, Event | list[FieldProblem]]] = []
        for record in records:
            result: Event | list[FieldProblem] = (
                list(record.problems)  # the connector already knows it is bad
                if record.problems
                else validate_event(record.value, procedure_effective_from=self._lookup)
            )
            if isinstance(result, list) and self.config.errors_tolerance == "none":
                RECORDS.labels(self.name, "failed").inc()
                failure = ConnectorFailedError(
                    f"connector {self.name}: record {record.source_partition} "
                    f"{json.dumps(record.source_offset, default=str)} is not a valid event "
                    f"({detail_from_problems(result)}); errors.tolerance=none, so the connector "
                    "stopped. Fix the record or set errors.tolerance=all to dead-letter it."
                )
                break
            prepared.append((record, result))

        self._publish_acknowledged(publisher, prepared)
        offsets: dict[str, Offset] = {}
        for record, _ in prepared:
            offsets[record.source_partition] = record.source_offset
        if offsets:
            self._retrying(lambda: store.commit(offsets), "storing offsets")
            self.committed.update(offsets)
            connector.context._update(offsets)
            connector.on_committed(offsets)
        if failure is not None:
            raise failure

    def _publish_acknowledged(
        self,
        publisher: EventPublisher,
        prepared: list[tuple[SourceRecord, Event | list[FieldProblem]]],
    ) -> None:
        """Send every record (events or dead letters) and wait for all acknowledgements;
        after a failure, re-send from the first unacknowledged record on, in order."""
        ack_timeout = self.config.ack_timeout_ms / 1000
        start = 0
        backoff = self._backoff()
        while start < len(prepared):
            futures: list[tuple[Any, DeadLetter | None]] = []
            try:
                for record, result in prepared[start:]:
                    if isinstance(result, list):
                        futures.append(self._dead_letter_source(record, result, publisher))
                    else:
                        futures.append((publisher.send_async(result), None))
                for future, letter in futures:
                    future.get(timeout=ack_timeout)
                    start += 1
                    if letter is None:
                        RECORDS.labels(self.name, "published").inc()
                    else:
                        count_dead_letter(letter)
                        RECORDS.labels(self.name, "dead_lettered").inc()
                UP.labels(self.name).set(1)
            except Exception as exc:
                error = _send_error(exc)
                if isinstance(error, PermanentError):
                    raise ConnectorFailedError(
                        f"connector {self.name}: a valid event could not be encoded "
                        f"({error}); this is a contract bug, not the record's fault"
                    ) from exc
                UP.labels(self.name).set(0)
                log.warning("connector %s: send not acknowledged, retrying: %s", self.name, exc)
                if not backoff.wait(self.stop_event):
                    raise ConnectorFailedError(
                        f"connector {self.name}: Kafka did not acknowledge the batch ({error}); "
                        "nothing after the last acknowledged record was committed"
                    ) from exc
                RETRIES.labels(self.name).inc()

    def _retrying(self, action: Callable[[], None], what: str) -> None:
        backoff = self._backoff()
        while True:
            try:
                action()
                return
            except RetriableError as exc:
                if not backoff.wait(self.stop_event):
                    raise ConnectorFailedError(
                        f"connector {self.name}: {what} failed: {exc}"
                    ) from exc
                RETRIES.labels(self.name).inc()

    # --- sinks ------------------------------------------------------------------------------

    def _decoder(self) -> Callable[[bytes | None], Any]:
        converter = self.config.value_converter
        if converter == "bytes":
            return lambda raw: raw
        if converter == "json":

            def from_json(raw: bytes | None) -> Any:
                if raw is None:
                    return None
                try:
                    return json.loads(raw)
                except ValueError as exc:
                    raise PermanentError(
                        "undecodable", f"value is not JSON ({type(exc).__name__})"
                    ) from None

            return from_json
        from hub.contract.registry import SchemaRegistryClient
        from hub.contract.serde import AvroDeserializer

        deserializer = AvroDeserializer(SchemaRegistryClient(self.config.schema_registry_url))

        def from_avro(raw: bytes | None) -> Any:
            if raw is None:
                return None
            try:
                return deserializer(raw)
            except DecodeError as exc:
                raise PermanentError(exc.reason, str(exc)) from None
            except RegistryError as exc:
                raise RetriableError(f"schema registry: {exc}") from exc

        return from_avro

    def _sink_consumer(self) -> GroupConsumer:
        """The sink's group member: manual commits, committed records only."""
        return manual_commit_consumer(
            self.config.bootstrap_servers,
            self.config.consumer_group,
            f"connect-{self.name}",
            max_poll_records=100,
        )

    def _run_sink(self, connector: SinkConnector) -> None:
        decode = self._decoder()

        def unreachable(exc: Exception) -> ConnectorFailedError:
            return ConnectorFailedError(
                f"connector {self.name}: cannot reach Kafka at {self.config.bootstrap_servers}: "
                f"{exc}"
            )

        try:
            consumer = self._sink_consumer()
        except (KafkaError, ConsumerError) as exc:
            raise unreachable(exc) from exc
        try:
            dlq = KafkaProducer(
                bootstrap_servers=self.config.bootstrap_servers,
                **env_client_kwargs(),
                client_id=f"connect-{self.name}-dlq",
                acks="all",
                enable_idempotence=True,
            )
        except KafkaError as exc:
            consumer.close()
            raise unreachable(exc) from exc
        done: dict[Partition, int] = {}

        def commit() -> None:
            if not done:
                return
            try:
                consumer.commit(done)
            except CommitFailedError as exc:
                log.warning("connector %s: commit failed after a rebalance: %s", self.name, exc)
            self.committed.update(
                {f"{tp.topic}[{tp.partition}]": {"offset": o} for tp, o in done.items()}
            )
            done.clear()

        try:
            consumer.subscribe(self.config.input_topics)
            connector.start()
            try:
                self._running()
                while not self.stop_event.is_set():
                    batch = consumer.poll(timeout_ms=500)
                    for tp, records in batch.items():
                        for record in records:
                            if self.stop_event.is_set() or not self._sink_one(
                                connector, record, decode, dlq
                            ):
                                break  # not done: re-read after the restart
                            done[tp] = record.offset + 1
                        if self.stop_event.is_set():
                            break
                    commit()
            finally:
                self.state = "stopping"
                try:
                    commit()
                finally:
                    connector.stop()
        finally:
            consumer.close()
            dlq.close(timeout=10)

    def _sink_one(
        self,
        connector: SinkConnector,
        record: Record,
        decode: Callable[[bytes | None], Any],
        dlq: KafkaProducer,
    ) -> bool:
        """Put one record (retrying) or dead-letter it; False when stopped before either."""
        backoff = self._backoff()
        headers = [(k, v if v is not None else b"") for k, v in (record.headers or [])]
        failure: Exception
        while True:
            try:
                value = decode(record.value)
                connector.put(
                    SinkRecord(
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        key=record.key,
                        value=value,
                        raw_value=record.value,
                        headers=headers,
                        timestamp_ms=record.timestamp,
                    )
                )
                RECORDS.labels(self.name, "delivered").inc()
                return True
            except RetriableError as exc:
                if backoff.wait(self.stop_event):
                    RETRIES.labels(self.name).inc()
                    continue
                if self.stop_event.is_set():
                    return False
                reason, failure = "retries-exhausted", exc
            except PermanentError as exc:
                reason, failure = exc.reason, exc
            except Exception as exc:
                reason, failure = "connector-error", exc
            break
        if self.config.errors_tolerance == "none":
            RECORDS.labels(self.name, "failed").inc()
            raise ConnectorFailedError(
                f"connector {self.name}: {record.topic}[{record.partition}]@{record.offset} "
                f"failed ({reason}: {failure}); errors.tolerance=none, so the connector stopped "
                "without committing it"
            )
        letter = DeadLetter.for_exception(
            failure,
            reason=reason,
            detail=str(failure) if isinstance(failure, ConnectorError) else None,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            processor=f"connector:{self.name}",
            attempt=attempt_of(record.headers),
        )
        dead = dead_letter_record(letter, record.key, record.value, record.headers or [])
        target = self.config.dlq_topic(record.topic)
        retry = self._backoff()
        while True:
            try:
                future = dlq.send(target, key=dead.key, value=dead.value, headers=dead.headers)
                future.get(timeout=self.config.ack_timeout_ms / 1000)
                break
            except KafkaError as exc:
                if not retry.wait(self.stop_event):
                    if self.stop_event.is_set():
                        return False
                    raise ConnectorFailedError(
                        f"connector {self.name}: dead letter for {record.topic}"
                        f"[{record.partition}]@{record.offset} not acknowledged: {exc}"
                    ) from exc
                RETRIES.labels(self.name).inc()
        count_dead_letter(letter)
        RECORDS.labels(self.name, "dead_lettered").inc()
        return True


# --- command line -------------------------------------------------------------------------------


def run_connector(config: ConnectorConfig, *, once: bool = False) -> int:
    """Run ``config``'s connector in the foreground until SIGTERM/SIGINT (or, ``once``, until
    a source is drained); the exit code."""
    runtime = ConnectorRuntime(config, once=once)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: runtime.request_stop())
    log.info("connector %s (%s) starting", config.name, config.connector_class)
    try:
        runtime.run()
    except ConnectorFailedError as exc:
        print(f"hub connector: {exc}", file=sys.stderr)
        return 1
    log.info("connector %s stopped", config.name)
    return 0
