"""The group consumer of our sinks and bridges: confluent-kafka (librdkafka), kafka-python-shaped.

The sinks (portal, agency webhooks, SDK sink connectors) and the JSON bridge used to consume
with kafka-python 3.0, whose group join is a task a short ``poll(timeout_ms=N)`` awaits for at
most ``N`` ms. A join started by a *metadata* change (a pattern subscription finding a new
``agency.inbox.<agency>`` topic, a topic gaining partitions) could be left unfinished by such
a poll, and the consumer then sat with no partitions; working around it meant reading
kafka-python's private coordinator state. librdkafka runs the group protocol on its own
threads, so a short poll only collects what is ready: a regex subscription (a topic starting
with ``^``) finds new topics every ``topic.metadata.refresh.interval.ms`` and the rebalance
completes whatever the poll timeout.

:class:`GroupConsumer` wraps ``confluent_kafka.Consumer`` in the small surface the delivery
loops were written against: ``poll`` returns ``{Partition: [Record, ...]}`` in offset order,
records have ``topic``/``partition``/``offset``/``key``/``value``/``headers``/``timestamp``,
``commit`` takes ``{Partition: next offset}`` and commits synchronously, and a rebalance
listener gets ``on_partitions_revoked``/``on_partitions_assigned`` (lost partitions are
reported as revoked). Every consumer built here reads committed records only
(``isolation.level=read_committed``, see :mod:`hub.consumers`), never commits on its own and
starts at the earliest offset when its group has none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka import KafkaError as RdKafkaError

from hub.consumers import READ_COMMITTED
from hub.security.environment import env_librdkafka_config

__all__ = [
    "CommitFailedError",
    "ConsumerError",
    "GroupConsumer",
    "Partition",
    "PartitionListener",
    "Record",
    "manual_commit_consumer",
    "record_of",
]

log = logging.getLogger(__name__)

#: how long a metadata or offset query to the broker may take
QUERY_TIMEOUT_S: Final = 30.0
#: commit errors meaning "the group moved on": the partition belongs to someone else now
_REBALANCED: Final = frozenset(
    {
        RdKafkaError.REBALANCE_IN_PROGRESS,
        RdKafkaError.ILLEGAL_GENERATION,
        RdKafkaError.UNKNOWN_MEMBER_ID,
        RdKafkaError.FENCED_INSTANCE_ID,
        RdKafkaError._ASSIGNMENT_LOST,
        RdKafkaError._STATE,
    }
)


class Partition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record (librdkafka's accessors, as plain values)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp: int | None  # ms since the epoch, None if the broker gave none


class ConsumerError(Exception):
    """The consumer could not do what was asked (the broker's error in the message)."""


class CommitFailedError(ConsumerError):
    """The group rebalanced before the commit: the partitions are another member's now."""


class PartitionListener(Protocol):
    def on_partitions_revoked(self, revoked: list[Partition]) -> None: ...

    def on_partitions_assigned(self, assigned: list[Partition]) -> None: ...


def record_of(message: Message) -> Record:
    """A consumed message as plain values (the hub worker's engine reads its input so too)."""
    kind, stamp = message.timestamp()
    return Record(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        headers=_headers(message.headers()),
        timestamp=None if kind == TIMESTAMP_NOT_AVAILABLE else stamp,
    )


def _headers(found: Any) -> list[tuple[str, bytes | None]]:
    pairs = found.items() if isinstance(found, dict) else (found or [])
    return [(str(k), v.encode() if isinstance(v, str) else v) for k, v in pairs]


def _tps(partitions: Iterable[Partition]) -> list[TopicPartition]:
    return [TopicPartition(tp.topic, tp.partition) for tp in partitions]


def _parts(partitions: Iterable[TopicPartition]) -> list[Partition]:
    return [Partition(tp.topic, tp.partition) for tp in partitions]


class GroupConsumer:
    """A group member over ``confluent_kafka.Consumer`` (see the module docstring)."""

    def __init__(self, config: Mapping[str, Any], *, max_poll_records: int = 500) -> None:
        if config.get("isolation.level", READ_COMMITTED) != READ_COMMITTED:
            raise ValueError("a consumer of the hub's outputs reads committed records only")
        self.config: dict[str, Any] = {**config, "isolation.level": READ_COMMITTED}
        self.max_poll_records = max_poll_records
        self._listener: PartitionListener | None = None
        self._fatal: RdKafkaError | None = None
        self._consumer = Consumer(
            {
                **self.config,
                "error_cb": self._on_error,
                "logger": log,
                "isolation.level": READ_COMMITTED,
            }
        )

    def __repr__(self) -> str:  # the config holds the SASL password: never show it
        return f"GroupConsumer(group={self.config.get('group.id')!r})"

    # --- group membership ---------------------------------------------------------------------

    def subscribe(
        self,
        topics: Sequence[str] = (),
        *,
        pattern: str | None = None,
        listener: PartitionListener | None = None,
    ) -> None:
        """Join the group for ``topics``, or for every topic matching ``pattern`` (a regex
        librdkafka understands; ``^`` is added in front if missing)."""
        if pattern is not None:
            topics = [*topics, pattern if pattern.startswith("^") else f"^{pattern}"]
        if not topics:
            raise ValueError("subscribe to some topics or a pattern")
        self._listener = listener
        self._consumer.subscribe(
            list(topics), on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )

    def _assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.debug("assigned %s", _parts(partitions))
        if self._listener is not None:
            self._listener.on_partitions_assigned(_parts(partitions))

    def _revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.debug("revoked %s", _parts(partitions))
        if self._listener is not None and partitions:
            self._listener.on_partitions_revoked(_parts(partitions))

    def _on_error(self, error: RdKafkaError) -> None:
        if error.fatal():
            self._fatal = error
            log.error("Kafka consumer: fatal: %s", error)
        else:  # broker down, and similar: librdkafka keeps trying
            log.warning("Kafka consumer: %s", error)

    def assignment(self) -> set[Partition]:
        return set(_parts(self._consumer.assignment()))

    # --- records ------------------------------------------------------------------------------

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[Partition, list[Record]]:
        """Wait up to ``timeout_ms`` for a record, then take what else is ready, up to
        ``max_records``; grouped by partition, in offset order. Rebalance callbacks run in
        here, as with kafka-python."""
        if self._fatal is not None:
            raise ConsumerError(str(self._fatal))
        limit = max(1, max_records or self.max_poll_records)
        messages = self._consumer.consume(1, timeout_ms / 1000)
        if messages and limit > 1:
            messages += self._consumer.consume(limit - 1, 0)
        batch: dict[Partition, list[Record]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise ConsumerError(str(error))
                if error.code() != RdKafkaError._PARTITION_EOF:
                    log.warning("Kafka consumer: %s", error)
                continue
            record = record_of(message)
            batch.setdefault(Partition(record.topic, record.partition), []).append(record)
        return batch

    def pause(self, *partitions: Partition) -> None:
        self._consumer.pause(_tps(partitions))

    def resume(self, *partitions: Partition) -> None:
        self._consumer.resume(_tps(partitions))

    # --- offsets ------------------------------------------------------------------------------

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit ``{partition: next offset to read}`` and wait for the broker's answer.

        :class:`CommitFailedError` when the group rebalanced meanwhile."""
        if not offsets:
            return
        chosen = [TopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
        try:
            answered = self._consumer.commit(offsets=chosen, asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, RdKafkaError) and error.code() in _REBALANCED:
                raise CommitFailedError(str(error)) from exc
            raise ConsumerError(str(exc)) from exc
        for tp in answered or ():
            if tp.error is not None:
                if tp.error.code() in _REBALANCED:
                    raise CommitFailedError(str(tp.error))
                raise ConsumerError(f"{tp.topic}[{tp.partition}]: {tp.error}")

    def committed(self, tp: Partition) -> int | None:
        """The group's committed offset of ``tp`` (None: none yet)."""
        found = self._query(lambda: self._consumer.committed(_tps([tp]), timeout=QUERY_TIMEOUT_S))[
            0
        ]
        return None if found.offset < 0 else int(found.offset)

    def position(self, tp: Partition) -> int:
        """The offset of the next record this consumer will read from ``tp`` (assigned)."""
        found = self._query(lambda: self._consumer.position(_tps([tp])))[0]
        if found.offset >= 0:
            return int(found.offset)
        committed = self.committed(tp)
        if committed is not None:
            return committed
        low, _ = self._query(
            lambda: self._consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=QUERY_TIMEOUT_S, cached=False
            )
        )
        return int(low)

    def end_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The end of each partition for a read-committed reader (its last stable offset)."""
        ends: dict[Partition, int] = {}
        for tp in partitions:
            _, high = self._query(
                lambda tp=tp: self._consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=QUERY_TIMEOUT_S, cached=False
                )
            )
            ends[tp] = int(high)
        return ends

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        """The topic's partition numbers, None if the broker does not know the topic."""
        metadata = self._query(lambda: self._consumer.list_topics(topic, timeout=QUERY_TIMEOUT_S))
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return set(found.partitions)

    @staticmethod
    def _query(call: Any) -> Any:
        try:
            return call()
        except KafkaException as exc:
            raise ConsumerError(str(exc)) from exc

    def close(self) -> None:
        """Leave the group (the listener hears of the revocation); commits nothing."""
        self._consumer.close()


def manual_commit_consumer(
    bootstrap: str,
    group_id: str,
    client_id: str,
    *,
    max_poll_records: int = 200,
    metadata_refresh_ms: int = 10_000,
) -> GroupConsumer:
    """The consumer our sinks and bridges share: a group member that reads committed records
    only (:mod:`hub.consumers`), commits by hand (after its work is acknowledged), starts at
    the earliest offset when the group has none, and authenticates as the environment says
    (``HUB_KAFKA_SECURITY_PROTOCOL`` ...). ``metadata_refresh_ms``: how soon a new topic
    matching a pattern subscription, a subscribed topic created late, or new partitions are
    noticed (librdkafka's default is five minutes)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        **env_librdkafka_config(),
        "group.id": group_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": READ_COMMITTED,
        "topic.metadata.refresh.interval.ms": metadata_refresh_ms,
    }
    return GroupConsumer(config, max_poll_records=max_poll_records)
