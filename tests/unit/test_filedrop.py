"""The file drop without Kafka: parsing, completeness, reports, idempotency."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.filedrop import CSV_COLUMNS, FileDrop, parse_file
from connectors.outbox import MemoryOffsetStore
from connectors.scenarios import VN, dossier_code, dossier_life
from tests.unit.test_outbox import FakePublisher

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


def scan_twice(drop: FileDrop, clock: Clock, settle: float = 1.0) -> list[Any]:
    assert drop.scan() == []  # first sighting
    clock.t += settle
    return drop.scan()


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


def test_files_are_read_once_complete_and_moved_to_processed(tmp_path: Path) -> None:
    clock = Clock()
    publisher = FakePublisher()
    drop = FileDrop(tmp_path, publisher, MemoryOffsetStore(), settle_s=1.0, clock=clock)
    evs = life(2)
    (tmp_path / ".export.csv.tmp").write_text(to_csv(evs[:2]))  # in progress: never read
    growing = tmp_path / "growing.json"
    growing.write_text(json.dumps(evs[0]) + "\n")
    assert drop.scan() == []
    clock.t += 0.5
    with growing.open("a") as out:  # still being written: the clock starts again
        out.write(json.dumps(evs[1]) + "\n")
    clock.t += 0.6
    assert drop.scan() == []
    clock.t += 1.0
    [outcome] = drop.scan()
    assert (outcome.name, outcome.published, outcome.destination) == (
        "growing.json",
        2,
        "processed",
    )
    assert (tmp_path / "processed" / "growing.json").exists()
    assert not growing.exists()
    assert [str(e.event_id) for e in publisher.sent] == [evs[0]["event_id"], evs[1]["event_id"]]
    assert (tmp_path / ".export.csv.tmp").exists()


def test_a_file_with_bad_rows_is_rejected_with_a_report_and_good_rows_published(
    tmp_path: Path,
) -> None:
    clock = Clock()
    publisher = FakePublisher()
    drop = FileDrop(tmp_path, publisher, MemoryOffsetStore(), settle_s=1.0, clock=clock)
    evs = life(3)[:3]
    bad = dict(evs[1], payload=dict(evs[1]["payload"], step_no=0))
    bad_agency = dict(evs[2], agency_code="Nguyễn Văn An")  # a value that must not be echoed
    (tmp_path / "mixed.csv").write_text(to_csv([evs[0], bad, bad_agency]))
    [outcome] = scan_twice(drop, clock)
    assert (outcome.published, outcome.rejected, outcome.destination) == (1, 2, "rejected")
    assert (tmp_path / "rejected" / "mixed.csv").exists()
    report_text = (tmp_path / "rejected" / "mixed.csv.report.json").read_text()
    report = json.loads(report_text)
    assert report["records"] == 3 and report["published"] == 1 and report["rejected"] == 2
    assert {(p["record"], p["line"], p["path"]) for p in report["problems"]} >= {
        (2, 3, "payload.step_no"),
        (3, 4, "agency_code"),
    }
    assert "Nguyễn" not in report_text
    assert [str(e.event_id) for e in publisher.sent] == [evs[0]["event_id"]]


def test_a_file_already_processed_is_not_published_again(tmp_path: Path) -> None:
    clock = Clock()
    offsets = MemoryOffsetStore()
    publisher = FakePublisher()
    evs = life(4)[:2]
    content = json.dumps(evs)
    (tmp_path / "day.json").write_text(content)
    drop = FileDrop(tmp_path, publisher, offsets, settle_s=1.0, clock=clock)
    [first] = scan_twice(drop, clock)
    assert first.published == 2
    # a crash after the offset was stored but before the move: the file is back in place
    (tmp_path / "processed" / "day.json").replace(tmp_path / "day.json")
    restarted = FileDrop(tmp_path, publisher, offsets, settle_s=1.0, clock=clock)
    [again] = scan_twice(restarted, clock)
    assert again.already_done and again.published == 0
    assert len(publisher.sent) == 2
    assert not (tmp_path / "day.json").exists()
    # the same name with new content is a new file
    (tmp_path / "day.json").write_text(json.dumps(life(5)[:1]))
    [third] = scan_twice(restarted, clock)
    assert third.published == 1 and not third.already_done
    assert len(list((tmp_path / "processed").iterdir())) == 2


def test_kafka_not_acknowledging_leaves_the_file_in_place(tmp_path: Path) -> None:
    clock = Clock()
    publisher = FakePublisher()
    publisher.fail = True
    offsets = MemoryOffsetStore()
    drop = FileDrop(tmp_path, publisher, offsets, settle_s=1.0, clock=clock)
    (tmp_path / "x.json").write_text(json.dumps(life(6)[:1]))
    drop.scan()
    clock.t += 1
    with pytest.raises(TimeoutError):
        drop.scan()
    assert (tmp_path / "x.json").exists() and offsets.data == {}
