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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from hub.audit.chain import canonical_json, chain_key, is_access_chain
from hub.audit.inputs import InputRecord
from hub.consumers import committed_consumer
from hub.dlq.headers import DeadLetter, DeadLetterHeaderError, dlq_topic
from hub.security.environment import env_client_kwargs

__all__ = [
    "AuditReadError",
    "ChainRecords",
    "InputPartition",
    "audit_topic",
    "committed_offsets",
    "encode_entry",
    "read_chains",
    "read_inputs",
]

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


@dataclass
class InputPartition:
    """One input partition as ``hub audit verify --inputs`` reads it back."""

    log_start: int
    records: list[InputRecord]
    committed: int | None  # the hub's committed offset; None: none committed
    dead_letter_offsets: set[int]


def committed_offsets(bootstrap: str, group_id: str) -> dict[tuple[str, int], int]:
    """The offsets consumer group ``group_id`` committed, by (topic, partition). Read these
    *before* the audit topic: the hub commits its input offsets in the transaction that
    carries their entries, so every entry of a record below them is then already visible."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="hub-audit", **env_client_kwargs()
        )
    except Exception as exc:  # kafka-python raises NoBrokersAvailable and others
        raise AuditReadError(f"cannot reach Kafka at {bootstrap} ({type(exc).__name__})") from exc
    try:
        return {
            (tp.topic, tp.partition): meta.offset
            for tp, meta in admin.list_group_offsets(group_id).get(group_id, {}).items()
            if meta.offset >= 0
        }
    finally:
        admin.close()


def read_inputs(
    bootstrap: str,
    chains: list[str],
    *,
    committed: dict[tuple[str, int], int],
    decode: Callable[[bytes], tuple[str | None, str | None]] | None = None,
    timeout_s: float = 15.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, InputPartition]:
    """For each chain key (``<input topic>:<partition>``), and each input partition the hub
    committed offsets for (``committed_offsets``), the input partition's records (committed
    ones, from the log's first offset to its end), the hub's committed offset there and the
    offsets its dead-letter topic names. ``decode`` gives a record value's event id and type
    (None, None when it cannot)."""
    parts: dict[str, tuple[str, int]] = {}
    for chain in chains:
        name, _, digits = chain.rpartition(":")
        if name and digits.isdigit() and not is_access_chain(chain):
            parts[chain] = (name, int(digits))
    # a partition the hub committed past without writing a single entry has no chain: it is
    # read all the same (every record it consumed there is unaccounted for)
    for topic, number in committed:
        parts.setdefault(chain_key(topic, number), (topic, number))
    try:
        consumer = _consumer(bootstrap, timeout_s)
    except Exception as exc:  # kafka-python raises NoBrokersAvailable and others
        raise AuditReadError(f"cannot reach Kafka at {bootstrap} ({type(exc).__name__})") from exc
    try:
        existing = consumer.topics()
        dead: dict[tuple[str, int], set[int]] = defaultdict(set)
        for topic in sorted({topic for topic, _ in parts.values()}):
            if dlq_topic(topic) in existing:
                for record in _read_topic(consumer, dlq_topic(topic), timeout_s):
                    letter = _source_of(record.headers)
                    if letter is not None and letter[0] == topic:
                        dead[(topic, letter[1])].add(letter[2])
        found: dict[str, InputPartition] = {}
        for chain, (topic, number) in sorted(parts.items()):
            tp = TopicPartition(topic, number)
            if topic not in existing:
                raise AuditReadError(f"input topic {topic} does not exist on {bootstrap}")
            begin = consumer.beginning_offsets([tp])[tp]
            end = consumer.end_offsets([tp])[tp]
            if progress is not None:
                progress(f"{chain}: reading input offsets {begin}..{end - 1}")
            records = []
            for record in _read_range(consumer, tp, begin, end, timeout_s) if end > begin else []:
                event_id, event_type = (
                    decode(record.value) if decode and record.value else (None, None)
                )
                records.append(InputRecord(record.offset, record.value, event_id, event_type))
            found[chain] = InputPartition(
                begin, records, committed.get((topic, number)), dead[(topic, number)]
            )
        return found
    finally:
        consumer.close(autocommit=False)


def _read_topic(consumer: KafkaConsumer, topic: str, timeout_s: float) -> list[Any]:
    found: list[Any] = []
    for partition in sorted(consumer.partitions_for_topic(topic) or ()):
        tp = TopicPartition(topic, partition)
        begin = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
        if end > begin:
            found.extend(_read_range(consumer, tp, begin, end, timeout_s))
    return found


def _source_of(headers: list[tuple[str, bytes | None]] | None) -> tuple[str, int, int] | None:
    """(topic, partition, offset) a dead letter's headers name, or None."""
    try:
        letter = DeadLetter.from_headers(headers or [])
    except DeadLetterHeaderError:
        return None
    return letter.source_topic, letter.source_partition, letter.source_offset
