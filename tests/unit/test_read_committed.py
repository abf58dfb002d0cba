"""Every consumer we build reads committed records only, checked without a broker.

The hub worker writes its outputs in Kafka transactions; a fenced or failed worker's aborted
records stay in the log and only a ``read_committed`` consumer skips them. The consumers are
built for real (kafka-python checks the setting when it is constructed) against a port where
nothing listens: with ``api_version`` given, kafka-python does not contact the broker until
it is used; confluent-kafka's (the sinks' and bridges' group consumer) only dials in the
background. The end-to-end proof on a broker is ``tests/integration/test_read_committed.py``.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

import hub.consumers
from connectors.sdk import SinkConnector, parse_config
from connectors.sdk.offsets import OffsetStore
from connectors.sdk.runtime import ConnectorRuntime
from connectors.sdk.sink import SinkRunner
from hub.audit import trail
from hub.consumer_group import GroupConsumer, manual_commit_consumer
from hub.consumers import READ_COMMITTED, committed_consumer
from hub.dlq.commands import DlqReader
from hub.worker.lag import LagSampler
from tests.fixtures.topics import topic_reader

NOWHERE = "127.0.0.1:9"  # nothing listens; never dialled before the consumer is used
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[KafkaConsumer]]:
    """Every consumer :func:`committed_consumer` builds during the test, made without a
    broker; closed afterwards."""
    made: list[KafkaConsumer] = []

    class Offline(KafkaConsumer):  # type: ignore[misc]
        def __init__(self, *topics: str, **config: Any) -> None:
            super().__init__(*topics, **{"api_version": (2, 8), **config})
            made.append(self)

    monkeypatch.setattr(hub.consumers, "KafkaConsumer", Offline)
    yield made
    for consumer in made:
        consumer.close(autocommit=False)


def _only(made: list[KafkaConsumer]) -> KafkaConsumer:
    assert len(made) == 1, made
    return made[0]


def test_the_factory_reads_committed_and_cannot_be_talked_out_of_it(
    built: list[KafkaConsumer],
) -> None:
    consumer = committed_consumer(NOWHERE, client_id="t", group_id="g", max_poll_records=7)
    assert consumer.config["isolation_level"] == READ_COMMITTED == "read_committed"
    assert (consumer.config["group_id"], consumer.config["max_poll_records"]) == ("g", 7)
    assert consumer.config["enable_auto_commit"] is False
    with pytest.raises(ValueError, match="committed records only"):
        committed_consumer(NOWHERE, client_id="t", isolation_level="read_uncommitted")
    # the same keyword passed explicitly is fine
    committed_consumer(NOWHERE, client_id="t", isolation_level=READ_COMMITTED)


def test_kafka_python_knows_the_setting() -> None:
    # kafka-python rejects an isolation level it does not know when the consumer is built,
    # so a typo (or a release without KIP-98 support) fails loudly, not silently
    from kafka.errors import KafkaConfigurationError

    with pytest.raises(KafkaConfigurationError):
        KafkaConsumer(  # uncommitted on purpose
            bootstrap_servers=NOWHERE, api_version=(2, 8), isolation_level="committed"
        )


def test_sinks_and_bridges_group_consumer(built: list[KafkaConsumer]) -> None:
    # the portal sink, the agency webhook, the SDK sinks and the JSON bridge all build this one
    consumer = manual_commit_consumer(NOWHERE, "portal-sink", "hub-portal")
    try:
        assert consumer.config["isolation.level"] == READ_COMMITTED
        assert consumer.config["group.id"] == "portal-sink"
        assert consumer.config["enable.auto.commit"] is False
        assert consumer.config["auto.offset.reset"] == "earliest"
    finally:
        consumer.close()
    assert built == []  # not kafka-python's
    with pytest.raises(ValueError, match="committed records only"):
        GroupConsumer({"bootstrap.servers": NOWHERE, "isolation.level": "read_uncommitted"})


def test_librdkafka_knows_the_setting() -> None:
    from confluent_kafka import Consumer, KafkaException

    with pytest.raises(KafkaException, match=r"isolation\.level"):
        Consumer(  # uncommitted on purpose
            {"bootstrap.servers": NOWHERE, "group.id": "g", "isolation.level": "committed"}
        )


def test_sdk_sink_runtime_and_offset_store(built: list[KafkaConsumer]) -> None:
    config = parse_config(
        {
            "name": "k",
            "connector.class": "tests.unit.test_sdk:NoopSink",
            "topics": "a",
            "bootstrap.servers": NOWHERE,
        }
    )
    runtime = ConnectorRuntime(config)
    assert isinstance(runtime.connector, SinkConnector)
    sink = SinkRunner(config, runtime.connector, threading.Event()).new_consumer()
    try:
        assert sink.config["isolation.level"] == READ_COMMITTED
        assert sink.config["group.id"] == "connect-k"
    finally:
        sink.close()
    OffsetStore(NOWHERE, "hub.connect.offsets", "k")._reader()
    assert _only(built).config["isolation_level"] == READ_COMMITTED


def test_hub_commands_and_the_lag_sampler(
    built: list[KafkaConsumer], monkeypatch: pytest.MonkeyPatch
) -> None:
    DlqReader(NOWHERE).close()
    trail._consumer(NOWHERE, 1.0)
    import kafka

    monkeypatch.setattr(kafka, "KafkaAdminClient", lambda **kwargs: object())
    LagSampler(NOWHERE, "hub", ["dossier.events"])._clients()
    assert [c.config["client_id"] for c in built] == ["hub-dlq", "hub-audit", "hub-lag"]
    assert {c.config["isolation_level"] for c in built} == {READ_COMMITTED}


def test_the_tests_topic_reader(built: list[KafkaConsumer]) -> None:
    topic_reader(NOWHERE)
    assert _only(built).config["isolation_level"] == READ_COMMITTED


# --- and nobody builds a consumer any other way -------------------------------------------------

_CONSUMERS = {"KafkaConsumer", "AIOKafkaConsumer"}


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _reads_committed(value: ast.expr) -> bool:
    return (isinstance(value, ast.Name) and value.id == "READ_COMMITTED") or (
        isinstance(value, ast.Constant) and value.value == READ_COMMITTED
    )


def _assigned_dicts(tree: ast.AST) -> dict[str, ast.Dict]:
    """Dict literals assigned in the file, by the name (or attribute name) they are bound to."""
    found: dict[str, ast.Dict] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                bound = _called_name(ast.Call(func=target, args=[], keywords=[]))
                if bound is not None:
                    found[bound] = node.value
    return found


def _librdkafka_level(call: ast.Call, dicts: dict[str, ast.Dict]) -> ast.expr | None:
    """The value of 'isolation.level' in a confluent-kafka Consumer's config, if it is
    written out (the last one wins, as in the dict)."""
    if not call.args:
        return None
    config = call.args[0]
    if not isinstance(config, ast.Dict):
        bound = _called_name(ast.Call(func=config, args=[], keywords=[]))
        found = dicts.get(bound) if bound is not None else None
        if found is None:
            return None
        config = found
    level: ast.expr | None = None
    for key, value in zip(config.keys, config.values, strict=True):
        if isinstance(key, ast.Constant) and key.value == "isolation.level":
            level = value
    return level


ON_PURPOSE = "# uncommitted on purpose"  # on the call's first line: a test's control reader


def _offences(path: Path) -> Iterator[str]:
    yield from _offences_in(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


def _offences_in(text: str, where: str) -> Iterator[str]:
    lines = text.splitlines()
    tree = ast.parse(text, filename=where)
    dicts = _assigned_dicts(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or ON_PURPOSE in lines[node.lineno - 1]:
            continue
        name = _called_name(node)
        if name in _CONSUMERS:
            level = [k.value for k in node.keywords if k.arg == "isolation_level"]
            if not level or not _reads_committed(level[0]):
                yield f"{where}:{node.lineno}: {name}(...) without isolation_level=READ_COMMITTED"
        elif name == "Consumer":
            # confluent-kafka: its config (a dict literal, given or assigned in this file to
            # the name passed) must say 'isolation.level': 'read_committed' itself
            config_level = _librdkafka_level(node, dicts)
            if config_level is None or not _reads_committed(config_level):
                yield (
                    f"{where}:{node.lineno}: Consumer(...) without "
                    "'isolation.level': READ_COMMITTED"
                )


def test_every_consumer_in_the_tree_reads_committed() -> None:
    """Consumers are built by :func:`hub.consumers.committed_consumer` (or what calls it);
    a direct ``KafkaConsumer(...)``/``AIOKafkaConsumer(...)`` anywhere else must say
    ``isolation_level=READ_COMMITTED`` itself, and a confluent-kafka ``Consumer({...})``
    ``'isolation.level': READ_COMMITTED``, unless its first line says it reads uncommitted
    records on purpose. Faust's worker consumer is not built here."""
    exempt = {ROOT / "hub" / "consumers.py"}
    files = [
        path
        for folder in ("hub", "connectors", "tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path not in exempt
    ]
    assert len(files) > 50
    offences = [offence for path in files for offence in _offences(path)]
    assert offences == []


def test_the_scan_sees_confluent_kafka_consumers() -> None:
    probe = (
        "from confluent_kafka import Consumer\n"
        "GOOD = {'group.id': 'g', 'isolation.level': 'read_committed'}\n"
        "Consumer(GOOD)\n"
        "Consumer({'isolation.level': READ_COMMITTED})\n"
        "Consumer({'group.id': 'g'})\n"
        "Consumer({'isolation.level': 'read_uncommitted'})\n"
        "Consumer(elsewhere)\n"
        "Consumer({'isolation.level': 'read_uncommitted'})  # uncommitted on purpose\n"
    )
    lines = [int(offence.split(":")[1]) for offence in _offences_in(probe, "probe.py")]
    assert lines == [5, 6, 7]
