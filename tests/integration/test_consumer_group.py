"""A pattern-subscribed consumer that polls with short timeouts picks up a topic created after
it joined, and receives its records (see :mod:`hub.consumer_group` for the kafka-python bug
this guards against: without the guard, this test fails in most runs)."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer

from hub.consumer_group import finish_pending_join
from hub.consumers import READ_COMMITTED
from tests.fixtures.stack import Broker, create_topics

pytestmark = pytest.mark.broker


def test_a_new_topic_matching_the_pattern_is_assigned_and_read(broker: Broker) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}.inbox."
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=f"{prefix}group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=500,
        isolation_level=READ_COMMITTED,
    )
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        consumer.subscribe(pattern=rf"^{re.escape(prefix)}.+$")
        # join the group with nothing to consume yet
        deadline = time.monotonic() + 30
        while consumer._coordinator._generation.generation_id < 1:
            assert time.monotonic() < deadline, "the consumer never joined its group"
            consumer.poll(timeout_ms=20)
            finish_pending_join(consumer)
        # one topic at a time: each one found by the pattern is a rebalance of its own
        topics = [f"{prefix}{n}" for n in range(8)]
        received: set[bytes] = set()
        for topic in topics:
            create_topics(broker.bootstrap, [topic], partitions=3)
            producer.send(topic, key=b"k", value=topic.encode()).get(timeout=30)
            deadline = time.monotonic() + 45
            while topic.encode() not in received:
                assert time.monotonic() < deadline, (
                    f"{topic} never read; assignment {sorted(consumer.assignment())}"
                )
                # short polls: a join step slower than this is left in flight (the sinks use 100 ms)
                for records in consumer.poll(timeout_ms=20).values():
                    received.update(r.value for r in records)
                finish_pending_join(consumer)
        assert received == {t.encode() for t in topics}
        assert {tp.topic for tp in consumer.assignment()} == set(topics)
    finally:
        producer.close()
        consumer.close()
