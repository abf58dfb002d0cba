"""On a real broker our readers return committed records only.

A transactional producer (as the worker's will be) writes a record and aborts, writes one
and commits, then leaves a third in an open transaction. The tests' topic reader, the group
consumer the portal sink, the webhook and the JSON bridge share, and ``hub dlq``'s reader
each return the committed record alone, and reading "to the end" stops at the open
transaction instead of waiting for it. A consumer reading uncommitted records sees all
three, so the broker really kept the aborted one in the log.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from hub.consumer_group import manual_commit_consumer
from hub.dlq.commands import DlqReader
from tests.fixtures.stack import Broker, create_topics
from tests.fixtures.topics import read_topic

pytestmark = pytest.mark.broker


def _transactional_producer(bootstrap: str) -> KafkaProducer:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"test-txn-{uuid.uuid4().hex[:8]}"
    )
    producer.init_transactions()
    return producer


def _write(producer: KafkaProducer, topic: str, value: bytes) -> None:
    producer.begin_transaction()
    producer.send(topic, key=b"k", value=value).get(timeout=30)  # in the log, not yet decided


def _everything(bootstrap: str, topic: str) -> list[bytes]:
    """The control: every data record, aborted and open ones included."""
    consumer = KafkaConsumer(  # uncommitted on purpose
        bootstrap_servers=bootstrap, isolation_level="read_uncommitted"
    )
    tp = TopicPartition(topic, 0)
    found: list[bytes] = []
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + 30
        while len(found) < 3 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                found += [r.value for r in records]
    finally:
        consumer.close()
    return found


def _group_reads(bootstrap: str, topic: str) -> list[bytes]:
    """What the sinks' group consumer delivers until the committed record came and 2 s
    more went by (an aborted record would come before it: same partition)."""
    consumer = manual_commit_consumer(bootstrap, f"test-group-{uuid.uuid4().hex[:8]}", "test")
    found: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        settle: float | None = None
        while time.monotonic() < (settle or deadline):
            for records in consumer.poll(timeout_ms=100).values():
                found += [r.value for r in records if r.value is not None]
            if settle is None and b"committed" in found:
                settle = time.monotonic() + 2.0
    finally:
        consumer.close()
    return found


def test_readers_skip_aborted_and_open_transactions(broker: Broker) -> None:
    topic = f"t.read-committed.{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [topic], partitions=1)
    producer = _transactional_producer(broker.bootstrap)
    try:
        _write(producer, topic, b"aborted")
        producer.abort_transaction()
        _write(producer, topic, b"committed")
        producer.commit_transaction()
        _write(producer, topic, b"open")  # left open while the readers read

        assert _everything(broker.bootstrap, topic) == [b"aborted", b"committed", b"open"]

        started = time.monotonic()
        values: list[Any] = [r.value for r in read_topic(broker.bootstrap, topic, 1, 30, 0.5)]
        assert values == [b"committed"]
        assert time.monotonic() - started < 20, "reading to the end waited for the open one"

        assert _group_reads(broker.bootstrap, topic) == [b"committed"]

        with DlqReader(broker.bootstrap) as reader:
            assert [entry.value for entry in reader.read(topic)] == [b"committed"]
    finally:
        producer.abort_transaction()
        producer.close()
