"""The audit topic on Kafka: the worker's writer and the readers of ``hub audit``.

Records of ``<prefix>hub.audit``: key ``<input topic>:<partition>`` (the chain), value the
entry as JSON (:mod:`hub.audit.chain`), partition = the input partition, so every chain lives
in one partition and stays in order. The topic is created with the hub's partition count,
the same as its inputs.

The worker's engine writes the entries in its checkpoints' transactions and keeps each
chain's head (its last entry) in the meta of the partition's store, which travels in the
changelog with the states (``hub.engine.loop``): a worker taking over a partition continues
its chains where the last committed checkpoint left them, and an aborted checkpoint's entries
are never visible to a read-committed reader.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from hub.audit.chain import canonical_json
from hub.consumers import committed_consumer

__all__ = ["AuditReadError", "ChainRecords", "audit_topic", "encode_entry", "read_chains"]

_WINDOW = 200  # records read per step when looking for a chain's head from the end


def audit_topic(prefix: str = "") -> str:
    return f"{prefix}hub.audit"


def encode_entry(entry: dict[str, Any]) -> bytes:
    return canonical_json(entry)


class AuditReadError(RuntimeError):
    """The audit topic could not be read to its end; the message is one line."""


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
