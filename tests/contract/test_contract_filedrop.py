"""The connector contract for the file drop. Invalid records are refused at the door: they
go to rejected/ with a report (checked here too), not to the dead-letter topic."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from connectors.filedrop import FileDropConnector
from connectors.sdk import Connector
from connectors.sdk.runtime import ConnectorRuntime
from tests.contract.connector_contract import SourceContract, invalid_event, wait_for


class TestFileDropContract(SourceContract):
    connector_class: ClassVar[type[Connector]] = FileDropConnector
    bad_settings_path = "settings.settle_s"

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        (tmp_path / "drop").mkdir(exist_ok=True)
        return {"directory": str(tmp_path / "drop"), "settle_s": 0.2}

    def bad_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"directory": str(tmp_path), "settle_s": -1}

    def emit(
        self, runtime: ConnectorRuntime | None, tmp_path: Path, events: list[dict[str, Any]]
    ) -> None:
        final = tmp_path / "drop" / f"{uuid.uuid1().hex}.json"
        part = final.with_name(final.name + ".part")  # written whole, then renamed
        part.write_text(json.dumps(events, ensure_ascii=False), encoding="utf-8")
        part.rename(final)

    def emit_raw_invalid(self, runtime: ConnectorRuntime | None, tmp_path: Path) -> bool:
        self.emit(runtime, tmp_path, [invalid_event()])
        rejected = tmp_path / "drop" / "rejected"
        wait_for(lambda: any(rejected.glob("*.report.json")), 30, "the rejection report")
        [report] = [json.loads(p.read_text()) for p in rejected.glob("*.report.json")]
        assert {(p["path"], p["rule"]) for p in report["problems"]} >= {
            ("payload.procedure_code", "missing")
        }
        time.sleep(0.1)
        return False
