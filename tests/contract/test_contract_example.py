"""The contract suite run against the test-only example connectors: proof the suite works."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, ClassVar

from connectors.sdk import Connector
from connectors.sdk.runtime import ConnectorRuntime
from tests.contract.connector_contract import SinkContract, SourceContract
from tests.contract.example_connectors import LinesSink, LinesSource


class TestLinesSourceContract(SourceContract):
    connector_class: ClassVar[type[Connector]] = LinesSource
    bad_settings_path = "settings.batch_size"

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        (tmp_path / "in").mkdir(exist_ok=True)
        return {"directory": str(tmp_path / "in")}

    def bad_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"directory": str(tmp_path), "batch_size": 0}

    def emit(
        self, runtime: ConnectorRuntime | None, tmp_path: Path, events: list[dict[str, Any]]
    ) -> None:
        final = tmp_path / "in" / f"{uuid.uuid1().hex}.jsonl"
        part = final.with_suffix(".part")  # written whole, then renamed: never half a line
        part.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
        part.rename(final)


class TestLinesSinkContract(SinkContract):
    connector_class: ClassVar[type[Connector]] = LinesSink
    bad_settings_path = "settings.out_file"

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"out_file": str(tmp_path / "delivered.txt")}

    def bad_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {}

    def delivered(self, tmp_path: Path) -> list[str]:
        path = tmp_path / "delivered.txt"
        return path.read_text(encoding="utf-8").split() if path.exists() else []

    def good_value(self, record_id: str) -> bytes:
        return json.dumps({"id": record_id}).encode()

    def bad_value(self) -> bytes:
        return json.dumps({"id": "x", "bad": True}).encode()
