"""The file drop without Kafka: parsing, completeness, reports, idempotency, a full disk.
The connector runs through the real SDK runtime; ``tests/fixtures/fake_kafka.py`` stands in
for the broker."""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors import filedrop
from connectors.filedrop import CSV_COLUMNS, FileDropConnector, parse_file
from connectors.scenarios import VN, dossier_code, dossier_life
from connectors.sdk import ConnectorFailedError, SourceRecord
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.runtime import ConnectorRuntime
from tests.fixtures.fake_kafka import FakeKafka, fake_kafka

__all__ = ["fake_kafka"]  # the fixture, used by name

JUSTICE = "000.00.03.H40"
CRIMINAL_RECORD = "2.000488"


def life(n: int) -> list[dict[str, Any]]:
    start = datetime.now(VN) - timedelta(days=1)
    return dossier_life(
        dossier_code(JUSTICE, start, 200 + n), JUSTICE, CRIMINAL_RECORD, start, rating=None
    )


def to_csv(evs: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in evs:
        writer.writerow(
            [*(e[c] for c in CSV_COLUMNS[:-1]), json.dumps(e["payload"], ensure_ascii=False)]
        )
    return out.getvalue()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class CountingDrop(FileDropConnector):
    """Counts polls, so a test can wait until the runtime looked at the folder again."""

    polls = 0

    def poll(self) -> list[SourceRecord]:
        found = super().poll()
        self.polls += 1
        return found


def config(kafka: FakeKafka, folder: Path, settle_s: float = 0.0, **extra: Any) -> ConnectorConfig:
    return kafka.config(
        FileDropConnector, {"directory": str(folder), "settle_s": settle_s}, **extra
    )


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def look_again(runtime: ConnectorRuntime, connector: CountingDrop) -> None:
    """Wait for two more polls: the folder was looked at after whatever the test just did."""
    want = connector.polls + 2
    wait_for(lambda: connector.polls >= want or runtime.error is not None, "two more polls")
    assert runtime.error is None, runtime.error


def test_parsing_csv_json_arrays_and_json_lines() -> None:
    evs = life(1)[:3]
    parsed = parse_file("a.csv", to_csv(evs).encode())
    assert [r.data for r in parsed.records] == evs
    assert [r.line for r in parsed.records] == [2, 3, 4]

    array = json.dumps(evs, indent=2, ensure_ascii=False).encode()
    parsed = parse_file("a.json", array)
    assert parsed.format == "json-array" and [r.data for r in parsed.records] == evs
    assert parsed.records[0].line == 2

    lines = "\n".join(json.dumps(e) for e in evs) + "\n\n{broken\n"
    parsed = parse_file("a.json", lines.encode())
    assert parsed.format == "json-lines"
    assert [r.data for r in parsed.records[:3]] == evs
    assert parsed.records[3].data is None and parsed.records[3].problems[0].line == 5

    assert parse_file("a.json", b"[1, {]").file_problems[0].rule == "json"
    header_only = parse_file("b.csv", b"event_id,payload\n")
    assert {p.path for p in header_only.file_problems} >= {"event_type", "dossier_code"}
    assert parse_file("c.json", b"\xff\xfe").file_problems[0].rule == "encoding"


def test_files_are_read_once_complete_and_moved_to_processed(
    tmp_path: Path, fake_kafka: FakeKafka
) -> None:
    clock = Clock()
    cfg = config(fake_kafka, tmp_path, settle_s=1.0)
    connector = CountingDrop(cfg, clock=clock)
    runtime = fake_kafka.runtime(cfg, connector, once=False)
    evs = life(2)
    (tmp_path / ".export.csv.tmp").write_text(to_csv(evs[:2]))  # in progress: never read
    growing = tmp_path / "growing.json"
    growing.write_text(json.dumps(evs[0]) + "\n")
    runtime.start_thread()
    try:
        look_again(runtime, connector)
        clock.t += 0.5
        with growing.open("a") as out:  # still being written: the clock starts again
            out.write(json.dumps(evs[1]) + "\n")
        look_again(runtime, connector)
        clock.t += 0.6
        look_again(runtime, connector)
        assert growing.exists() and fake_kafka.events == []
        clock.t += 1.0
        wait_for(lambda: (tmp_path / "processed" / "growing.json").exists(), "the move")
    finally:
        runtime.request_stop()
        runtime.join(timeout=30)
    assert not growing.exists()
    assert fake_kafka.event_ids == [evs[0]["event_id"], evs[1]["event_id"]]
    [key] = fake_kafka.stored("under-test")
    assert key.startswith("file:growing.json@")
    assert (tmp_path / ".export.csv.tmp").exists()


def test_a_file_with_bad_rows_is_rejected_with_a_report_and_good_rows_published(
    tmp_path: Path, fake_kafka: FakeKafka
) -> None:
    evs = life(3)[:3]
    bad = dict(evs[1], payload=dict(evs[1]["payload"], step_no=0))
    bad_agency = dict(evs[2], agency_code="Nguyễn Văn An")  # a value that must not be echoed
    (tmp_path / "mixed.csv").write_text(to_csv([evs[0], bad, bad_agency]))
    fake_kafka.run_once(config(fake_kafka, tmp_path, errors_tolerance="all"))
    assert (tmp_path / "rejected" / "mixed.csv").exists()
    assert not (tmp_path / "mixed.csv").exists()
    report_text = (tmp_path / "rejected" / "mixed.csv.report.json").read_text()
    report = json.loads(report_text)
    assert report["records"] == 3 and report["published"] == 1 and report["rejected"] == 2
    assert {(p["record"], p["line"], p["path"]) for p in report["problems"]} >= {
        (2, 3, "payload.step_no"),
        (3, 4, "agency_code"),
    }
    assert "Nguyễn" not in report_text
    assert fake_kafka.event_ids == [evs[0]["event_id"]]
    assert fake_kafka.written == []  # refused in the report, not dead-lettered
    [offset] = fake_kafka.stored("under-test").values()
    assert (offset["outcome"], offset["published"], offset["rejected"]) == ("rejected", 1, 2)


def test_a_file_already_processed_is_not_published_again(
    tmp_path: Path, fake_kafka: FakeKafka
) -> None:
    evs = life(4)[:2]
    (tmp_path / "day.json").write_text(json.dumps(evs))
    cfg = config(fake_kafka, tmp_path)
    fake_kafka.run_once(cfg)
    assert len(fake_kafka.events) == 2
    # a crash after the offset was stored but before the move: the file is back in place
    (tmp_path / "processed" / "day.json").replace(tmp_path / "day.json")
    fake_kafka.run_once(cfg)  # a restart
    assert len(fake_kafka.events) == 2
    assert not (tmp_path / "day.json").exists()
    assert [p.name for p in (tmp_path / "processed").iterdir()] == ["day.json"]
    # the same name with new content is a new file
    (tmp_path / "day.json").write_text(json.dumps(life(5)[:1]))
    fake_kafka.run_once(cfg)
    assert len(fake_kafka.events) == 3
    assert len(list((tmp_path / "processed").iterdir())) == 2


def test_kafka_not_acknowledging_leaves_the_file_in_place(
    tmp_path: Path, fake_kafka: FakeKafka
) -> None:
    fake_kafka.down = True
    (tmp_path / "x.json").write_text(json.dumps(life(6)[:1]))
    with pytest.raises(ConnectorFailedError, match="did not acknowledge"):
        fake_kafka.run_once(config(fake_kafka, tmp_path))
    assert (tmp_path / "x.json").exists() and fake_kafka.offsets == {}
    assert not (tmp_path / "processed" / "x.json").exists()


# --- a full disk ----------------------------------------------------------------------------


class Disk:
    """Stands in for write_report / move_file: raises ENOSPC while ``full``."""

    def __init__(self, real: Callable[..., None]) -> None:
        self.real = real
        self.full = True
        self.refused = 0

    def __call__(self, *args: Any) -> None:
        if self.full:
            self.refused += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(*args)


def test_a_full_disk_writing_the_report_loses_nothing_and_publishes_nothing_twice(
    tmp_path: Path, fake_kafka: FakeKafka, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    disk = Disk(filedrop.write_report)
    monkeypatch.setattr(filedrop, "write_report", disk)
    evs = life(7)[:3]
    bad = dict(evs[1], occurred_at="yesterday")
    (tmp_path / "mixed.json").write_text("\n".join(json.dumps(e) for e in [evs[0], bad, evs[2]]))
    after, later = life(8)[:1], life(11)[:1]
    (tmp_path / "next.json").write_text(json.dumps(after))
    cfg = config(fake_kafka, tmp_path)
    connector = CountingDrop(cfg)
    runtime = fake_kafka.runtime(cfg, connector, once=True)  # --once waits for the space
    caplog.set_level(logging.INFO, "connectors.filedrop")
    runtime.start_thread()
    try:
        wait_for(lambda: disk.refused >= 3, "three refused report writes")
        late = tmp_path / "late.json"  # arrives now, with an older mtime: would be taken first
        late.write_text(json.dumps(later))
        os.utime(late, (1, 1))
        look_again(runtime, connector)
        look_again(runtime, connector)
        health = runtime.health()
        assert health["status"] == "down"
        assert "no space left" in health["error"] and "mixed.json.report.json" in health["error"]
        assert (tmp_path / "mixed.json").exists()  # kept until it can be put away
        assert (tmp_path / "next.json").exists()  # no new file while the disk is full
        assert late.exists()
        assert fake_kafka.event_ids == [evs[0]["event_id"], evs[2]["event_id"]]
        assert runtime.state == "running"
    finally:
        disk.full = False  # space freed
        runtime.join(timeout=30)
    assert runtime.state == "stopped"
    assert (tmp_path / "rejected" / "mixed.json").exists()
    report = json.loads((tmp_path / "rejected" / "mixed.json.report.json").read_text())
    assert [(p["record"], p["path"]) for p in report["problems"]] == [(2, "occurred_at")]
    assert (tmp_path / "processed" / "next.json").exists()
    assert (tmp_path / "processed" / "late.json").exists()
    # each event once, however many times the report was retried
    ids = fake_kafka.event_ids
    assert ids[:2] == [evs[0]["event_id"], evs[2]["event_id"]]
    assert sorted(ids[2:]) == sorted([later[0]["event_id"], after[0]["event_id"]])
    full = [r.getMessage() for r in caplog.records if "no space left" in r.getMessage()]
    assert len(full) == 1, full  # one clear line, not one per retry
    assert str(tmp_path / "rejected" / "mixed.json.report.json") in full[0]
    assert not list((tmp_path / "rejected").glob(".*"))  # no half-written report left


def test_a_full_disk_then_a_restart_neither_republishes_nor_loses_the_report(
    tmp_path: Path, fake_kafka: FakeKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(filedrop.move_file)
    monkeypatch.setattr(filedrop, "move_file", disk)
    good, mixed = life(9)[:2], life(10)[:2]
    (tmp_path / "mixed.json").write_text(json.dumps([mixed[0], dict(mixed[1], event_id="x")]))
    (tmp_path / "good.json").write_text(json.dumps(good))
    os.utime(tmp_path / "mixed.json", (1, 1))  # the older: taken first
    cfg = config(fake_kafka, tmp_path)
    connector = CountingDrop(cfg)
    runtime = fake_kafka.runtime(cfg, connector, once=False)
    runtime.start_thread()
    try:
        wait_for(lambda: disk.refused >= 2, "a refused move")
        assert runtime.health()["status"] == "down"
    finally:
        runtime.request_stop()  # stopped (or crashed) before space was freed
        runtime.join(timeout=30)
    # mixed.json's good record is published and its offset stored, its move refused, and
    # good.json not taken while mixed.json is stuck
    assert fake_kafka.event_ids == [mixed[0]["event_id"]]
    assert {p.name for p in tmp_path.glob("*.json")} == {"good.json", "mixed.json"}

    # space freed, restarted: the offsets in Kafka say what was published
    disk.full = False
    # the report was written before the move failed; as if the disk had refused it too
    (tmp_path / "rejected" / "mixed.json.report.json").unlink()
    fake_kafka.run_once(cfg)
    # nothing twice: mixed.json is known by its name and hash, only good.json is new
    assert fake_kafka.event_ids == [mixed[0]["event_id"], good[0]["event_id"], good[1]["event_id"]]
    assert [p.name for p in (tmp_path / "processed").iterdir()] == ["good.json"]
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == [
        "mixed.json", "mixed.json.report.json",
    ]  # fmt: skip
    report = json.loads((tmp_path / "rejected" / "mixed.json.report.json").read_text())
    assert (report["published"], report["rejected"]) == (1, 1)
    assert [(p["record"], p["path"]) for p in report["problems"]] == [(2, "event_id")]
