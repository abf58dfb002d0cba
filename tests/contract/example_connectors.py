"""Test-only connectors that prove the contract suite itself: a JSON-lines file source and a
JSON-lines file sink. Small on purpose; the real ones live in ``connectors/``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from connectors.sdk import PermanentError, SinkConnector, SinkRecord, SourceConnector, SourceRecord


class LinesSourceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    directory: Path
    batch_size: int = Field(100, ge=1)


class LinesSource(SourceConnector):
    """Reads one event per line from ``*.jsonl`` files in a directory (test only)."""

    Settings: ClassVar[type[BaseModel]] = LinesSourceSettings
    settings: LinesSourceSettings

    def start(self) -> None:
        # resume: each file's stored offset is the number of lines already published
        self._lines = {p: int(o.get("line", 0)) for p, o in self.context.offsets().items()}
        self.committed_calls: list[dict[str, Any]] = []

    def poll(self) -> list[SourceRecord]:
        out: list[SourceRecord] = []
        for path in sorted(self.settings.directory.glob("*.jsonl")):
            done = self._lines.get(path.name, 0)
            lines = path.read_bytes().splitlines()
            for number, raw in enumerate(lines[done:], start=done + 1):
                out.append(SourceRecord(json.loads(raw), path.name, {"line": number}, raw=raw))
                self._lines[path.name] = number
                if len(out) >= self.settings.batch_size:
                    return out
        return out

    def on_committed(self, offsets: Mapping[str, dict[str, Any]]) -> None:
        self.committed_calls.append(dict(offsets))


class LinesSinkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out_file: Path


class LinesSink(SinkConnector):
    """Appends each record's ``id`` to a file; a record with ``"bad": true`` is refused."""

    Settings: ClassVar[type[BaseModel]] = LinesSinkSettings
    settings: LinesSinkSettings

    def put(self, record: SinkRecord) -> None:
        if not isinstance(record.value, dict) or record.value.get("bad"):
            raise PermanentError("bad-record", "the record is marked bad")
        with self.settings.out_file.open("a", encoding="utf-8") as out:
            out.write(f"{record.value['id']}\n")
