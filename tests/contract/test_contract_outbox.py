"""The connector contract for the database outbox (SQLite backend; PostgreSQL and the gap
rules are covered in tests/integration/test_outbox.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, ClassVar

from connectors.outbox import OutboxConnector, SqliteOutbox
from connectors.sdk import Connector
from connectors.sdk.runtime import ConnectorRuntime
from tests.contract.connector_contract import SourceContract


class TestOutboxContract(SourceContract):
    connector_class: ClassVar[type[Connector]] = OutboxConnector
    bad_settings_path = "settings.batch_size"

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        db = tmp_path / "agency.db"
        SqliteOutbox(db, create=True).close()
        return {"backend": "sqlite", "path": str(db), "gap_grace_s": 0.2}

    def bad_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"backend": "sqlite", "path": str(tmp_path / "x.db"), "batch_size": 0}

    def emit(
        self, runtime: ConnectorRuntime | None, tmp_path: Path, events: list[dict[str, Any]]
    ) -> None:
        conn = sqlite3.connect(tmp_path / "agency.db")
        with conn:
            conn.executemany(
                "INSERT INTO outbox (dossier_code, payload) VALUES (?, ?)",
                [(e["dossier_code"], json.dumps(e, ensure_ascii=False)) for e in events],
            )
        conn.close()
