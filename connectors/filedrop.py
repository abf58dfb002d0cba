"""File drop: legacy systems that can only export files of dossier events.

The connector watches one folder for ``*.csv``, ``*.json`` (a JSON array of events, or JSON
lines: one event per line), ``*.jsonl`` and ``*.ndjson`` files. Each event is the JSON of
``hub.contract.inbound`` (what the HTTP ingress takes). A CSV file has a header row with the
envelope's columns (``event_id, event_type, occurred_at, source_system, agency_code,
dossier_code``, optionally ``traceparent``) and a ``payload`` column holding the payload as
a JSON object; an empty cell is an absent field.

When is a file complete? Names starting with ``.`` or ending in ``.tmp``, ``.part`` or
``.partial`` are never read: the recommended way to drop a file is to write it under such a
name and rename it into place. In any case a file is read only once its size and mtime have
not changed for ``settle_s`` seconds, which also covers writers that write in place.

Processing one file: every record is parsed and validated; the valid ones are published
(Avro, keyed by dossier code) and the connector waits until Kafka acknowledged all of them.
Then the file's name and SHA-256 are recorded in the offset store, and only then is the file
moved: to ``processed/`` when every record was valid, else to ``rejected/`` next to
``<file>.report.json`` listing each rejected record (record number, line, field path, rule,
message; never a submitted value). A file that cannot be parsed at all (a broken JSON array, a
CSV without the needed columns) is rejected whole with nothing published.

Idempotent across restarts: a file whose name and hash are already in the offset store is
moved to where its recorded outcome says, and nothing is published again. A crash after the
acknowledgement but before the store write re-publishes the file; the hub deduplicates on
``event_id``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field

from connectors.cli import add_kafka_arguments
from connectors.outbox import Event, FileOffsetStore, OffsetStore, Sender
from connectors.sdk.base import SourceConnector, SourceRecord
from connectors.sdk.config import ConnectorConfig
from hub.contract.inbound import FieldProblem

__all__ = [
    "CSV_COLUMNS",
    "FileDrop",
    "FileDropConnector",
    "FileDropSettings",
    "FileOutcome",
    "ParsedFile",
    "ParsedRecord",
    "RecordProblem",
    "file_key",
    "main",
    "parse_file",
]

log = logging.getLogger("connectors.filedrop")

SUFFIXES: Final = (".csv", ".json", ".jsonl", ".ndjson")
IN_PROGRESS_SUFFIXES: Final = (".tmp", ".part", ".partial", "~")
CSV_COLUMNS: Final = (
    "event_id", "event_type", "occurred_at", "source_system", "agency_code", "dossier_code",
    "payload",
)  # fmt: skip
CSV_OPTIONAL: Final = ("traceparent",)
PROCESSED: Final = "processed"
REJECTED: Final = "rejected"


@dataclass(frozen=True)
class RecordProblem:
    """One thing wrong with one record of a file (record 0: the file as a whole)."""

    record: int
    line: int | None
    path: str
    rule: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"record": self.record, "line": self.line, "path": self.path, "rule": self.rule,
                "message": self.message}  # fmt: skip


@dataclass(frozen=True)
class ParsedRecord:
    number: int  # 1-based position in the file
    line: int | None  # first line of the record
    data: dict[str, Any] | None  # None when it could not be parsed (see problems)
    problems: tuple[RecordProblem, ...] = ()


@dataclass
class ParsedFile:
    format: Literal["csv", "json-array", "json-lines"]
    records: list[ParsedRecord] = field(default_factory=list)
    #: problems with the file as a whole: nothing in it is published
    file_problems: list[RecordProblem] = field(default_factory=list)


def _decode(raw: bytes) -> str | RecordProblem:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return RecordProblem(0, None, "", "encoding", f"not UTF-8 (invalid byte at {exc.start})")


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _json_record(number: int, line: int, value: object) -> ParsedRecord:
    if isinstance(value, dict):
        return ParsedRecord(number, line, value)
    problem = RecordProblem(number, line, "", "type", "expected a JSON object")
    return ParsedRecord(number, line, None, (problem,))


def _parse_json_array(text: str, start: int) -> ParsedFile:
    out = ParsedFile("json-array")
    decoder = json.JSONDecoder()
    i = _skip_ws(text, start + 1)
    if i < len(text) and text[i] == "]":
        return out
    number = 0
    try:
        while True:
            value, end = decoder.raw_decode(text, i)
            number += 1
            out.records.append(_json_record(number, _line_of(text, i), value))
            i = _skip_ws(text, end)
            if i < len(text) and text[i] == ",":
                i = _skip_ws(text, i + 1)
                continue
            if i < len(text) and text[i] == "]":
                break
            raise json.JSONDecodeError("expected ',' or ']'", text, i)
    except json.JSONDecodeError as exc:
        out.file_problems.append(
            RecordProblem(number + 1, exc.lineno, "", "json",
                          f"{exc.msg} at line {exc.lineno} column {exc.colno}")
        )  # fmt: skip
        return out
    if _skip_ws(text, i + 1) != len(text):
        out.file_problems.append(
            RecordProblem(0, _line_of(text, i + 1), "", "json", "text after the array")
        )
    return out


def _parse_json_lines(text: str) -> ParsedFile:
    out = ParsedFile("json-lines")
    number = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        number += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problem = RecordProblem(number, line_no, "", "json", f"{exc.msg} at column {exc.colno}")
            out.records.append(ParsedRecord(number, line_no, None, (problem,)))
            continue
        out.records.append(_json_record(number, line_no, value))
    return out


def _parse_csv(text: str) -> ParsedFile:
    out = ParsedFile("csv")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return out
    except csv.Error as exc:
        out.file_problems.append(RecordProblem(0, 1, "", "csv", str(exc)))
        return out
    names = [h.strip() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in names]
    unknown = [n for n in names if n not in CSV_COLUMNS and n not in CSV_OPTIONAL]
    for column in missing:
        out.file_problems.append(RecordProblem(0, 1, column, "missing", "column missing"))
    for column in unknown:
        out.file_problems.append(RecordProblem(0, 1, column[:64], "extra", "unknown column"))
    if len(set(names)) != len(names):
        out.file_problems.append(RecordProblem(0, 1, "", "duplicate", "a column appears twice"))
    if out.file_problems:
        return out
    number = 0
    line = reader.line_num + 1
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            number += 1
            if len(row) != len(names):
                problem = RecordProblem(
                    number, start, "", "columns", f"{len(row)} cells for {len(names)} columns"
                )
                out.records.append(ParsedRecord(number, start, None, (problem,)))
                continue
            data: dict[str, Any] = {}
            problems: list[RecordProblem] = []
            for name, cell in zip(names, row, strict=True):
                if cell == "":
                    continue
                if name == "payload":
                    try:
                        data["payload"] = json.loads(cell)
                    except json.JSONDecodeError as exc:
                        problems.append(
                            RecordProblem(number, start, "payload", "json",
                                          f"{exc.msg} at column {exc.colno}")
                        )  # fmt: skip
                else:
                    data[name] = cell
            if problems:
                out.records.append(ParsedRecord(number, start, None, tuple(problems)))
            else:
                out.records.append(ParsedRecord(number, start, data))
    except csv.Error as exc:
        out.file_problems.append(RecordProblem(number + 1, line, "", "csv", str(exc)))
    return out


def parse_file(name: str, raw: bytes) -> ParsedFile:
    """The records of one dropped file (pure: no I/O)."""
    text = _decode(raw)
    is_csv = name.lower().endswith(".csv")
    if isinstance(text, RecordProblem):
        out = ParsedFile("csv" if is_csv else "json-lines")
        out.file_problems.append(text)
        return out
    if is_csv:
        return _parse_csv(text)
    start = _skip_ws(text, 0)
    if start < len(text) and text[start] == "[":
        return _parse_json_array(text, start)
    return _parse_json_lines(text)


def file_key(name: str, sha256: str) -> str:
    """The offset-store key of one file: its name and content hash."""
    return f"file:{name}@{sha256}"


@dataclass
class FileOutcome:
    name: str
    sha256: str
    destination: Literal["processed", "rejected"]
    records: int = 0
    published: int = 0
    rejected: int = 0
    already_done: bool = False
    problems: list[RecordProblem] = field(default_factory=list)

    def report(self, parsed_format: str) -> dict[str, Any]:
        return {
            "file": self.name,
            "sha256": self.sha256,
            "format": parsed_format,
            "records": self.records,
            "published": self.published,
            "rejected": self.rejected,
            "problems": [p.as_json() for p in self.problems],
            "processed_at": datetime.now(UTC).isoformat(),
        }


@dataclass
class Prepared:
    """One parsed and validated file, before anything is published or moved."""

    path: Path
    key: str
    outcome: FileOutcome
    format: str
    valid: list[tuple[ParsedRecord, Event]]

    def offset(self) -> dict[str, Any]:
        o = self.outcome
        return {"outcome": o.destination, "published": len(self.valid), "rejected": o.rejected}


def _problems_of(record: ParsedRecord, found: list[FieldProblem]) -> list[RecordProblem]:
    return [RecordProblem(record.number, record.line, p.path, p.rule, p.message) for p in found]


class FileDrop:
    """Watches ``folder``; :meth:`scan` processes every complete file once."""

    def __init__(
        self,
        folder: Path,
        publisher: Sender | None,
        offsets: OffsetStore | None,
        *,
        validate: Callable[[dict[str, Any]], Event | list[FieldProblem]] | None = None,
        settle_s: float = 2.0,
        ack_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = Path(folder)
        self.publisher = publisher
        self.offsets = offsets
        if validate is None:
            if publisher is None:
                raise ValueError("give a publisher or a validate function")
            validate = publisher.validate
        self.validate = validate
        self.settle_s = settle_s
        self.ack_timeout_s = ack_timeout_s
        self._clock = clock
        self._seen: dict[str, tuple[int, int, float]] = {}  # name -> size, mtime_ns, since
        for sub in (PROCESSED, REJECTED):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    @staticmethod
    def wanted(name: str) -> bool:
        lower = name.lower()
        return (
            not name.startswith(".")
            and lower.endswith(SUFFIXES)
            and not lower.endswith(IN_PROGRESS_SUFFIXES)
        )

    def complete_files(self) -> list[Path]:
        """Files whose size and mtime held still for ``settle_s``, oldest first."""
        now = self._clock()
        ready: list[tuple[int, str, Path]] = []
        present: set[str] = set()
        for path in self.folder.iterdir():
            if not path.is_file() or not self.wanted(path.name):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            present.add(path.name)
            seen = self._seen.get(path.name)
            if seen is None or seen[:2] != (st.st_size, st.st_mtime_ns):
                self._seen[path.name] = (st.st_size, st.st_mtime_ns, now)
                continue
            if now - seen[2] >= self.settle_s:
                ready.append((st.st_mtime_ns, path.name, path))
        self._seen = {k: v for k, v in self._seen.items() if k in present}
        return [p for _, _, p in sorted(ready)]

    def scan(self) -> list[FileOutcome]:
        """Process every complete file; raises (KafkaError…) when Kafka did not acknowledge,
        leaving that file in place for the next scan."""
        outcomes = []
        for path in self.complete_files():
            outcomes.append(self.process(path))
            self._seen.pop(path.name, None)
        return outcomes

    def prepare(self, path: Path) -> Prepared:
        """Read, parse and validate one file (no Kafka, nothing moved)."""
        raw = path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        key = file_key(path.name, digest)
        done = self.offsets.get(key) if self.offsets is not None else None
        if done is not None:
            destination: Literal["processed", "rejected"] = (
                REJECTED if done.get("outcome") == REJECTED else PROCESSED
            )
            outcome = FileOutcome(path.name, digest, destination, already_done=True)
            return Prepared(path, key, outcome, "", [])
        parsed = parse_file(path.name, raw)
        outcome = FileOutcome(path.name, digest, PROCESSED, records=len(parsed.records))
        outcome.problems.extend(parsed.file_problems)
        valid: list[tuple[ParsedRecord, Event]] = []
        if not parsed.file_problems:
            for record in parsed.records:
                if record.data is None:
                    outcome.problems.extend(record.problems)
                    outcome.rejected += 1
                    continue
                result = self.validate(record.data)
                if isinstance(result, list):
                    outcome.problems.extend(_problems_of(record, result))
                    outcome.rejected += 1
                    continue
                valid.append((record, result))
        else:
            outcome.rejected = len(parsed.records)
        if outcome.problems:
            outcome.destination = REJECTED
        return Prepared(path, key, outcome, parsed.format, valid)

    def finish(self, prepared: Prepared, *, store: bool = True) -> FileOutcome:
        """After Kafka acknowledged the valid records: the report, the offset, the move."""
        outcome, path = prepared.outcome, prepared.path
        if outcome.already_done:
            self._move(path, outcome.destination)
            log.info("%s was already processed (%s): moved, not published again", path.name,
                     outcome.destination)  # fmt: skip
            return outcome
        outcome.published = len(prepared.valid)
        if outcome.destination == REJECTED:
            report = self.folder / REJECTED / f"{path.name}.report.json"
            report.write_text(
                json.dumps(outcome.report(prepared.format), ensure_ascii=False, indent=2) + "\n",
                encoding="utf-8",
            )
        if store and self.offsets is not None:
            self.offsets.put(prepared.key, prepared.offset())
        self._move(path, outcome.destination)
        log.info(
            "%s: %d published, %d rejected -> %s/", path.name, outcome.published,
            outcome.rejected, outcome.destination,
        )  # fmt: skip
        return outcome

    def process(self, path: Path) -> FileOutcome:
        """Prepare, publish the valid records and wait for Kafka, finish."""
        prepared = self.prepare(path)
        if self.publisher is None:
            raise RuntimeError("FileDrop.process needs a publisher")
        futures = [self.publisher.send_async(event) for _, event in prepared.valid]
        for future in futures:
            future.get(timeout=self.ack_timeout_s)
        return self.finish(prepared)

    def _move(self, path: Path, destination: str) -> Path:
        target = self.folder / destination / path.name
        if target.exists():  # the same name dropped again: keep both
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            target = target.with_name(f"{target.stem}.{stamp}{target.suffix}")
        return path.replace(target)

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Scan every ``interval_s`` until ``stop``; a scan that failed (Kafka did not
        acknowledge) leaves its file in place and is retried with capped backoff."""
        failures = 0
        while not stop.is_set():
            try:
                self.scan()
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(30.0, interval_s * 2 ** min(failures, 6))
                log.warning("file drop: %s: %s; retrying in %.1fs", type(exc).__name__, exc, delay)
                stop.wait(delay)
                continue
            stop.wait(interval_s)


# --- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from hub.settings import HubSettings

    hub = HubSettings()
    parser = argparse.ArgumentParser(
        prog="python -m connectors.filedrop",
        description="Publish the dossier events of CSV/JSON files dropped in a folder; move "
        "each file to processed/ or rejected/ (with a report) once Kafka acknowledged.",
    )
    parser.add_argument("folder", type=Path, help="the drop folder")
    parser.add_argument("--offsets-file", type=Path, required=True, help="offsets JSON file")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds a file must be still")
    parser.add_argument("--interval", type=float, default=1.0, help="scan period, seconds")
    add_kafka_arguments(parser, hub)
    parser.add_argument("-l", "--log-level", default="info")
    return parser


def main(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    from connectors.publisher import EventPublisher

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    publisher = EventPublisher(
        args.bootstrap_server, args.registry_url, topic_prefix=args.topic_prefix,
        client_id="filedrop",
    )  # fmt: skip
    drop = FileDrop(
        args.folder, publisher, FileOffsetStore(args.offsets_file), settle_s=args.settle
    )
    stopping = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
    try:
        drop.run(stopping, args.interval)
    except KafkaError as exc:
        print(f"filedrop: stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        publisher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --- as an SDK connector ------------------------------------------------------------------------


class FileDropSettings(BaseModel):
    """``settings`` of a file-drop connector."""

    model_config = ConfigDict(extra="forbid")

    directory: Path
    settle_s: float = Field(2.0, ge=0)


class FileDropConnector(SourceConnector):
    """Folder of exported CSV/JSON files; each moved to processed/ or rejected/ with a report.

    One file per ``poll``: its valid records, each with source partition ``file:<name>@<sha256>``
    (the offset store then remembers the file by name and hash) and offset ``{"record": n,
    "outcome": ...}``. ``on_committed`` writes the report and moves the file. A file with no
    valid record publishes nothing and is moved at once."""

    Settings: ClassVar[type[BaseModel]] = FileDropSettings
    settings: FileDropSettings

    def __init__(self, config: ConnectorConfig, settings: BaseModel | None = None) -> None:
        super().__init__(config, settings)
        self.drop: FileDrop | None = None
        self._pending: dict[str, Prepared] = {}

    def start(self) -> None:
        from connectors.sdk.runtime import procedure_lookup, validate_event

        lookup = procedure_lookup()

        def validate(data: dict[str, Any]) -> Event | list[FieldProblem]:
            return validate_event(data, procedure_effective_from=lookup)

        self.drop = FileDrop(
            self.settings.directory, None, _ContextOffsets(self), validate=validate,
            settle_s=self.settings.settle_s,
        )  # fmt: skip

    def poll(self) -> list[SourceRecord]:
        if self.drop is None:
            raise RuntimeError("poll before start")
        for path in self.drop.complete_files():
            if any(p.path == path for p in self._pending.values()):
                continue  # published, waiting for on_committed
            prepared = self.drop.prepare(path)
            if prepared.outcome.already_done or not prepared.valid:
                self.drop.finish(prepared, store=False)
                continue
            self._pending[prepared.key] = prepared
            offset = prepared.offset()
            return [
                SourceRecord(
                    value=record.data or {},
                    source_partition=prepared.key,
                    source_offset={**offset, "record": record.number},
                )
                for record, _ in prepared.valid
            ]
        return []

    def on_committed(self, offsets: Mapping[str, dict[str, Any]]) -> None:
        if self.drop is None:
            return
        for key in offsets:
            prepared = self._pending.pop(key, None)
            if prepared is not None:
                self.drop.finish(prepared, store=False)

    def health(self) -> dict[str, Any]:
        return {"status": "up" if self.drop is not None else "down",
                "waiting_files": len(self._pending)}  # fmt: skip


class _ContextOffsets:
    """The runtime's stored offsets as an :class:`OffsetStore` (reads only: the runtime
    writes them when it commits the records)."""

    def __init__(self, connector: SourceConnector) -> None:
        self.connector = connector

    def get(self, key: str) -> dict[str, Any] | None:
        return self.connector.context.offset(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        raise RuntimeError("the SDK runtime stores source offsets")
