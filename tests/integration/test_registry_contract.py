"""The event contract against the real registry and broker.

* Evolution: every shipped version of each kind is accepted under ``BACKWARD_TRANSITIVE`` by the
  registry's own compatibility checker; a v2 that adds an optional field passes, breaking
  copies are refused by the registry and by the offline fastavro check alike.
* Interoperability: every event type (15 dossier branches, 2 feedback branches, status and
  alert records, from :func:`sample_records`) crosses the broker written by our serializer and
  read by confluent-kafka's, and written by confluent-kafka's and read by ours.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient as ConfluentRegistry
from confluent_kafka.schema_registry.avro import AvroDeserializer as ConfluentDeserializer
from confluent_kafka.schema_registry.avro import AvroSerializer as ConfluentSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from hub.consumers import READ_COMMITTED
from hub.contract.compat import (
    TRANSITIVE,
    compatibility_with_all,
    delete_subject,
    fastavro_backward_problems,
    registry_check,
    subject_compatibility,
)
from hub.contract.event_types import DossierEventType, FeedbackEventType
from hub.contract.registry import SchemaRegistryClient
from hub.contract.samples import sample_records
from hub.contract.schemas import SchemaKind, load_schema, versions
from hub.contract.serde import MAGIC_BYTE, AvroDeserializer, AvroSerializer
from tests.fixtures.stack import Broker, create_topics, unique_topic
from tests.unit.test_evolution import BREAKING, with_optional_field

pytestmark = pytest.mark.broker

KINDS = list(SchemaKind)


@pytest.fixture(scope="module")
def registry(broker: Broker) -> Iterator[SchemaRegistryClient]:
    client = SchemaRegistryClient(broker.registry_url)
    yield client
    client.close()


@pytest.fixture
def subject(registry: SchemaRegistryClient) -> Iterator[str]:
    """A subject no other test (or earlier run against the same registry) uses."""
    name = f"evo.{uuid.uuid4().hex}-value"
    yield name
    delete_subject(registry, name)


def shipped(kind: SchemaKind) -> list[dict[str, Any]]:
    return [load_schema(kind, v) for v in versions(kind)]


def registered_versions(registry: SchemaRegistryClient, subject: str) -> list[int]:
    return [int(v) for v in registry._request("GET", f"/subjects/{subject}/versions")]


# --- evolution through the registry's compatibility checker -----------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_version_is_accepted_transitively(
    registry: SchemaRegistryClient, subject: str, kind: SchemaKind
) -> None:
    schemas = shipped(kind)
    assert registry_check(registry, subject, schemas) == []
    assert subject_compatibility(registry, subject) == TRANSITIVE
    assert registered_versions(registry, subject) == list(range(1, len(schemas) + 1))


def test_v2_with_an_optional_field_is_accepted(
    registry: SchemaRegistryClient, subject: str
) -> None:
    schemas = shipped(SchemaKind.DOSSIER_EVENT)
    v2 = with_optional_field(schemas[-1])
    assert fastavro_backward_problems(schemas[-1], v2) == []
    assert registry_check(registry, subject, [*schemas, v2]) == []
    assert len(registered_versions(registry, subject)) == len(schemas) + 1


@pytest.mark.parametrize("change", BREAKING)
def test_a_breaking_copy_is_refused_by_the_registry_and_by_fastavro(
    registry: SchemaRegistryClient, subject: str, change: str
) -> None:
    schemas = shipped(SchemaKind.DOSSIER_EVENT)
    broken = BREAKING[change](schemas[-1])

    offline = fastavro_backward_problems(schemas[-1], broken)
    online = registry_check(registry, subject, [*schemas, broken])

    assert offline, "fastavro must report the break"
    assert online, "the registry must report the break"
    position = len(schemas) + 1
    assert all(p.startswith(f"version {position} ") for p in online), online
    assert f"not {TRANSITIVE}" in online[0]
    # refused, so not registered: the subject still holds only the good versions
    assert registered_versions(registry, subject) == list(range(1, len(schemas) + 1))


def test_the_registry_checks_all_versions_not_only_the_latest(
    registry: SchemaRegistryClient, subject: str
) -> None:
    # v3 reads v2 data but not v1 data: only a transitive check refuses it.
    v1 = {
        "type": "record",
        "name": "R",
        "namespace": "test.evo",
        "fields": [{"name": "a", "type": "string"}],
    }
    v2 = json.loads(json.dumps(v1))
    v2["fields"].append({"name": "b", "type": "int", "default": 0})
    v3 = json.loads(json.dumps(v2))
    del v3["fields"][1]["default"]
    problems = registry_check(registry, subject, [v1, v2, v3])
    assert len(problems) == 1
    assert problems[0].startswith("version 3 ")
    assert registered_versions(registry, subject) == [1, 2]


def test_unknown_subject_is_compatible_with_anything(registry: SchemaRegistryClient) -> None:
    # Confluent and Apicurio answer 404/40401 for /compatibility/subjects/<unknown>/versions
    schema = load_schema(SchemaKind.DOSSIER_ALERT)
    assert compatibility_with_all(registry, f"evo.never.{uuid.uuid4().hex}", schema) == (True, [])


def test_registry_check_wants_a_fresh_subject(registry: SchemaRegistryClient, subject: str) -> None:
    schemas = shipped(SchemaKind.DOSSIER_ALERT)
    assert registry_check(registry, subject, schemas) == []
    with pytest.raises(ValueError, match="already exists"):
        registry_check(registry, subject, schemas)


def test_registry_check_can_clean_up(registry: SchemaRegistryClient) -> None:
    name = f"evo.cleanup.{uuid.uuid4().hex}-value"
    assert (
        registry_check(registry, name, shipped(SchemaKind.DOSSIER_ALERT), delete_after=True) == []
    )
    assert name not in registry.subjects()


# --- every event type through the broker, our serde against confluent-kafka's ----------------


def events(kind: SchemaKind) -> list[dict[str, Any]]:
    """:func:`sample_records` with ``event_type`` set as producers set it (the branch's name)."""
    top = str(load_schema(kind)["name"])
    records = []
    for record in sample_records(load_schema(kind)):
        payload = record.get("payload")
        name = payload[0].rsplit(".", 1)[-1] if isinstance(payload, tuple) else top
        records.append({**record, "event_type": name})
    return records


def test_the_samples_cover_every_event_type() -> None:
    types = {r["event_type"] for kind in KINDS for r in events(kind)}
    assert types == {
        *DossierEventType,
        *FeedbackEventType,
        "DossierStatusChanged",
        "DossierAlert",
    }
    assert len(DossierEventType) == 15
    assert len(FeedbackEventType) == 2


def assert_same_records(read: list[Any], written: list[dict[str, Any]]) -> None:
    """Records read back equal the records written, compared as they are.

    Nothing is normalised, on purpose: confluent-kafka's AvroDeserializer decodes with
    fastavro's ``schemaless_reader``, as ours does, so logical types come back as the same
    Python types on both sides (``uuid`` → ``UUID``, not ``str``; ``timestamp-millis`` → aware
    UTC ``datetime``; ``date`` → ``date``). Two things do matter and are set by the callers:
    ``return_record_name=True`` (confluent's default False returns the payload branch as a
    bare dict, losing which event type it was) and samples holding millisecond timestamps.
    The type checks below make sure the equality is not between two equally wrong values.
    """
    assert len(read) == len(written)
    for got, sent in zip(read, written, strict=True):
        assert got == sent
        assert isinstance(got["event_id"], UUID)
        assert got["occurred_at"].tzinfo is not None


def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for key, value in values:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0, "every message delivered"


def consume(bootstrap: str, topic: str, count: int, timeout_s: float = 30.0) -> list[Any]:
    """``count`` messages from the start of partition 0 (assigned: no group rebalance wait)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"evo-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": READ_COMMITTED,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                raise KafkaException(message.error())
            messages.append(message)
    finally:
        consumer.close()
    assert len(messages) == count, f"{len(messages)} of {count} messages arrived on {topic}"
    return messages


def key_of(record: dict[str, Any]) -> bytes:
    return str(record["dossier_code"]).encode()


@pytest.mark.parametrize("kind", KINDS)
def test_written_by_us_read_by_confluent_kafka(broker: Broker, kind: SchemaKind) -> None:
    topic = unique_topic(f"evo.ours.{kind}")
    create_topics(broker.bootstrap, [topic])
    records = events(kind)
    serialize = AvroSerializer(
        SchemaRegistryClient(broker.registry_url), f"{topic}-value", load_schema(kind)
    )
    produce(broker.bootstrap, topic, [(key_of(r), serialize(r)) for r in records])

    deserialize = ConfluentDeserializer(
        ConfluentRegistry({"url": broker.registry_url}), return_record_name=True
    )
    context = SerializationContext(topic, MessageField.VALUE)
    messages = consume(broker.bootstrap, topic, len(records))
    for message in messages:
        assert message.value()[0] == MAGIC_BYTE
        assert int.from_bytes(message.value()[1:5], "big") == serialize.schema_id
    assert [m.key() for m in messages] == [key_of(r) for r in records]
    assert_same_records([deserialize(m.value(), context) for m in messages], records)


@pytest.mark.parametrize("kind", KINDS)
def test_written_by_confluent_kafka_read_by_us(broker: Broker, kind: SchemaKind) -> None:
    topic = unique_topic(f"evo.confluent.{kind}")
    create_topics(broker.bootstrap, [topic])
    records = events(kind)
    confluent_registry = ConfluentRegistry({"url": broker.registry_url})
    serialize = ConfluentSerializer(
        confluent_registry,
        json.dumps(load_schema(kind)),
        conf={"auto.register.schemas": True},
    )
    context = SerializationContext(topic, MessageField.VALUE)
    produce(broker.bootstrap, topic, [(key_of(r), serialize(r, context)) for r in records])

    # it registered under the topic's subject (TopicNameStrategy) and framed with that id
    schema_id = confluent_registry.get_latest_version(f"{topic}-value").schema_id
    deserialize = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    messages = consume(broker.bootstrap, topic, len(records))
    decoded = []
    for message in messages:
        frame_id, record = deserialize.decode(message.value())
        assert frame_id == schema_id
        decoded.append(record)
    assert_same_records(decoded, records)
