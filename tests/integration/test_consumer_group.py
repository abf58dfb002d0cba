"""The sinks' group consumer, subscribed by pattern and polled with short timeouts, picks up a
topic created after it joined and receives its records.

kafka-python 3.0 left such a join unfinished after a short poll (the consumer then sat with no
partitions); :mod:`hub.consumer_group` now consumes with librdkafka, and this is the regression
test. The pattern is the agency webhook's own, so it also proves librdkafka reads that regex
as we mean it: the inboxes' ``.dlq`` topics are not consumed.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaProducer

from connectors.webhook import inbox_pattern
from hub.consumer_group import Partition, manual_commit_consumer
from tests.fixtures.stack import Broker, create_topics

pytestmark = pytest.mark.broker


def test_a_new_topic_matching_the_pattern_is_assigned_and_read(broker: Broker) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    inbox = f"{prefix}agency.inbox."
    create_topics(broker.bootstrap, [f"{inbox}first"], partitions=1)
    consumer = manual_commit_consumer(
        broker.bootstrap, f"{prefix}group", "test-consumer-group", metadata_refresh_ms=1000
    )
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        consumer.subscribe(pattern=inbox_pattern(prefix))
        # join the group (with the one inbox there is), polling as the sinks do
        deadline = time.monotonic() + 60
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the consumer never got its first partition"
            consumer.poll(timeout_ms=20)
        # one topic at a time: each one found by the pattern is a rebalance of its own; a
        # .dlq beside each one must be left alone
        topics = [f"{inbox}{n:03d}.00.09.H40" for n in range(6)]
        received: dict[str, tuple[Partition, int]] = {}
        for topic in topics:
            create_topics(broker.bootstrap, [topic, f"{topic}.dlq"], partitions=3)
            producer.send(f"{topic}.dlq", key=b"k", value=b"dead").get(timeout=30)
            producer.send(topic, key=b"k", value=topic.encode()).get(timeout=30)
            deadline = time.monotonic() + 45
            while topic not in received:
                assert time.monotonic() < deadline, (
                    f"{topic} never read; assignment {sorted(consumer.assignment())}"
                )
                # short polls: kafka-python left a join in flight after these (sinks use 100 ms)
                for tp, records in consumer.poll(timeout_ms=20).items():
                    for record in records:
                        assert record.value != b"dead", f"read {record.topic}"
                        received[(record.value or b"").decode()] = (tp, record.offset)
            # commit what was read, as the sinks do after delivery, and read it back
            tp, offset = received[topic]
            consumer.commit({tp: offset + 1})
            assert consumer.committed(tp) == offset + 1
        assert set(received) == set(topics)
        assigned = {tp.topic for tp in consumer.assignment()}
        assert assigned == {f"{inbox}first", *topics}
    finally:
        producer.close()
        consumer.close()
