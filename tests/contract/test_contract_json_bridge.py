"""The connector contract for the JSON bridge run as an SDK sink: JSON events in, Avro on
``<prefix>dossier.events`` out (the outside system is Kafka itself); a value that is not
JSON is the bad record, dead-lettered with its original bytes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kafka import KafkaProducer, TopicPartition

from connectors.json_bridge import JsonBridgeConnector
from connectors.sdk import Connector, ConnectorConfigError, parse_config
from hub.consumers import committed_consumer
from tests.contract.connector_contract import SinkContract, event_ids, make_event
from tests.fixtures.stack import Broker

_NAMESPACE = uuid.UUID("6f1c0c53-7a0e-4d43-9a55-3d1f2b8e0c11")


def _event_id(record_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, record_id))


class TestJsonBridgeContract(SinkContract):
    connector_class: ClassVar[type[Connector]] = JsonBridgeConnector
    value_converter = "bytes"
    bad_settings_path = "settings.ack_timeout_s"
    where: ClassVar[dict[Path, tuple[Broker, str]]] = {}

    @pytest.fixture(autouse=True)
    def _remember_broker(self, request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> None:
        if request.node.get_closest_marker("broker") is not None:
            self.where[tmp_path] = (request.getfixturevalue("broker"), prefix)

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"ack_timeout_s": 10.0}

    def bad_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"ack_timeout_s": 0}

    def produce(self, broker: Broker, topic: str, values: list[bytes]) -> None:
        # the bridge's input contract: the Kafka key is the dossier code
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        try:
            for value in values:
                try:
                    key = str(json.loads(value)["dossier_code"]).encode()
                except (ValueError, KeyError, TypeError):
                    key = b"unreadable"
                producer.send(topic, key=key, value=value).get(timeout=30)
        finally:
            producer.close()

    def delivered(self, tmp_path: Path) -> list[str]:
        broker, prefix = self.where[tmp_path]
        topic = f"{prefix}dossier.events"
        consumer = committed_consumer(broker.bootstrap, client_id="test-json-bridge-reader")
        try:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                return []
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            records: list[Any] = []
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                for rs in consumer.poll(timeout_ms=200).values():
                    records.extend(rs)
        finally:
            consumer.close()
        by_event = {_event_id(f"r{i}"): f"r{i}" for i in range(10)}
        by_event |= {_event_id(name): name for name in ("a", "b")}
        return [by_event.get(e, e) for e in event_ids(broker, records)]

    def good_value(self, record_id: str) -> bytes:
        return json.dumps(make_event(event_id=_event_id(record_id))).encode()

    def bad_value(self) -> bytes:
        return b"{not json"

    def test_needs_the_bytes_converter(self, tmp_path: Path) -> None:
        raw = self.raw_config(tmp_path)
        raw["value.converter"] = "json"
        with pytest.raises(ConnectorConfigError, match=r"value\.converter: must_be_bytes"):
            parse_config(raw, "test")
