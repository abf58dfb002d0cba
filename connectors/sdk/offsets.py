"""Source offsets kept in Kafka, as Kafka Connect does (``offset.storage.topic``).

Topic ``<prefix>hub.connect.offsets``, compacted, one partition: key
``<connector name>|<source partition>`` (UTF-8), value the offset as JSON (a tombstone
forgets it). Compaction keeps the latest value per key, and one partition keeps every key's
history in order, so reading the topic from the start and keeping the last value per key
gives each source partition's latest offset.

The runtime writes offsets only after Kafka acknowledged the records they cover (and their
dead letters), and waits for the offsets' own acknowledgement before telling the connector
(``on_committed``). A crash between the two re-publishes at most the last batch; the hub
drops repeated ``event_id`` s.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from typing import Any, Final

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from connectors.sdk.errors import BrokerUnavailableError
from hub.consumers import committed_consumer
from hub.security.environment import env_client_kwargs

__all__ = ["OffsetStore", "offset_key"]

Offset = dict[str, Any]
_SEPARATOR: Final = "|"


def offset_key(connector: str, source_partition: str) -> bytes:
    return f"{connector}{_SEPARATOR}{source_partition}".encode()


class OffsetStore:
    """Reads and writes one connector's offsets in the shared compacted topic."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        connector: str,
        *,
        producer: KafkaProducer | None = None,
        timeout_s: float = 30.0,
        replication_factor: int = 1,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.connector = connector
        self.timeout_s = timeout_s
        self.replication_factor = replication_factor
        self._owned = producer is None
        self._producer = producer
        self._prefix = f"{connector}{_SEPARATOR}"

    def _get_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                **env_client_kwargs(),
                acks="all",
                enable_idempotence=True,
                client_id=f"connect-offsets-{self.connector}",
            )
        return self._producer

    def ensure_topic(self) -> None:
        """Create the compacted offsets topic unless it exists."""
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="connect-offsets",
                **env_client_kwargs(),
            )
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
        try:
            if self.topic in set(admin.list_topics()):
                return
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [
                        NewTopic(
                            self.topic,
                            1,
                            self.replication_factor,
                            topic_configs={"cleanup.policy": "compact"},
                        )
                    ]
                )
        finally:
            admin.close()

    def _reader(self) -> KafkaConsumer:
        """Group-less, committed records only: an offset written in an aborted transaction
        was never the connector's."""
        return committed_consumer(self.bootstrap, client_id=f"connect-offsets-{self.connector}")

    def load(self) -> dict[str, Offset]:
        """The latest stored offset of each of this connector's source partitions."""
        try:
            consumer = self._reader()
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
        found: dict[str, Offset] = {}
        try:
            deadline = time.monotonic() + self.timeout_s
            partitions: set[int] | None = None
            while not partitions:
                partitions = consumer.partitions_for_topic(self.topic)
                if not partitions:
                    if time.monotonic() > deadline:
                        return found  # no topic yet: nothing stored
                    time.sleep(0.2)
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise BrokerUnavailableError(
                        f"could not read {self.topic} to its end within {self.timeout_s:g}s"
                    )
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        self._apply(found, record.key, record.value)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot read offsets from {self.topic}: {exc}") from exc
        finally:
            consumer.close(autocommit=False)
        return found

    def _apply(self, found: dict[str, Offset], key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        text = key.decode("utf-8", errors="replace")
        if not text.startswith(self._prefix):
            return
        partition = text[len(self._prefix) :]
        if value is None:
            found.pop(partition, None)
            return
        try:
            offset = json.loads(value)
        except ValueError:
            return  # not ours to judge; an unreadable offset is as good as none
        if isinstance(offset, dict):
            found[partition] = offset

    def commit(self, offsets: Mapping[str, Offset], timeout_s: float | None = None) -> None:
        """Write ``offsets`` and wait until Kafka acknowledged every one."""
        if not offsets:
            return
        try:
            producer = self._get_producer()
            futures = [
                producer.send(
                    self.topic,
                    key=offset_key(self.connector, partition),
                    value=json.dumps(offset, sort_keys=True, separators=(",", ":")).encode(),
                )
                for partition, offset in offsets.items()
            ]
            for future in futures:
                future.get(timeout=self.timeout_s if timeout_s is None else timeout_s)
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"offsets not acknowledged by {self.topic}: {exc}"
            ) from exc

    def close(self) -> None:
        if self._owned and self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None
