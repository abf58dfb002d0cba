"""The file drop on the real broker: CSV and JSON files in, Avro events out, files moved."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from connectors.filedrop import FileDrop
from connectors.outbox import FileOffsetStore
from connectors.publisher import EventPublisher
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from tests.fixtures.stack import Broker
from tests.fixtures.topics import read_topic
from tests.unit.test_filedrop import life, to_csv

pytestmark = pytest.mark.broker


def test_csv_and_json_files_are_published_rejected_with_reports_and_never_twice(
    broker: Broker, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    drop_dir, offsets = tmp_path / "drop", tmp_path / "offsets.json"
    drop_dir.mkdir()
    publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
    csv_events, json_events, mixed = life(31)[:3], life(32)[:3], life(33)[:3]
    bad = dict(mixed[1], occurred_at="yesterday")
    (drop_dir / "commune.csv").write_text(to_csv(csv_events), encoding="utf-8")
    (drop_dir / "department.json").write_text(json.dumps(json_events, ensure_ascii=False))
    (drop_dir / "mixed.json").write_text(
        "\n".join(json.dumps(e) for e in [mixed[0], bad, mixed[2]])
    )
    # a file still being written: half of it now, the rest after the first scans
    partial = drop_dir / "late.json"
    late = life(34)[:2]
    partial.write_text(json.dumps(late[0]) + "\n")

    drop = FileDrop(drop_dir, publisher, FileOffsetStore(offsets), settle_s=1.0)
    stop = threading.Event()
    thread = threading.Thread(target=drop.run, args=(stop, 0.2), daemon=True)
    try:
        thread.start()
        for _ in range(3):
            time.sleep(0.3)
            with partial.open("a") as out:  # keeps changing: not complete yet
                out.write(" ")
        assert partial.exists()
        with partial.open("a") as out:
            out.write(json.dumps(late[1]) + "\n")
        deadline = time.monotonic() + 30
        while any(drop_dir.glob("*.json")) or any(drop_dir.glob("*.csv")):
            assert time.monotonic() < deadline, sorted(p.name for p in drop_dir.iterdir())
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(10)

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

    # a restart after a crash that left an already processed file in place: not re-published
    (drop_dir / "processed" / "commune.csv").replace(drop_dir / "commune.csv")
    restarted = FileDrop(drop_dir, publisher, FileOffsetStore(offsets), settle_s=0.2)
    deadline = time.monotonic() + 10
    outcomes = []
    while (drop_dir / "commune.csv").exists():
        assert time.monotonic() < deadline
        outcomes += restarted.scan()
        time.sleep(0.1)
    assert [o.already_done for o in outcomes] == [True]
    publisher.close()
    again = read_topic(broker.bootstrap, f"{prefix}dossier.events", len(expected), timeout_s=5)
    assert len(again) == len(expected)
