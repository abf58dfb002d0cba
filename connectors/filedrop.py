"""File drop: legacy systems that can only export files of dossier events.

Run it as a connector (``connector.class = "filedrop"``, ``hub connector run --config FILE``,
``--once`` for a batch run that stops when the folder is done;
``connectors/examples/filedrop.toml``). It watches one folder for ``*.csv``, ``*.json`` (a
JSON array of events, or JSON lines: one event per line), ``*.jsonl`` and ``*.ndjson`` files.
Each event is the JSON of ``hub.contract.inbound`` (what the HTTP ingress takes). A CSV file
has a header row with the envelope's columns (``event_id, event_type, occurred_at,
source_system, agency_code, dossier_code``, optionally ``traceparent``) and a ``payload``
column holding the payload as a JSON object; an empty cell is an absent field.

When is a file complete? Names starting with ``.`` or ending in ``.tmp``, ``.part`` or
``.partial`` are never read: the recommended way to drop a file is to write it under such a
name and rename it into place. In any case a file is read only once its size and mtime have
not changed for ``settle_s`` seconds, which also covers writers that write in place.

Processing one file (one ``poll``): every record is parsed and validated; the valid ones go
to the SDK runtime, which publishes them (Avro, keyed by dossier code), waits until Kafka
acknowledged all of them and stores the file's offset (source partition
``file:<name>@<sha256>``, offset ``{"outcome", "published", "rejected", "record"}``) in
``<prefix>hub.connect.offsets``. Only then (``on_committed``) is the file moved: to
``processed/`` when every record was valid, else to ``rejected/`` next to
``<file>.report.json`` listing each rejected record (record number, line, field path, rule,
message; never a submitted value). A file with no valid record (or that cannot be parsed at
all: a broken JSON array, a CSV without the needed columns) publishes nothing and is moved at
once. Invalid records are refused here, in the report: they never reach the dead-letter topic.

Idempotent across restarts, the offsets in Kafka being the truth: a file whose name and hash
have a stored offset was published; found in the folder again (a crash or a full disk before
the move) it is moved to where its offset says, its report written again if it was missing,
and nothing is published again. A crash after the acknowledgement but before the offset was
stored re-publishes the file; the hub deduplicates on ``event_id``.

A full disk (``ENOSPC``) when writing a report or moving a file loses nothing: the file stays
in the folder, one log line names the path and says "no space left", ``health()`` reports
``status: down``, no new file is taken, and the report and move are retried at every poll
until space is freed.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.sdk.base import SourceConnector, SourceRecord
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import RetriableError
from hub.contract.inbound import FieldProblem, InboundDossierEvent, InboundFeedbackEvent

__all__ = [
    "CSV_COLUMNS",
    "DropFolder",
    "FileDropConnector",
    "FileDropSettings",
    "FileOutcome",
    "ParsedFile",
    "ParsedRecord",
    "RecordProblem",
    "file_key",
    "move_file",
    "parse_file",
    "write_report",
]

log = logging.getLogger("connectors.filedrop")

Event = InboundDossierEvent | InboundFeedbackEvent
SUFFIXES: Final = (".csv", ".json", ".jsonl", ".ndjson")
IN_PROGRESS_SUFFIXES: Final = (".tmp", ".part", ".partial", "~")
CSV_COLUMNS: Final = (
    "event_id", "event_type", "occurred_at", "source_system", "agency_code", "dossier_code",
    "payload",
)  # fmt: skip
CSV_OPTIONAL: Final = ("traceparent",)
PROCESSED: Final = "processed"
REJECTED: Final = "rejected"
#: the disk (or the user's quota) is full: wait for space, never give up on the file
_NO_SPACE: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


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
    #: where the file goes, chosen once so that a retried move keeps its report's name
    target: Path | None = None

    def offset(self) -> dict[str, Any]:
        o = self.outcome
        return {"outcome": o.destination, "published": len(self.valid), "rejected": o.rejected}


def _problems_of(record: ParsedRecord, found: list[FieldProblem]) -> list[RecordProblem]:
    return [RecordProblem(record.number, record.line, p.path, p.rule, p.message) for p in found]


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON at ``path`` whole or not at all (a temporary file renamed into
    place), so a disk filling up mid-write never leaves a truncated report behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            out.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
            out.flush()
            os.fsync(out.fileno())  # a full disk shows here on some file systems, not at write
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def move_file(source: Path, target: Path) -> None:
    """Move a finished file out of the drop folder (a rename: same file system)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    source.replace(target)


class DropFolder:
    """The folder side of the file drop: which files are complete, what is in them, and
    putting them away. It publishes nothing: :class:`FileDropConnector` hands the records to
    the SDK runtime. ``done(key)`` is the stored offset of a file, or None."""

    def __init__(
        self,
        folder: Path,
        validate: Callable[[dict[str, Any]], Event | list[FieldProblem]],
        done: Callable[[str], dict[str, Any] | None],
        *,
        settle_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = Path(folder)
        self.validate = validate
        self.done = done
        self.settle_s = settle_s
        self._clock = clock
        self._seen: dict[str, tuple[int, int, float]] = {}  # name -> size, mtime_ns, since
        #: wanted files present at the last look that had not yet held still for settle_s
        self.unsettled = 0

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
        self.unsettled = len(present) - len(ready)
        return [p for _, _, p in sorted(ready)]

    def prepare(self, path: Path) -> Prepared:
        """Read, parse and validate one file (nothing published, nothing moved)."""
        raw = path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        key = file_key(path.name, digest)
        done = self.done(key)
        if done is not None and done.get("outcome") != REJECTED:
            outcome = FileOutcome(path.name, digest, PROCESSED, already_done=True)
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
        if done is not None:
            # published before a crash or a full disk kept it from rejected/: parsed again
            # only to write its report, which may not have been written; the counts are the
            # stored ones, what was actually published
            outcome.already_done = True
            outcome.destination = REJECTED
            outcome.published = int(done.get("published", 0))
            outcome.rejected = int(done.get("rejected", outcome.rejected))
            return Prepared(path, key, outcome, parsed.format, [])
        return Prepared(path, key, outcome, parsed.format, valid)

    def target_of(self, prepared: Prepared) -> Path:
        if prepared.target is None:
            target = self.folder / prepared.outcome.destination / prepared.path.name
            if target.exists():  # the same name dropped again: keep both
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
                target = target.with_name(f"{target.stem}.{stamp}{target.suffix}")
            prepared.target = target
        return prepared.target

    def finish(self, prepared: Prepared) -> FileOutcome:
        """After Kafka acknowledged the valid records and their offset was stored (or when
        there was nothing to publish): the report, then the move. Raises ``OSError`` (a full
        disk) leaving the file in place; calling it again is safe."""
        outcome, path = prepared.outcome, prepared.path
        target = self.target_of(prepared)
        if not outcome.already_done:
            outcome.published = len(prepared.valid)
        if outcome.destination == REJECTED and prepared.format:
            report = target.with_name(f"{target.name}.report.json")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_report(report, outcome.report(prepared.format))
            except OSError as exc:
                exc.filename, exc.filename2 = str(report), None  # name the report, not a temp
                raise
        try:
            move_file(path, target)
        except OSError as exc:
            exc.filename, exc.filename2 = str(path), str(target)
            raise
        self._seen.pop(path.name, None)  # a new file of that name starts afresh
        if outcome.already_done:
            log.info("%s was already published (%s): moved, not published again", path.name,
                     outcome.destination)  # fmt: skip
        else:
            log.info(
                "%s: %d published, %d rejected -> %s/", path.name, outcome.published,
                outcome.rejected, outcome.destination,
            )  # fmt: skip
        return outcome


# --- the connector ------------------------------------------------------------------------------


class FileDropSettings(BaseModel):
    """``settings`` of a file-drop connector."""

    model_config = ConfigDict(extra="forbid")

    directory: Path
    settle_s: float = Field(2.0, ge=0)


@dataclass
class _Stuck:
    """A file whose report or move failed (a full disk): retried at every poll."""

    prepared: Prepared
    error: str


class FileDropConnector(SourceConnector):
    """Folder of exported CSV/JSON files; each moved to processed/ or rejected/ with a report.

    One file per ``poll``: its valid records, each with source partition ``file:<name>@<sha256>``
    (the offset store then remembers the file by name and hash) and offset ``{"record": n,
    "outcome": ...}``. ``on_committed`` writes the report and moves the file. A file with no
    valid record publishes nothing and is moved at once."""

    Settings: ClassVar[type[BaseModel]] = FileDropSettings
    settings: FileDropSettings

    def __init__(
        self,
        config: ConnectorConfig,
        settings: BaseModel | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config, settings)
        self.clock = clock
        self.folder: DropFolder | None = None
        self._pending: dict[str, Prepared] = {}  # published, waiting for on_committed
        self._stuck: dict[str, _Stuck] = {}

    def start(self) -> None:
        from connectors.sdk.runtime import procedure_lookup, validate_event

        lookup = procedure_lookup()

        def validate(data: dict[str, Any]) -> Event | list[FieldProblem]:
            return validate_event(data, procedure_effective_from=lookup)

        self.folder = DropFolder(
            self.settings.directory, validate, self.context.offset,
            settle_s=self.settings.settle_s, clock=self.clock,
        )  # fmt: skip

    def poll(self) -> list[SourceRecord]:
        if self.folder is None:
            raise RuntimeError("poll before start")
        if self._stuck:
            for key, stuck in list(self._stuck.items()):
                if self._finish(stuck.prepared):
                    log.info("file drop: %s put away, space freed", stuck.prepared.path.name)
                    del self._stuck[key]
            if self._stuck:
                return []  # no new file while the last ones cannot be put away
        for path in self.folder.complete_files():
            if any(p.path == path for p in self._pending.values()):
                continue  # published, waiting for on_committed
            try:
                prepared = self.folder.prepare(path)
            except FileNotFoundError:
                continue  # taken away between the listing and the read
            except OSError as exc:
                raise RetriableError(f"file drop: cannot read {path}: {exc}") from exc
            if prepared.outcome.already_done or not prepared.valid:
                if not self._finish(prepared):
                    return []
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
        for key in offsets:
            prepared = self._pending.pop(key, None)
            if prepared is not None:
                self._finish(prepared)

    def _finish(self, prepared: Prepared) -> bool:
        """Put the file away; False (and the file kept for a retry) when the disk refused."""
        assert self.folder is not None
        try:
            self.folder.finish(prepared)
        except OSError as exc:
            stuck = self._stuck.get(prepared.key)
            doing = (
                f"moving {exc.filename} to {exc.filename2}"
                if exc.filename2
                else f"writing {exc.filename or prepared.path}"
            )
            if exc.errno in _NO_SPACE:
                error = f"no space left on device {doing}"
            else:
                error = f"{exc.strerror or type(exc).__name__} {doing}"
            if stuck is None or stuck.error != error:  # one line per file and cause
                o = prepared.outcome
                published = o.published if o.already_done else len(prepared.valid)
                log.error(
                    "file drop: %s; %s stays in %s (%d events already published, not again) "
                    "and is retried until it can be put away",
                    error, prepared.path.name, self.folder.folder, published,
                )  # fmt: skip
            self._stuck[prepared.key] = _Stuck(prepared, error)
            return False
        return True

    def pending(self) -> bool:
        # a file still being written, or one not yet put away: not drained
        unsettled = self.folder.unsettled if self.folder is not None else 0
        return bool(self._stuck or self._pending or unsettled)

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "up" if self.folder is not None and not self._stuck else "down",
            "waiting_files": len(self._pending),
        }
        if self._stuck:
            out["stuck_files"] = sorted(s.prepared.path.name for s in self._stuck.values())
            out["error"] = next(iter(self._stuck.values())).error
        return out
