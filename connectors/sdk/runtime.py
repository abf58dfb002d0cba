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
:class:`~connectors.sdk.errors.BrokerUnavailableError` (the ingress answers 503). Their
``routes()`` are served by the process's HTTP server once ``start()`` returned; on stop that
server stops accepting and finishes the requests in flight before ``stop()`` is called.

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
``hub_connector_retries_total{connector}``. One HTTP server per process
(:class:`~connectors.sdk.http_server.ConnectorHttpServer`) serves ``/health`` and ``/metrics``
on ``health.host``/``health.port``, or, for a push source that binds it
(:meth:`~connectors.sdk.base.PushSourceConnector.http_binding`, the ingress's
``settings.host``/``settings.port``), there beside the connector's routes; ``health.port``
may then only repeat that port (a config error names it otherwise).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, Final

from kafka.errors import KafkaError

from connectors.publisher import EventPublisher
from connectors.sdk.base import (
    Connector,
    PushSourceConnector,
    SinkConnector,
    SourceConnector,
    SourceContext,
    SourceRecord,
    http_binding_problems,
)
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import (
    BrokerUnavailableError,
    ConfigProblem,
    ConnectorConfigError,
    ConnectorError,
    ConnectorFailedError,
    PermanentError,
    RetriableError,
)
from connectors.sdk.http_server import ConnectorHttpServer
from connectors.sdk.identity import codes_of
from connectors.sdk.metrics import RECORDS, RETRIES, UP
from connectors.sdk.offsets import Offset, OffsetStore
from connectors.sdk.sink import SinkRunner
from hub.contract.errors import ContractError, RegistryError
from hub.contract.event_types import FEEDBACK_EVENT_TYPES
from hub.contract.inbound import (
    FieldProblem,
    InboundDossierEvent,
    InboundFeedbackEvent,
    validate_dossier_event,
    validate_feedback_event,
)
from hub.dlq import DeadLetter, count_dead_letter, dead_letter_record
from hub.dlq.headers import detail_from_problems

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
        server: ConnectorHttpServer | None = None,
    ) -> None:
        self.config = config
        self.handle = handle
        self._lookup = procedure_effective_from
        self._server = server

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

    def http_port(self) -> int | None:
        return self._server.port if self._server is not None else None


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
        self._http: ConnectorHttpServer | None = None
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
        """The port of the process's HTTP server (``/health``, ``/metrics``, a push source's
        routes) while it listens."""
        return self._http.port if self._http is not None else None

    def _http_server(self) -> ConnectorHttpServer | None:
        """The process's one HTTP server, not started yet; None when nothing asks for one."""
        binding = None
        if isinstance(self.connector, PushSourceConnector):
            binding = type(self.connector).http_binding(self.connector.settings)
            # parse_config reports this too; a connector built in code skips parse_config
            problems = http_binding_problems(self.config, binding)
            if problems:
                raise ConnectorConfigError(f"connector {self.name}", problems)
        if binding is not None:
            return ConnectorHttpServer(
                binding.host,
                binding.port,
                self.health,
                client_max_size=binding.client_max_size,
                shutdown_timeout_s=binding.shutdown_timeout_s,
                name=self.name,
            )
        if self.config.health_port is None:
            return None
        return ConnectorHttpServer(
            self.config.health_host, self.config.health_port, self.health, name=self.name
        )

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
        UP.labels(self.name).set(0)
        self.state = "starting"
        try:
            self._http = self._http_server()
            # a push source's routes are mounted once start() returned: its server starts then
            if self._http is not None and not isinstance(self.connector, PushSourceConnector):
                self._http.start()
            if self._lookup is None:
                self._lookup = procedure_lookup()
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
            if self._http is not None:
                self._http.close()

    def _running(self) -> None:
        self.state = "running"
        UP.labels(self.name).set(1)
        self.started.set()

    # --- push sources -----------------------------------------------------------------------

    def _run_push(self, connector: PushSourceConnector) -> None:
        handle = PublisherHandle(self.config, procedure_effective_from=self._lookup)
        handle.connect()
        server = self._http
        connector.initialize(PushPublisher(self.config, handle, self._lookup, server))
        try:
            connector.start()
            routes = connector.routes()
            if routes and server is None:
                raise ConnectorConfigError(
                    f"connector {self.name}",
                    [ConfigProblem("health.port", "missing", "this connector serves HTTP routes")],
                )
            if server is not None:
                server.add_routes(routes)
                server.start()
                log.info("connector %s: HTTP on %s:%s", self.name, server.host, server.port)
            self._running()
            while not self.stop_event.wait(0.5):
                UP.labels(self.name).set(1 if handle.available else 0)
        finally:
            self.state = "stopping"
            try:
                if server is not None:
                    # stop accepting and finish the requests in flight while what they use
                    # (the connector's pools, the publisher) is still open
                    server.close()
            finally:
                try:
                    connector.stop()
                finally:
                    handle.close()

    # --- sources ----------------------------------------------------------------------------

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
        backoff = self.config.backoff()
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
        backoff = self.config.backoff()
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
        codes = codes_of(value)
        dossier = codes.dossier_code
        letter = DeadLetter(
            reason=record.reason if record.problems else "validation",
            detail=detail_from_problems(problems),
            exception_class="hub.contract.inbound.FieldProblem",
            exception_message=f"{len(problems)} problem(s) in the event",
            source_topic=json_topic,
            source_partition=-1,
            source_offset=-1,
            processor=f"connector:{self.name}",
            agency_code=codes.agency_code,
            event_type=codes.event_type,
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
        backoff = self.config.backoff()
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
        backoff = self.config.backoff()
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

    def _run_sink(self, connector: SinkConnector) -> None:
        runner = SinkRunner(self.config, connector, self.stop_event, on_running=self._running)
        try:
            runner.run()
        finally:
            self.committed.update(runner.committed)
            self.state = "stopping"


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
