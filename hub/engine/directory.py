"""Which worker holds which partition, so any worker answers for any dossier.

Each worker announces, on a small topic of the app (``hub.engine.changelog.directory_topic``,
key = worker id), the partitions it holds and the URL of its HTTP API: when an assignment
ends, when its partitions are revoked (none), every ``REFRESH_S`` and when it stops. Every
worker reads all announcements from the start. The owner of a partition is the worker whose
latest announcement claiming it is the newest; a dead worker's claim stands until the next
owner announces, which it does as soon as its assignment is restored.

A request for a dossier of a partition this worker does not hold is forwarded to the owner
(``hub.worker.main``); while a partition has no owner (a rebalance) the answer is 503.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from kafka.partitioner import murmur2

__all__ = ["Directory", "partition_for"]

log = logging.getLogger("hub.engine.directory")

#: announcements are repeated this often, so a compacted or retention-trimmed topic and a
#: worker that missed one still converge
REFRESH_S = 30.0


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java, aiokafka, kafka-python, librdkafka's
    ``murmur2_random``) gives ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Claim:
    url: str
    partitions: frozenset[int]
    at: float


class Claims:
    """The announcements read so far (pure: the rule, without Kafka)."""

    def __init__(self) -> None:
        self._by_worker: dict[str, Claim] = {}
        self._lock = threading.Lock()

    def update(self, worker: str, claim: Claim | None) -> None:
        with self._lock:
            if claim is None:
                self._by_worker.pop(worker, None)
            else:
                self._by_worker[worker] = claim

    def owner(self, partition: int) -> str | None:
        """The URL of the worker whose newest announcement claims ``partition``."""
        with self._lock:
            best: Claim | None = None
            for claim in self._by_worker.values():
                if partition in claim.partitions and (best is None or claim.at > best.at):
                    best = claim
        return best.url if best is not None else None

    def standbys(self, me: str, mine: frozenset[int], replicas: int) -> frozenset[int]:
        """Partitions ``me`` keeps warm for others (standby replicas): those of the
        ``replicas`` workers after it in the order of their ids, so each partition has up to
        ``replicas`` warm copies on other workers."""
        if replicas <= 0:
            return frozenset()
        with self._lock:
            claims = {w: c for w, c in self._by_worker.items() if c.partitions}
        holders = sorted(claims)
        others = [w for w in holders if w != me]
        if me in holders:
            at = holders.index(me)
            others = holders[at + 1 :] + holders[:at]
        chosen: set[int] = set()
        for worker in others[:replicas]:
            chosen |= claims[worker].partitions
        return frozenset(chosen - mine)


def _claim(data: dict[str, object]) -> Claim:
    partitions = data["partitions"]
    if not isinstance(partitions, list):
        raise TypeError("partitions is not a list")
    return Claim(str(data["url"]), frozenset(int(p) for p in partitions), float(str(data["at"])))


class Directory:
    def __init__(self, config: dict[str, str], topic: str, worker: str, url: str) -> None:
        self.topic = topic
        self.worker = worker
        self.url = url
        self.claims = Claims()
        self._mine: frozenset[int] = frozenset()
        self._stop = threading.Event()
        self._producer = Producer(
            {**config, "client.id": f"{worker}-directory", "linger.ms": 0, "acks": "all",
             "enable.idempotence": True}
        )  # fmt: skip
        self._consumer = Consumer(
            {
                **config,
                "group.id": f"{worker}-directory",
                "client.id": f"{worker}-directory",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self._thread = threading.Thread(target=self._read, name="hub-directory", daemon=True)
        self._announced_at = 0.0

    def start(self) -> None:
        self._consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        self._thread.start()

    def stop(self) -> None:
        self.announce(frozenset())
        self._producer.flush(5)
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()

    def announce(self, partitions: frozenset[int]) -> None:
        self._mine = partitions
        self._announced_at = time.monotonic()
        claim = {"url": self.url, "partitions": sorted(partitions), "at": time.time()}
        self._producer.produce(
            self.topic, json.dumps(claim).encode(), self.worker.encode(), partition=0
        )
        self._producer.poll(0)

    def owner(self, partition: int) -> str | None:
        """The URL of the worker holding ``partition`` now, or None."""
        return self.claims.owner(partition)

    def standbys(self, replicas: int) -> frozenset[int]:
        return self.claims.standbys(self.worker, self._mine, replicas)

    def _read(self) -> None:
        while not self._stop.is_set():
            if time.monotonic() - self._announced_at >= REFRESH_S:
                self.announce(self._mine)
            for message in self._consumer.consume(100, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("directory: %s", error)
                    continue
                key, value = message.key(), message.value()
                if key is None:
                    continue
                try:
                    data = json.loads(value) if value else None
                    claim = None if data is None else _claim(data)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("directory: unreadable announcement %r: %s", key, exc)
                    continue
                self.claims.update(key.decode(errors="replace"), claim)
