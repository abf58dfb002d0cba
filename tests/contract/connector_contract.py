"""The contract every connector must pass: subclass the class for its kind.

* :class:`SourceContract` for sources and push sources: implement :meth:`settings` and
  :meth:`emit` (make the agency system produce events: write files, insert outbox rows, POST
  to the ingress). Proves: records reach ``<prefix>dossier.events`` on the real broker, a
  restart resumes from the stored offset with no duplicates and no gaps, stop drains and
  commits, invalid records are dead-lettered (``errors.tolerance=all``) or stop the
  connector (``none``).
* :class:`SinkContract` for sinks: implement :meth:`settings`, :meth:`delivered` and
  :meth:`produce_values` / :meth:`bad_value`. Proves: each record delivered once across a
  restart, a bad record reaches the DLQ with ``hub.errors.*`` headers and the others still
  arrive.
* Both inherit :class:`ConnectorContract`: the config validates from JSON and TOML, a bad
  config gives ``file: path: rule``, the connector starts and stops cleanly.

Tests needing Kafka take the session ``broker`` fixture and a unique topic prefix, so they
never see each other's records. Keep batches small: the broker is shared.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kafka import KafkaProducer, TopicPartition

from connectors.sdk import (
    Connector,
    ConnectorConfigError,
    ConnectorFailedError,
    load_config,
    parse_config,
)
from connectors.sdk.offsets import OffsetStore
from connectors.sdk.runtime import ConnectorRuntime
from hub.consumers import committed_consumer
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from hub.dlq import DeadLetter
from tests.fixtures.stack import Broker

__all__ = [
    "ConnectorContract",
    "SinkContract",
    "SourceContract",
    "make_event",
    "read_topic",
    "wait_for",
]

AGENCY = "000.00.12.H40"


def make_event(agency: str = AGENCY, **overrides: Any) -> dict[str, Any]:
    """A valid DossierSubmitted event with a fresh id and dossier code."""
    now = datetime.now(UTC) - timedelta(minutes=1)
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "DossierSubmitted",
        "occurred_at": now.isoformat(),
        "source_system": "contract-tests",
        "agency_code": agency,
        "dossier_code": f"{agency}-{now:%y%m%d}-{uuid.uuid4().int % 10**8:08d}",
        "payload": {
            "procedure_code": "1.001193",
            "channel": 2,
            "applicant_name": "Nguyễn Thị Hồng Nhung",
            "submitted_at": now.isoformat(),
        },
    }
    event.update(overrides)
    return event


def invalid_event() -> dict[str, Any]:
    event = make_event()
    del event["payload"]["procedure_code"]
    event["payload"]["channel"] = 9
    return event


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


def read_topic(
    broker: Broker,
    topic: str,
    *,
    at_least: int = 0,
    timeout: float = 30.0,
    settle: float = 0.0,
) -> list[Any]:
    """Every record of ``topic`` (from the start), once at least ``at_least`` are there;
    ``settle`` keeps reading that much longer to catch unwanted extras (duplicates)."""
    consumer = committed_consumer(broker.bootstrap, client_id="test-contract-reader")
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        parts = None
        while not parts:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                if time.monotonic() > deadline:
                    if at_least:
                        raise AssertionError(f"topic {topic} never appeared")
                    return records
                time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        settle_until: float | None = None
        while True:
            for rs in consumer.poll(timeout_ms=200).values():
                records.extend(rs)
            now = time.monotonic()
            if len(records) >= at_least:
                if settle_until is None:
                    settle_until = now + settle
                if now >= settle_until:
                    return records
            elif now > deadline:
                raise AssertionError(
                    f"{topic}: {len(records)} records after {timeout:g}s, wanted {at_least}"
                )
    finally:
        consumer.close()


def event_ids(broker: Broker, records: list[Any]) -> list[str]:
    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    return [str(decode(r.value)["event_id"]) for r in records]


class ConnectorContract:
    """Config and lifecycle checks shared by every kind."""

    connector_class: ClassVar[type[Connector]]
    #: dotted path that :meth:`bad_settings` gets wrong
    bad_settings_path: ClassVar[str]

    # --- to implement ---------------------------------------------------------------------

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        """Valid ``settings`` for a connector whose outside world lives in ``tmp_path``."""
        raise NotImplementedError

    def bad_settings(self, tmp_path: Path) -> dict[str, Any]:
        """``settings`` breaking a rule at ``bad_settings_path``."""
        raise NotImplementedError

    def extra_config(self) -> dict[str, Any]:
        """Top-level keys this connector needs besides settings (``topics`` for sinks)."""
        return {}

    # --- helpers --------------------------------------------------------------------------

    def raw_config(
        self, tmp_path: Path, broker: Broker | None = None, prefix: str = "", **extra: Any
    ) -> dict[str, Any]:
        cls = self.connector_class
        config: dict[str, Any] = {
            "name": f"contract-{cls.__name__.lower()}",
            "connector.class": f"{cls.__module__}:{cls.__qualname__}",
            "topic.prefix": prefix,
            "errors.retry.timeout": 5000,
            "errors.retry.delay.max.ms": 500,
            "poll.interval.ms": 100,
            "ack.timeout.ms": 10000,
            **self.extra_config(),
            **extra,
            "settings": self.settings(tmp_path),
        }
        if broker is not None:
            config["bootstrap.servers"] = broker.bootstrap
            config["schema.registry.url"] = broker.registry_url
        return config

    def runtime(
        self, tmp_path: Path, broker: Broker, prefix: str, **extra: Any
    ) -> ConnectorRuntime:
        config = parse_config(self.raw_config(tmp_path, broker, prefix, **extra), "test")
        return ConnectorRuntime(config)

    def started(self, runtime: ConnectorRuntime, timeout: float = 60.0) -> ConnectorRuntime:
        runtime.start_thread()
        wait_for(lambda: runtime.started.is_set(), timeout, "the connector to start")
        if runtime.error is not None:
            raise runtime.error
        assert runtime.state == "running", runtime.state
        return runtime

    @pytest.fixture
    def prefix(self) -> str:
        return f"c{uuid.uuid4().hex[:8]}."

    # --- the contract ---------------------------------------------------------------------

    def test_config_validates_from_json_and_toml(self, tmp_path: Path) -> None:
        raw = self.raw_config(tmp_path)
        json_file = tmp_path / "connector.json"
        json_file.write_text(json.dumps(raw), encoding="utf-8")
        config = load_config(json_file)
        assert config.connector_cls is self.connector_class
        assert isinstance(config.connector_settings, self.connector_class.Settings)

        lines = [f'name = "{raw["name"]}"', f'connector.class = "{raw["connector.class"]}"']
        lines += ["tasks.max = 1", 'errors.tolerance = "all"']
        for key, value in self.extra_config().items():
            lines.append(f'"{key}" = {json.dumps(value)}')
        lines.append("[settings]")
        for key, value in raw["settings"].items():
            lines.append(f"{key} = {json.dumps(value)}")
        toml_file = tmp_path / "connector.toml"
        toml_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        from_toml = load_config(toml_file)
        assert from_toml.errors_tolerance == "all"
        assert from_toml.connector_cls is self.connector_class

    def test_bad_config_names_file_field_and_rule(self, tmp_path: Path) -> None:
        raw = self.raw_config(tmp_path)
        raw["settings"] = self.bad_settings(tmp_path)
        raw["tasks.max"] = 0
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(raw), encoding="utf-8")
        with pytest.raises(ConnectorConfigError) as caught:
            load_config(path)
        text = str(caught.value)
        assert f"{path}: tasks.max: greater_than_equal" in text
        assert f"{path}: {self.bad_settings_path}:" in text
        assert {p.path for p in caught.value.problems} >= {"tasks.max", self.bad_settings_path}

    @pytest.mark.broker
    def test_starts_and_stops_cleanly(self, broker: Broker, tmp_path: Path, prefix: str) -> None:
        runtime = self.started(self.runtime(tmp_path, broker, prefix))
        assert runtime.health()["connector"] == runtime.name
        runtime.request_stop()
        runtime.join(timeout=60)
        assert runtime.state == "stopped"


class SourceContract(ConnectorContract):
    """Sources and push sources."""

    #: pull sources keep offsets: events emitted while stopped are read after the restart
    keeps_offsets: ClassVar[bool] = True

    def emit(
        self, runtime: ConnectorRuntime | None, tmp_path: Path, events: list[dict[str, Any]]
    ) -> None:
        """Make the agency system produce ``events`` (``runtime`` is None while stopped;
        only called so when :attr:`keeps_offsets`)."""
        raise NotImplementedError

    def emit_raw_invalid(self, runtime: ConnectorRuntime | None, tmp_path: Path) -> bool:
        """Produce one invalid event through the connector; return False when the connector
        refuses invalid input at its door instead (the ingress answers 422): the suite then
        checks that nothing was written and the connector carries on."""
        self.emit(runtime, tmp_path, [invalid_event()])
        return True

    @pytest.mark.broker
    def test_records_reach_dossier_events_and_restart_resumes(
        self, broker: Broker, tmp_path: Path, prefix: str
    ) -> None:
        first = [make_event() for _ in range(3)]
        second = [make_event() for _ in range(2)]
        topic = f"{prefix}dossier.events"

        runtime = self.started(self.runtime(tmp_path, broker, prefix))
        self.emit(runtime, tmp_path, first)
        got = read_topic(broker, topic, at_least=3)
        assert sorted(event_ids(broker, got)) == sorted(e["event_id"] for e in first)
        runtime.request_stop()
        runtime.join(timeout=60)

        if self.keeps_offsets:
            self.emit(None, tmp_path, second)
            runtime = self.started(self.runtime(tmp_path, broker, prefix))
        else:
            runtime = self.started(self.runtime(tmp_path, broker, prefix))
            self.emit(runtime, tmp_path, second)
        try:
            got = read_topic(broker, topic, at_least=5, settle=1.5)
        finally:
            runtime.request_stop()
            runtime.join(timeout=60)
        ids = event_ids(broker, got)
        assert len(ids) == 5, f"duplicates or extras: {len(ids)} records for 5 events"
        assert sorted(ids) == sorted(e["event_id"] for e in first + second)
        assert {r.key.decode() for r in got} == {e["dossier_code"] for e in first + second}

    @pytest.mark.broker
    def test_stop_drains_and_commits(self, broker: Broker, tmp_path: Path, prefix: str) -> None:
        runtime = self.started(self.runtime(tmp_path, broker, prefix))
        events = [make_event() for _ in range(4)]
        self.emit(runtime, tmp_path, events)
        runtime.request_stop()
        runtime.join(timeout=60)
        got = read_topic(broker, f"{prefix}dossier.events", at_least=0, timeout=5, settle=0.5)
        published = set(event_ids(broker, got))
        if self.keeps_offsets:
            # whatever was published is covered by stored offsets, so a restart re-reads
            # only what was not: no duplicates
            stored = OffsetStore(
                broker.bootstrap, f"{prefix}hub.connect.offsets", runtime.name
            ).load()
            assert stored == runtime.committed
            if published:
                assert stored, "events were published but no offset was stored"
            runtime = self.started(self.runtime(tmp_path, broker, prefix))
            try:
                got = read_topic(broker, f"{prefix}dossier.events", at_least=4, settle=1.0)
            finally:
                runtime.request_stop()
                runtime.join(timeout=60)
            ids = event_ids(broker, got)
            assert sorted(ids) == sorted(e["event_id"] for e in events)
        else:
            assert published == {e["event_id"] for e in events}

    @pytest.mark.broker
    def test_invalid_record_is_dead_lettered_with_tolerance_all(
        self, broker: Broker, tmp_path: Path, prefix: str
    ) -> None:
        runtime = self.started(
            self.runtime(tmp_path, broker, prefix, **{"errors.tolerance": "all"})
        )
        try:
            dead_lettered = self.emit_raw_invalid(runtime, tmp_path)
            good = make_event()
            self.emit(runtime, tmp_path, [good])
            got = read_topic(broker, f"{prefix}dossier.events", at_least=1, settle=0.5)
            if dead_lettered:
                dead = read_topic(broker, f"{prefix}dossier.events.dlq", at_least=1)
        finally:
            runtime.request_stop()
            runtime.join(timeout=60)
        assert event_ids(broker, got) == [good["event_id"]]
        if not dead_lettered:
            # refused at the door (the sender was told why): nothing to dead-letter
            return
        letter = DeadLetter.from_headers(dead[0].headers)
        assert letter.reason == "validation"
        assert "payload.procedure_code: missing" in letter.detail
        assert letter.processor == f"connector:{runtime.name}"
        assert json.loads(dead[0].value)["payload"]["channel"] == 9  # original bytes kept

    @pytest.mark.broker
    def test_invalid_record_stops_the_connector_with_tolerance_none(
        self, broker: Broker, tmp_path: Path, prefix: str
    ) -> None:
        runtime = self.started(self.runtime(tmp_path, broker, prefix))
        if not self.emit_raw_invalid(runtime, tmp_path):
            # refused at the door: a bad request must not stop a server
            time.sleep(0.5)
            assert runtime.state == "running"
            runtime.request_stop()
            runtime.join(timeout=60)
            return
        wait_for(lambda: runtime.state == "failed", 30, "the connector to stop on the record")
        with pytest.raises(ConnectorFailedError, match=r"errors\.tolerance=none"):
            runtime.join(timeout=30)


class SinkContract(ConnectorContract):
    """Sinks: records from a topic delivered once; bad ones to the DLQ."""

    value_converter: ClassVar[str] = "json"

    def delivered(self, tmp_path: Path) -> list[str]:
        """Ids of the records the outside system received, in arrival order."""
        raise NotImplementedError

    def good_value(self, record_id: str) -> bytes:
        """A record value ``put`` accepts, identified by ``record_id``."""
        raise NotImplementedError

    def bad_value(self) -> bytes:
        """A record value ``put`` refuses with PermanentError (or that cannot be decoded)."""
        raise NotImplementedError

    def extra_config(self) -> dict[str, Any]:
        return {"topics": "input", "value.converter": self.value_converter}

    def produce(self, broker: Broker, topic: str, values: list[bytes]) -> None:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        try:
            for i, value in enumerate(values):
                producer.send(topic, key=f"k{i % 2}".encode(), value=value).get(timeout=30)
        finally:
            producer.close()

    @pytest.mark.broker
    def test_each_record_delivered_once_across_a_restart(
        self, broker: Broker, tmp_path: Path, prefix: str
    ) -> None:
        ids = [f"r{i}" for i in range(4)]
        self.produce(broker, f"{prefix}input", [self.good_value(i) for i in ids[:2]])
        runtime = self.started(self.runtime(tmp_path, broker, prefix))
        wait_for(lambda: len(self.delivered(tmp_path)) >= 2, 60, "first deliveries")
        runtime.request_stop()
        runtime.join(timeout=60)
        self.produce(broker, f"{prefix}input", [self.good_value(i) for i in ids[2:]])
        runtime = self.started(self.runtime(tmp_path, broker, prefix))
        try:
            wait_for(lambda: len(self.delivered(tmp_path)) >= 4, 60, "all deliveries")
            time.sleep(1.0)  # room for an unwanted redelivery to show
        finally:
            runtime.request_stop()
            runtime.join(timeout=60)
        assert sorted(self.delivered(tmp_path)) == ids

    @pytest.mark.broker
    def test_bad_record_reaches_the_dlq_and_the_rest_arrive(
        self, broker: Broker, tmp_path: Path, prefix: str
    ) -> None:
        values = [self.good_value("a"), self.bad_value(), self.good_value("b")]
        self.produce(broker, f"{prefix}input", values)
        runtime = self.started(
            self.runtime(tmp_path, broker, prefix, **{"errors.tolerance": "all"})
        )
        try:
            wait_for(lambda: len(self.delivered(tmp_path)) >= 2, 60, "good deliveries")
            dead = read_topic(broker, f"{prefix}input.dlq", at_least=1)
        finally:
            runtime.request_stop()
            runtime.join(timeout=60)
        assert sorted(self.delivered(tmp_path)) == ["a", "b"]
        assert len(dead) == 1
        assert dead[0].value == values[1]
        letter = DeadLetter.from_headers(dead[0].headers)
        assert letter.source_topic == f"{prefix}input"
        assert letter.processor == f"connector:{runtime.name}"
