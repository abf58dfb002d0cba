"""Running a sink connector: one consumer, one lane per assigned partition.

The consumer (the runtime's thread) fetches records and hands each partition's records to its
:class:`Lane`, a thread that gives them to :meth:`SinkConnector.put` one at a time, in offset
order: a dossier's records share its key, hence its partition, so they never overtake each
other, while partitions do not wait for each other (one receiver failing for one record
holds back only that record's partition). ``put`` is therefore called from several threads
at once, never twice at once for the same partition.

Each record is decoded per ``value.converter`` and put; :class:`RetriableError` (and a schema
registry that does not answer) is retried with :class:`~connectors.sdk.retry.Backoff`, waiting
at least the error's ``retry_after_s``; ``PermanentError``, an undecodable record, an
unexpected exception, or retries past ``errors.retry.timeout`` dead-letter the record
(``errors.tolerance=all``) or stop the connector (``none``). ``errors.retry.timeout = -1``
retries for ever: the record is never skipped.

Offsets: a partition's offset is committed (every ``commit.interval``, at a revocation and at
shutdown) only up to the last record ``put`` returned for or whose dead letter Kafka
acknowledged: at-least-once, so ``put`` must be idempotent. A lane with ``max_pending`` records
waiting pauses its partition's fetching until it has worked half of them off; a partition
whose record keeps failing is then held (``hub_connector_paused_partitions``), not skipped.

Shutdown or revocation: each lane finishes the ``put`` in flight (a retry waiting is
abandoned, read again by the next owner), its offset is committed, the lane ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from confluent_kafka import KafkaException
from kafka import KafkaProducer
from kafka.errors import KafkaError

from connectors.sdk.base import SinkConnector, SinkRecord
from connectors.sdk.config import ConnectorConfig, regex_literal
from connectors.sdk.errors import (
    ConnectorError,
    ConnectorFailedError,
    PermanentError,
    RetriableError,
)
from connectors.sdk.identity import codes_of
from connectors.sdk.metrics import PAUSED, RECORDS, RETRIES
from connectors.sdk.retry import Backoff
from hub.consumer_group import (
    CommitFailedError,
    ConsumerError,
    GroupConsumer,
    Partition,
    Record,
    manual_commit_consumer,
)
from hub.contract.errors import DecodeError, RegistryError
from hub.dlq import DeadLetter, attempt_of, count_dead_letter, dead_letter_record
from hub.security.environment import env_client_kwargs
from hub.settings import HubSettings
from hub.topic_admin import TopicCreator

__all__ = ["Lane", "SinkRunner"]

log = logging.getLogger("connectors.sdk.sink")

#: records fetched ahead per partition before its fetching pauses
MAX_PENDING: Final = 500
#: how often the offsets of finished records are committed
COMMIT_INTERVAL_S: Final = 1.0
#: how long a stopping lane may take to finish the put in flight
SHUTDOWN_TIMEOUT_S: Final = 20.0

Decode = Callable[[bytes | None], Any]


def value_decoder(config: ConnectorConfig) -> Decode:
    """Record value → what ``put`` gets, per ``value.converter``; raises
    :class:`PermanentError` for an undecodable value, :class:`RetriableError` while the
    schema registry does not answer."""
    converter = config.value_converter
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

    deserializer = AvroDeserializer(SchemaRegistryClient(config.schema_registry_url))

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


class Lane:
    """One partition's records, put in order by one thread."""

    def __init__(self, runner: SinkRunner, tp: Partition) -> None:
        self.runner = runner
        self.tp = tp
        self.records: deque[Record] = deque()
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.done_offset: int | None = None  # last offset put or dead-lettered
        self.committed_offset: int | None = None
        self.paused = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"lane-{tp.topic}-{tp.partition}", daemon=True
        )
        self.thread.start()

    def add(self, records: Sequence[Record]) -> None:
        with self.cond:
            self.records.extend(records)
            self.cond.notify()

    def pending(self) -> int:
        with self.cond:
            return len(self.records)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                with self.cond:
                    if not self.records:
                        self.cond.wait(0.2)
                        continue
                    record = self.records[0]
                if not self.runner.deliver(record, self.stop):
                    return  # stopped mid-record: not done, not committed
                with self.cond:
                    self.records.popleft()
                    self.done_offset = record.offset
        except BaseException as exc:  # reported by the consumer's thread, which stops
            self.error = exc

    def halt(self, timeout_s: float) -> None:
        self.stop.set()
        with self.cond:
            self.cond.notify()
        self.thread.join(timeout=timeout_s)
        if self.thread.is_alive():
            log.warning("lane %s[%s] still busy after %.0fs", self.tp.topic, self.tp.partition,
                        timeout_s)  # fmt: skip


class SinkRunner:
    """Consumes a sink connector's topics until ``stop`` is set (see the module docstring)."""

    def __init__(
        self,
        config: ConnectorConfig,
        connector: SinkConnector,
        stop: threading.Event,
        *,
        on_running: Callable[[], None] = lambda: None,
        max_pending: int = MAX_PENDING,
        commit_interval_s: float = COMMIT_INTERVAL_S,
    ) -> None:
        self.config = config
        self.connector = connector
        self.name = config.name
        self.stop = stop
        self._on_running = on_running
        self.max_pending = max_pending
        self.commit_interval_s = commit_interval_s
        self.lanes: dict[Partition, Lane] = {}
        #: committed offsets, ``{"topic[partition]": {"offset": next}}`` (runtime, tests)
        self.committed: dict[str, dict[str, int]] = {}
        self._last_commit = 0.0
        self._decode = value_decoder(config)
        self._consumer: GroupConsumer | None = None
        self._dlq: KafkaProducer | None = None
        self._topics = TopicCreator.for_settings(HubSettings(), config.bootstrap_servers)

    # --- Kafka ------------------------------------------------------------------------------

    def _unreachable(self, exc: Exception) -> ConnectorFailedError:
        return ConnectorFailedError(
            f"connector {self.name}: cannot reach Kafka at {self.config.bootstrap_servers}: {exc}"
        )

    def new_consumer(self) -> GroupConsumer:
        """The sink's group member: manual commits, committed records only."""
        return manual_commit_consumer(
            self.config.bootstrap_servers,
            self.config.consumer_group,
            f"connect-{self.name}",
            max_poll_records=self.max_pending,
            metadata_refresh_ms=self.config.metadata_max_age_ms,
        )

    def subscription(self) -> list[str]:
        """The config's topics and ``topics.regex``, else the connector's default regex."""
        found = self.config.input_topics
        default = self.connector.default_topics_regex
        if not found and default is not None:
            found = [f"^{regex_literal(self.config.topic_prefix)}({default})$"]
        return found

    def run(self) -> None:
        try:
            consumer = self._consumer = self.new_consumer()
        except (KafkaException, ConsumerError) as exc:
            raise self._unreachable(exc) from exc
        try:
            self._dlq = KafkaProducer(
                bootstrap_servers=self.config.bootstrap_servers,
                **env_client_kwargs(),
                client_id=f"connect-{self.name}-dlq",
                acks="all",
                enable_idempotence=True,
            )
        except KafkaError as exc:
            consumer.close()
            raise self._unreachable(exc) from exc
        try:
            consumer.subscribe(self.subscription(), listener=self)
            self.connector.start()
            try:
                self._on_running()
                while not self.stop.is_set():
                    self.poll_once()
            finally:
                try:
                    self.shutdown()
                finally:
                    self.connector.stop()
        finally:
            consumer.close()
            self._dlq.close(timeout=10)

    def poll_once(self, timeout_ms: int = 200) -> None:
        """Fetch, hand records to their lanes, pause or resume partitions, commit what is
        done; raise the failure of a lane (``errors.tolerance=none``)."""
        assert self._consumer is not None
        batch = self._consumer.poll(timeout_ms=timeout_ms, max_records=self.max_pending)
        for tp, records in batch.items():
            lane = self.lanes.get(tp)
            if lane is None:
                lane = self.lanes[tp] = Lane(self, tp)
            lane.add(records)
        for tp, lane in self.lanes.items():
            if lane.error is not None:
                raise lane.error
            pending = lane.pending()
            if pending >= self.max_pending and not lane.paused:
                self._consumer.pause(tp)
                lane.paused = True
            elif lane.paused and pending < self.max_pending // 2:
                self._consumer.resume(tp)
                lane.paused = False
        PAUSED.labels(self.name).set(sum(1 for lane in self.lanes.values() if lane.paused))
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.commit()

    def commit(self, lanes: Sequence[Lane] | None = None) -> None:
        assert self._consumer is not None
        chosen = list(self.lanes.values()) if lanes is None else list(lanes)
        offsets: dict[Partition, int] = {}
        for lane in chosen:
            done = lane.done_offset
            if done is not None and done != lane.committed_offset:
                offsets[lane.tp] = done + 1
        self._last_commit = time.monotonic()
        if not offsets:
            return
        try:
            self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # the partition moved: its new owner puts again from the last commit (idempotent)
            log.warning("connector %s: commit failed after a rebalance: %s", self.name, exc)
            return
        for lane in chosen:
            if lane.tp in offsets:
                lane.committed_offset = offsets[lane.tp] - 1
        self.committed.update(
            {f"{tp.topic}[{tp.partition}]": {"offset": o} for tp, o in offsets.items()}
        )

    def _halt(self, lanes: Sequence[Lane], timeout_s: float) -> None:
        for lane in lanes:
            lane.stop.set()
        deadline = time.monotonic() + timeout_s
        for lane in lanes:
            lane.halt(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ConsumerError):
            self.commit(lanes)

    # the consumer's rebalance listener (hub.consumer_group.PartitionListener)

    def on_partitions_revoked(self, revoked: list[Partition]) -> None:
        lanes = [self.lanes[tp] for tp in revoked if tp in self.lanes]
        self._halt(lanes, SHUTDOWN_TIMEOUT_S)
        for lane in lanes:
            del self.lanes[lane.tp]

    def on_partitions_assigned(self, assigned: list[Partition]) -> None:
        log.info("connector %s: assigned %s", self.name,
                 sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))  # fmt: skip

    def shutdown(self) -> None:
        self._halt(list(self.lanes.values()), SHUTDOWN_TIMEOUT_S)

    # --- one record (in its lane's thread) ----------------------------------------------------

    def _wait(self, backoff: Backoff, stop: threading.Event, at_least: float | None) -> bool:
        """Sleep before the next attempt; False when the budget is spent or ``stop`` set."""
        delay = backoff.next_delay()
        if delay is None:
            return False
        if at_least is not None:
            delay = max(delay, at_least)
        return not stop.wait(delay)

    def deliver(self, record: Record, stop: threading.Event) -> bool:
        """Put one record (retrying) or dead-letter it; False when stopped before either."""
        backoff = self.config.backoff()
        headers = [(k, v if v is not None else b"") for k, v in (record.headers or [])]
        failure: Exception
        value: Any = None
        while True:
            try:
                value = self._decode(record.value)
                self.connector.put(
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
                if self._wait(backoff, stop, exc.retry_after_s):
                    RETRIES.labels(self.name).inc()
                    continue
                if stop.is_set():
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
        return self._dead_letter(record, value, reason, failure, stop)

    def _dead_letter(
        self, record: Record, value: Any, reason: str, failure: Exception, stop: threading.Event
    ) -> bool:
        assert self._dlq is not None
        # the decoded value when decoding got that far, else the raw bytes if they are JSON
        codes = codes_of(value if value is not None else record.value)
        letter = DeadLetter.for_exception(
            failure,
            reason=reason,
            detail=str(failure) if isinstance(failure, ConnectorError) else None,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            processor=f"connector:{self.name}",
            agency_code=codes.agency_code,
            event_type=codes.event_type,
            dossier_code=codes.dossier_code,
            attempt=attempt_of(record.headers),
        )
        dead = dead_letter_record(letter, record.key, record.value, record.headers or [])
        target = self.config.dlq_topic(record.topic)
        retry = self.config.backoff()
        while True:
            try:
                self._topics.ensure([target])  # with the hub's replicas, not auto-created
                future = self._dlq.send(
                    target, key=dead.key, value=dead.value, headers=dead.headers
                )
                future.get(timeout=self.config.ack_timeout_ms / 1000)
                break
            except KafkaError as exc:
                if not retry.wait(stop):
                    if stop.is_set():
                        return False
                    raise ConnectorFailedError(
                        f"connector {self.name}: dead letter for {record.topic}"
                        f"[{record.partition}]@{record.offset} not acknowledged: {exc}"
                    ) from exc
                RETRIES.labels(self.name).inc()
        count_dead_letter(letter)
        RECORDS.labels(self.name, "dead_lettered").inc()
        self.connector.dead_lettered(record.topic, reason)
        log.warning("connector %s: dead letter %s[%s]@%s -> %s (%s)", self.name, record.topic,
                    record.partition, record.offset, target, reason)  # fmt: skip
        return True
