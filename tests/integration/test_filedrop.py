"""The file drop on the real broker, run by the SDK runtime: CSV and JSON files in, Avro
events out, files moved; then a restart with ``hub connector run --once`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.sdk import parse_config
from connectors.sdk.runtime import ConnectorRuntime
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from tests.fixtures.stack import Broker
from tests.fixtures.topics import read_topic
from tests.unit.test_filedrop import life, to_csv

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]


def test_csv_and_json_files_are_published_rejected_with_reports_and_never_twice(
    broker: Broker, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    drop_dir = tmp_path / "drop"
    drop_dir.mkdir()
    config: dict[str, Any] = {
        "name": "filedrop",
        "connector.class": "filedrop",
        "bootstrap.servers": broker.bootstrap,
        "schema.registry.url": broker.registry_url,
        "topic.prefix": prefix,
        "poll.interval.ms": 200,
        "settings": {"directory": str(drop_dir), "settle_s": 1.0},
    }
    csv_events, json_events, mixed = life(31)[:3], life(32)[:3], life(33)[:3]
    bad = dict(mixed[1], occurred_at="yesterday")
    (drop_dir / "commune.csv").write_text(to_csv(csv_events), encoding="utf-8")
    (drop_dir / "department.json").write_text(json.dumps(json_events, ensure_ascii=False))
    (drop_dir / "mixed.json").write_text(
        "\n".join(json.dumps(e) for e in [mixed[0], bad, mixed[2]])
    )
    # a file still being written: half of it now, the rest after the first polls
    partial = drop_dir / "late.json"
    late = life(34)[:2]
    partial.write_text(json.dumps(late[0]) + "\n")

    runtime = ConnectorRuntime(parse_config(config, "test"))
    runtime.start_thread()
    try:
        for _ in range(3):
            time.sleep(0.3)
            with partial.open("a") as out:  # keeps changing: not complete yet
                out.write(" ")
        assert partial.exists()
        with partial.open("a") as out:
            out.write(json.dumps(late[1]) + "\n")
        deadline = time.monotonic() + 60
        while any(drop_dir.glob("*.json")) or any(drop_dir.glob("*.csv")):
            assert runtime.error is None, runtime.error
            assert time.monotonic() < deadline, sorted(p.name for p in drop_dir.iterdir())
            time.sleep(0.2)
    finally:
        runtime.request_stop()
        runtime.join(60)  # re-raises the connector's failure, if any
    assert runtime.state == "stopped"

    assert sorted(p.name for p in (drop_dir / "processed").iterdir()) == [
        "commune.csv", "department.json", "late.json",
    ]  # fmt: skip
    assert sorted(p.name for p in (drop_dir / "rejected").iterdir()) == [
        "mixed.json", "mixed.json.report.json",
    ]  # fmt: skip
    report = json.loads((drop_dir / "rejected" / "mixed.json.report.json").read_text())
    assert [(p["record"], p["line"], p["path"]) for p in report["problems"]] == [
        (2, 2, "occurred_at")
    ]
    expected = {e["event_id"] for e in [*csv_events, *json_events, mixed[0], mixed[2], *late]}
    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    found = read_topic(broker.bootstrap, f"{prefix}dossier.events", len(expected))
    ids = [str(decode(m.value)["event_id"]) for m in found]
    assert sorted(ids) == sorted(expected)
    per_file = [i for i in ids if i in {e["event_id"] for e in csv_events}]
    assert per_file == [e["event_id"] for e in csv_events]  # in file order

    # a restart after a crash that left an already published file in place, as an operator
    # runs a catch-up: moved by its offset in Kafka, not published again, and the run ends
    (drop_dir / "processed" / "commune.csv").replace(drop_dir / "commune.csv")
    config["settings"]["settle_s"] = 0.2
    config_file = tmp_path / "filedrop.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "hub", "connector", "run", "--config", str(config_file), "--once"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (drop_dir / "commune.csv").exists()
    assert (drop_dir / "processed" / "commune.csv").exists()
    assert "commune.csv was already published (processed)" in done.stderr
    again = read_topic(broker.bootstrap, f"{prefix}dossier.events", len(expected), timeout_s=5)
    assert len(again) == len(expected)
