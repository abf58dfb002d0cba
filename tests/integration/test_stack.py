"""The local stack: clear one-line failures, idempotent up, a clean down, data that persists."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from hub.consumers import READ_COMMITTED
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer, AvroSerializer
from hub.stack.stack import LocalStack, StackConfig
from hub.stack.tools import free_port

ROOT = Path(__file__).resolve().parents[2]


def hub_stack(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", "stack", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ports_args(tmp_path: Path) -> list[str]:
    return [
        "--state-dir", str(tmp_path / "stack"),
        "--kafka-port", str(free_port()),
        "--controller-port", str(free_port()),
        "--registry-port", str(free_port()),
    ]  # fmt: skip


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def our_processes(state_dir: Path) -> list[int]:
    marker = f"@{state_dir.resolve()}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"-Dnghean.hub.stack=" in cmdline and marker in cmdline:
                found.append(int(entry.name))
    return found


def test_a_taken_port_is_one_clear_line_and_a_failure(tmp_path: Path, taken_port: int) -> None:
    result = hub_stack("up", *ports_args(tmp_path), "--kafka-port", str(taken_port))

    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"port {taken_port} for Kafka is already in use" in result.stderr
    assert our_processes(tmp_path / "stack") == []


def test_java_home_pointing_nowhere_is_one_clear_line(tmp_path: Path) -> None:
    result = hub_stack("up", *ports_args(tmp_path), env={"JAVA_HOME": str(tmp_path / "nowhere")})

    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"JAVA_HOME={tmp_path / 'nowhere'} has no bin/java" in result.stderr


def test_an_unresolvable_kafka_version_is_one_clear_line(tmp_path: Path) -> None:
    result = hub_stack(
        "up",
        *ports_args(tmp_path),
        env={"HUB_KAFKA_VERSION": "0.0.404", "HUB_CACHE_DIR": str(tmp_path / "cache")},
    )

    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "cannot resolve org.apache.kafka:kafka_2.13:0.0.404" in result.stderr


@pytest.mark.broker
def test_up_twice_down_and_data_survives_a_restart(tmp_path: Path) -> None:
    config = StackConfig(
        state_dir=tmp_path / "stack",
        kafka_port=free_port(),
        controller_port=free_port(),
        registry_port=free_port(),
    )
    args = [
        "--state-dir", str(config.state_dir),
        "--kafka-port", str(config.kafka_port),
        "--controller-port", str(config.controller_port),
        "--registry-port", str(config.registry_port),
    ]  # fmt: skip
    stack = LocalStack(config)
    schema = {
        "type": "record",
        "name": "Probe",
        "fields": [{"name": "dossier_code", "type": "string"}],
    }
    try:
        first = hub_stack("up", *args)
        assert first.returncode == 0, first.stderr
        pids = sorted(our_processes(config.state_dir))
        assert len(pids) == 2

        again = hub_stack("up", *args)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        assert sorted(our_processes(config.state_dir)) == pids

        registry = SchemaRegistryClient(stack.registry_url)
        serialize = AvroSerializer(registry, "persist-value", schema)
        producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        producer.send("persist", value=serialize({"dossier_code": "kept"})).get(30)
        producer.close()

        down = hub_stack("down", *args)
        assert down.returncode == 0, down.stderr
        assert our_processes(config.state_dir) == []
        assert hub_stack("status", *args).returncode == 3

        restarted = hub_stack("up", *args)
        assert restarted.returncode == 0, restarted.stderr
        consumer = KafkaConsumer(
            "persist",
            bootstrap_servers=stack.bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=10_000,
            isolation_level=READ_COMMITTED,
        )
        values = [m.value for m in consumer]
        consumer.close()
        # The record and the schema its id names both outlived the restart (KafkaSQL storage).
        decode = AvroDeserializer(SchemaRegistryClient(stack.registry_url))
        assert [decode(v) for v in values] == [{"dossier_code": "kept"}]
    finally:
        hub_stack("down", *args)
    assert our_processes(config.state_dir) == []


def test_down_never_stops_a_process_it_did_not_start(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    state.mkdir()
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (state / "kafka.pid").write_text(f"{stranger.pid}\n")  # a stale or forged pid file
        result = hub_stack("down", "--state-dir", str(state))
        assert result.returncode == 0
        assert "nothing of ours was running" in result.stdout
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
