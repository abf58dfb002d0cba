"""The audit topic on Kafka: the worker's writer and the readers of ``hub audit``.

Records of ``<prefix>hub.audit``: key ``<input topic>:<partition>`` (the chain), value the
entry as JSON (:mod:`hub.audit.chain`), partition = the input partition, so every chain lives
in one partition and stays in order. The topic is created with the hub's partition count,
the same as its inputs.

The worker keeps each chain's head (its last entry) in memory. On first use of a chain after
start or a rebalance it reads the head back from the audit topic (the newest records of that
partition first), so a worker taking over a partition continues its chain, and a record
replayed after a crash gets its own entry again, identical.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from hub.audit.chain import chain_key, entry_for
from hub.consumers import committed_consumer

__all__ = ["AuditReadError", "AuditRecord", "AuditTrail", "ChainRecords", "audit_topic",
           "encode_entry", "load_head", "read_chains"]  # fmt: skip

_WINDOW = 200  # records read per step when looking for a chain's head from the end


def audit_topic(prefix: str = "") -> str:
    return f"{prefix}hub.audit"


def encode_entry(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class AuditReadError(RuntimeError):
    """The audit topic could not be read to its end; the message is one line."""


@dataclass(frozen=True)
class AuditRecord:
    topic: str
    partition: int
    key: bytes
    value: bytes


def _consumer(bootstrap: str, timeout_s: float) -> KafkaConsumer:
    # committed records only: an entry of an aborted transaction is no part of any chain
    return committed_consumer(
        bootstrap,
        client_id="hub-audit",
        allow_auto_create_topics=False,
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )


def _read_range(
    consumer: KafkaConsumer, tp: TopicPartition, start: int, end: int, timeout_s: float
) -> list[Any]:
    """Records of ``tp`` with offsets in [start, end)."""
    consumer.assign([tp])
    consumer.seek(tp, start)
    found: list[Any] = []
    last_progress = time.monotonic()
    while consumer.position(tp) < end:
        batch = consumer.poll(timeout_ms=500)
        for records in batch.values():
            found.extend(r for r in records if start <= r.offset < end)
        if batch:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > timeout_s:
            raise AuditReadError(
                f"no records from {tp.topic}[{tp.partition}] for {timeout_s:.0f}s before its end"
            )
    return found


def load_head(
    bootstrap: str, topic: str, partition: int, chain: str, *, timeout_s: float = 30.0
) -> dict[str, Any] | None:
    """The last entry of ``chain`` in ``topic[partition]``, or None (a new chain)."""
    consumer = _consumer(bootstrap, timeout_s)
    try:
        tp = TopicPartition(topic, partition)
        if partition not in (consumer.partitions_for_topic(topic) or set()):
            return None
        begin = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
        wanted = chain.encode()
        while end > begin:
            start = max(begin, end - _WINDOW)
            for record in reversed(_read_range(consumer, tp, start, end, timeout_s)):
                if record.key == wanted:
                    head: dict[str, Any] = json.loads(record.value)
                    return head
            end = start
        return None
    finally:
        consumer.close(autocommit=False)


@dataclass
class AuditTrail:
    """The worker's side: one entry per applied record, the heads kept in memory."""

    bootstrap: str
    topic: str
    ensure_topic: Callable[[list[str]], None] = lambda names: None
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ready: bool = False

    async def record_for(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        event_id: str,
        event_type: str | None,
        dossier_code: str,
        record: bytes,
    ) -> AuditRecord | None:
        """The audit record to send with the outputs; the head moves on at once (the agent
        processes one record at a time, and a failed send stops the worker).

        None for a record older than the chain's head: it was chained already. That happens
        after a crash, when acknowledged entries outlived table updates not yet in the
        changelog and the worker applies those records again. The head's own record gets its
        entry again, identical (see :func:`hub.audit.chain.entry_for`)."""
        if not self._ready:
            await asyncio.to_thread(self.ensure_topic, [self.topic])
            self._ready = True
        chain = chain_key(topic, partition)
        if chain not in self.heads:
            head = await asyncio.to_thread(load_head, self.bootstrap, self.topic, partition, chain)
            if head is not None:
                self.heads[chain] = head
        head = self.heads.get(chain)
        if head is not None and isinstance(head.get("offset"), int) and offset < head["offset"]:
            return None
        entry = entry_for(
            head,
            topic=topic,
            partition=partition,
            offset=offset,
            event_id=event_id,
            event_type=event_type,
            dossier_code=dossier_code,
            record=record,
        )
        self.heads[chain] = entry
        return AuditRecord(self.topic, partition, chain.encode(), encode_entry(entry))

    def forget(self, partitions: Iterable[tuple[str, int]] | None = None) -> None:
        """Drop cached heads (all, or of these input partitions): another worker may have
        extended those chains meanwhile, so they are read back on next use."""
        if partitions is None:
            self.heads.clear()
            return
        for topic, partition in partitions:
            self.heads.pop(chain_key(topic, partition), None)


@dataclass
class ChainRecords:
    """One chain's entries as read from the audit topic, in topic order."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # positions of non-JSON values


def read_chains(bootstrap: str, topic: str, *, timeout_s: float = 15.0) -> dict[str, ChainRecords]:
    """Every record of the audit topic up to its end offsets of now, grouped by chain key."""
    try:
        consumer = _consumer(bootstrap, timeout_s)
    except Exception as exc:  # kafka-python raises NoBrokersAvailable and others
        raise AuditReadError(f"cannot reach Kafka at {bootstrap} ({type(exc).__name__})") from exc
    chains: dict[str, ChainRecords] = defaultdict(ChainRecords)
    try:
        if topic not in consumer.topics():
            raise AuditReadError(f"audit topic {topic} does not exist on {bootstrap}")
        for partition in sorted(consumer.partitions_for_topic(topic) or ()):
            tp = TopicPartition(topic, partition)
            begin = consumer.beginning_offsets([tp])[tp]
            end = consumer.end_offsets([tp])[tp]
            if end <= begin:
                continue
            for record in _read_range(consumer, tp, begin, end, timeout_s):
                key = record.key.decode(errors="replace") if record.key else "<no key>"
                where = f"{partition}:{record.offset}"
                try:
                    entry = json.loads(record.value)
                    if not isinstance(entry, dict):
                        raise ValueError("not an object")
                except ValueError:
                    chains[key].unreadable.append(where)
                    chains[key].entries.append({})
                    chains[key].positions.append(where)
                    continue
                chains[key].entries.append(entry)
                chains[key].positions.append(where)
    finally:
        consumer.close(autocommit=False)
    return dict(chains)
