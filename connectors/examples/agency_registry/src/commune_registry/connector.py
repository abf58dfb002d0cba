"""A source connector for a commune one-stop office's dossier register (the worked example of
``connectors/README.md``).

The office's legacy desk software keeps a SQLite file with one row per thing that happened at
the desk, in its own vocabulary (``desk-schema.sql`` next to this package's ``pyproject.toml``):
table ``nhat_ky_ho_so`` (the desk's dossier journal) with ``id`` (grows with every row: our
offset), ``ma_giao_dich`` (the row's GUID: our ``event_id``), ``ma_ho_so`` (dossier code),
``loai`` (``TIEP_NHAN`` received, ``TRA_KET_QUA`` result handed back), ``thoi_diem`` (when;
local time when it has no offset) and, for receipts, ``ma_thu_tuc`` (procedure code), ``kenh``
(channel 1, 2 or 3) and ``nguoi_nop`` (the applicant's name: personal data).

The connector only reads it (the file is opened read-only), turns each row into an inbound
dossier event (``hub/contract/inbound.py``) and leaves the rest to the runtime: validation,
Avro, Kafka, offsets, dead letters. A row that does not make a valid event is not this
module's problem to judge: the runtime dead-letters it (``errors.tolerance = "all"``).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field

from connectors.sdk import SourceConnector, SourceRecord
from hub.contract.inbound import AGENCY_CODE_PATTERN, VN_TZ

__all__ = ["TABLE", "CommuneRegistrySource", "row_to_event"]

#: the table we read; also our one source partition (offsets are stored per partition)
TABLE: Final = "nhat_ky_ho_so"
#: the desk's row kinds and the hub's event types they become
KINDS: Final = {"TIEP_NHAN": "DossierSubmitted", "TRA_KET_QUA": "ResultReturned"}
_COLUMNS: Final = "id, ma_giao_dich, ma_ho_so, loai, thoi_diem, ma_thu_tuc, kenh, nguoi_nop"


class CommuneRegistrySettings(BaseModel):
    """The config file's ``[settings]`` table."""

    model_config = ConfigDict(extra="forbid")

    database: Path  # the desk software's SQLite file
    agency_code: str = Field(pattern=AGENCY_CODE_PATTERN)  # the commune's code
    source_system: str = Field("commune-registry", min_length=1, max_length=100)
    batch_size: int = Field(200, ge=1, le=1000)  # rows per poll


def _timestamp(text: Any) -> Any:
    """The desk writes local time without an offset: say it is Vietnam's. Anything that is
    not a timestamp is passed on as it is, for the runtime's validation to report."""
    if not isinstance(text, str):
        return text
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=VN_TZ)
    return parsed.isoformat()


def row_to_event(row: sqlite3.Row, agency_code: str, source_system: str) -> dict[str, Any]:
    """One journal row as the hub's inbound JSON event (not validated here)."""
    kind = row["loai"]
    when = _timestamp(row["thoi_diem"])
    payload: dict[str, Any] = {}
    if kind == "TIEP_NHAN":
        payload = {
            "procedure_code": row["ma_thu_tuc"],
            "channel": row["kenh"],
            "applicant_name": row["nguoi_nop"],
            "submitted_at": when,
        }
    elif kind == "TRA_KET_QUA":
        payload = {"returned_at": when}
    return {
        "event_id": row["ma_giao_dich"],  # stable: a row read twice is the same event
        "event_type": KINDS.get(kind, kind),  # an unknown kind fails validation: dead letter
        "occurred_at": when,
        "source_system": source_system,
        "agency_code": agency_code,
        "dossier_code": row["ma_ho_so"],
        # NULL means "not given": leave it out, so validation says which field is missing
        "payload": {key: value for key, value in payload.items() if value is not None},
    }


class CommuneRegistrySource(SourceConnector):
    """Commune one-stop desk register (SQLite): receipts and returned results, in id order."""

    Settings: ClassVar[type[BaseModel]] = CommuneRegistrySettings
    settings: CommuneRegistrySettings
    _db: sqlite3.Connection | None = None  # opened by start()
    _last_id: int = 0  # the last row returned by poll()

    def start(self) -> None:
        # resume strictly after the last row Kafka acknowledged (0: from the beginning)
        stored = self.context.offset(TABLE)
        self._last_id = int(stored["id"]) if stored is not None else 0
        uri = f"{self.settings.database.resolve().as_uri()}?mode=ro"
        # read-only; wait up to 10 s while the desk software holds its write lock
        self._db = sqlite3.connect(uri, uri=True, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        self.log.info("reading %s from id %d on", TABLE, self._last_id + 1)

    def poll(self) -> list[SourceRecord]:
        if self._db is None:
            raise RuntimeError("poll() before start()")
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM {TABLE} WHERE id > ? ORDER BY id LIMIT ?",
            (self._last_id, self.settings.batch_size),
        ).fetchall()
        if rows:
            self._last_id = rows[-1]["id"]
        return [
            SourceRecord(
                value=row_to_event(row, self.settings.agency_code, self.settings.source_system),
                source_partition=TABLE,
                source_offset={"id": row["id"]},
            )
            for row in rows
        ]

    def stop(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def health(self) -> dict[str, Any]:
        # called from the health endpoint's thread: report, never touch the connection
        return {"status": "up", "last_id": self._last_id}
