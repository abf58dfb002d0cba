"""A dossier-shaped Avro record crosses the real broker and registry and comes back intact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from hub.consumers import committed_consumer
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import MAGIC_BYTE, AvroDeserializer, AvroSerializer
from tests.fixtures.stack import Broker, create_topics, unique_topic

pytestmark = pytest.mark.broker

DOSSIER_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "RoundTripDossier",
    "namespace": "vn.gov.nghean.hub.test",
    "fields": [
        {"name": "dossier_code", "type": "string"},
        {"name": "procedure_code", "type": "string"},
        {"name": "applicant_name", "type": "string", "pii": True},
        {"name": "received_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "status", "type": "string"},
    ],
}


def _record() -> dict[str, Any]:
    return {
        "dossier_code": "000.00.12.H40-250805-0001",
        "procedure_code": "1.001193",
        "applicant_name": "Nguyễn Thị Hồng",
        "received_at": datetime(2025, 8, 5, 8, 30, tzinfo=UTC),
        "status": "RECEIVED",
    }


def _consume_one(
    bootstrap: str,
    topic: str,
    timeout_s: float = 60.0,
    producer_alive: Callable[[], bool] = lambda: True,
) -> Any:
    consumer = committed_consumer(
        bootstrap,
        client_id="test-roundtrip",
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for message in consumer:
                return message
            if not producer_alive():
                raise AssertionError(f"the process feeding {topic} exited")
    finally:
        consumer.close()
    raise AssertionError(f"nothing arrived on {topic} within {timeout_s:.0f}s")


def test_plain_client_round_trip_uses_the_confluent_wire_format(broker: Broker) -> None:
    topic = unique_topic("roundtrip.plain")
    registry = SchemaRegistryClient(broker.registry_url)
    serialize = AvroSerializer(registry, f"{topic}-value", DOSSIER_SCHEMA)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    producer.send(topic, key=b"000.00.12.H40-250805-0001", value=serialize(_record())).get(30)
    producer.close()

    message = _consume_one(broker.bootstrap, topic)

    assert message.value[0] == MAGIC_BYTE
    assert int.from_bytes(message.value[1:5], "big") == serialize.schema_id
    assert registry.subjects().count(f"{topic}-value") == 1
    assert AvroDeserializer(SchemaRegistryClient(broker.registry_url))(message.value) == _record()


def test_faust_agent_reads_and_writes_avro_through_the_registry(
    broker: Broker, tmp_path: Path
) -> None:
    source, sink = unique_topic("roundtrip.in"), unique_topic("roundtrip.out")
    create_topics(broker.bootstrap, [source, sink])
    registry = SchemaRegistryClient(broker.registry_url)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    serialize = AvroSerializer(registry, f"{source}-value", DOSSIER_SCHEMA)
    producer.send(source, key=b"000.00.12.H40-250805-0001", value=serialize(_record())).get(30)
    producer.close()

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "SCHEMA_REGISTRY_URL": broker.registry_url,
        "ROUNDTRIP_SCHEMA": json.dumps(DOSSIER_SCHEMA),
        "ROUNDTRIP_SOURCE": source,
        "ROUNDTRIP_SINK": sink,
        "ROUNDTRIP_APP_ID": f"roundtrip-{uuid.uuid4().hex[:8]}",
    }
    log = (tmp_path / "worker.log").open("wb")  # a file, not a pipe: a full pipe stalls faust
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.roundtrip_app",
            "--datadir",
            str(tmp_path / "faust"),
            "worker",
            "-l",
            "warn",
            "--without-web",
        ],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        message = _consume_one(
            broker.bootstrap, sink, timeout_s=90, producer_alive=lambda: worker.poll() is None
        )
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
    output = (tmp_path / "worker.log").read_text(errors="replace")

    decoded = AvroDeserializer(SchemaRegistryClient(broker.registry_url))(message.value)
    assert decoded == {**_record(), "status": "RECEIVED_BY_FAUST"}, output[-2000:]
    assert message.key == b"000.00.12.H40-250805-0001"
