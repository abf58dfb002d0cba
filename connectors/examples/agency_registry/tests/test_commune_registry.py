"""The hub's connector contract suite, run on the commune register connector, plus the
connector's own mapping rules.

Run with the hub's repository on ``PYTHONPATH`` (the suite lives in its ``tests/contract``)
and this package installed or on the path::

    PYTHONPATH=<hub repo>:connectors/examples/agency_registry/src \\
        python -m pytest connectors/examples/agency_registry/tests

The contract's broker tests use ``KAFKA_BOOTSTRAP_SERVERS`` / ``SCHEMA_REGISTRY_URL`` when
set, otherwise they start a broker (see the hub's ``tests/fixtures/stack.py``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, ClassVar

from commune_registry.connector import TABLE, CommuneRegistrySource

from connectors.sdk import Connector, SourceContext, SourceRecord, parse_config
from connectors.sdk.runtime import ConnectorRuntime, validate_event
from hub.contract.inbound import InboundDossierEvent
from tests.contract.connector_contract import AGENCY, SourceContract

#: the desk software's table, as it creates it (the connector never writes to the file)
DESK_SCHEMA = (Path(__file__).resolve().parents[1] / "desk-schema.sql").read_text(encoding="utf-8")
_INSERT = (
    f"INSERT INTO {TABLE} (ma_giao_dich, ma_ho_so, loai, thoi_diem, ma_thu_tuc, kenh, nguoi_nop)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
Row = tuple[str, str, str, str, str | None, int | None, str | None]


def desk_database(path: Path) -> Path:
    """An empty register, as the desk software leaves it on a new install."""
    with sqlite3.connect(path) as db:
        db.executescript(DESK_SCHEMA)
    return path


def desk_writes(path: Path, rows: list[Row]) -> None:
    """The desk software recording rows (one transaction)."""
    db = sqlite3.connect(path)
    try:
        with db:
            db.executemany(_INSERT, rows)
    finally:
        db.close()


def receipt_row(event: dict[str, Any]) -> Row:
    """The register row a DossierSubmitted event of the contract suite comes from."""
    payload = event["payload"]
    return (
        event["event_id"],
        event["dossier_code"],
        "TIEP_NHAN",
        event["occurred_at"],
        payload.get("procedure_code"),
        payload.get("channel"),
        payload.get("applicant_name"),
    )


def result_row(guid: str, dossier: str, when: str) -> Row:
    """A register row saying the result of ``dossier`` was handed back ``when``."""
    return (guid, dossier, "TRA_KET_QUA", when, None, None, None)


class TestCommuneRegistryContract(SourceContract):
    connector_class: ClassVar[type[Connector]] = CommuneRegistrySource
    bad_settings_path = "settings.agency_code"

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        database = desk_database(tmp_path / "so-ho-so.db")
        return {"database": str(database), "agency_code": AGENCY, "source_system": "test-desk"}

    def bad_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"database": str(tmp_path / "so-ho-so.db"), "agency_code": "Anh Sơn"}

    def emit(
        self, runtime: ConnectorRuntime | None, tmp_path: Path, events: list[dict[str, Any]]
    ) -> None:
        # the suite hands us hub events; the desk writes them as its own rows
        desk_writes(tmp_path / "so-ho-so.db", [receipt_row(e) for e in events])


# --- the connector's own rules (no broker needed) ---------------------------------------------


def polled(
    tmp_path: Path, rows: list[Row], stored: dict[str, Any] | None = None
) -> list[SourceRecord]:
    """What one poll returns after the desk wrote ``rows``, resuming after ``stored``."""
    database = desk_database(tmp_path / "desk.db")
    desk_writes(database, rows)
    config = parse_config(
        {
            "name": "unit",
            "connector.class": "commune-registry",
            "settings": {"database": str(database), "agency_code": AGENCY},
        },
        connector_cls=CommuneRegistrySource,
    )
    connector = CommuneRegistrySource(config)
    connector.initialize(SourceContext({TABLE: stored} if stored else {}))
    connector.start()
    try:
        return connector.poll()
    finally:
        connector.stop()


def test_a_returned_result_in_local_time_becomes_a_valid_result_returned_event(
    tmp_path: Path,
) -> None:
    guid = "8d0f5e0c-4b1a-4f5e-9a53-2f7c1d9e6b11"
    dossier = f"{AGENCY}-251203-0042"
    [record] = polled(tmp_path, [result_row(guid, dossier, "2025-12-03 15:30:00")])
    assert (record.source_partition, record.source_offset) == (TABLE, {"id": 1})
    event = validate_event(record.value)
    assert isinstance(event, InboundDossierEvent), event
    assert event.event_type == "ResultReturned"
    assert str(event.event_id) == guid
    assert event.occurred_at.isoformat() == "2025-12-03T15:30:00+07:00"  # the desk's local time


def test_rows_the_hub_would_refuse_are_passed_on_for_the_runtime_to_dead_letter(
    tmp_path: Path,
) -> None:
    dossier = f"{AGENCY}-251203-0043"
    guid = "c1e2a7a4-94a5-4f4c-8f39-0d5b2f0a6c0"
    rows: list[Row] = [
        (f"{guid}1", dossier, "HUY", "2025-12-03 08:00:00", None, None, None),
        (f"{guid}2", dossier, "TIEP_NHAN", "hôm qua", "1.001193", 1, "Lê Văn Tám"),
    ]
    unknown_kind, bad_time = (validate_event(r.value) for r in polled(tmp_path, rows))
    assert isinstance(unknown_kind, list) and isinstance(bad_time, list)
    assert "event_type" in {p.path for p in unknown_kind}
    assert {p.path for p in bad_time} >= {"occurred_at", "payload.submitted_at"}


def test_poll_resumes_strictly_after_the_stored_offset(tmp_path: Path) -> None:
    when = "2025-12-03T09:00:00+07:00"
    rows = [
        result_row(f"5b0c9c3e-0000-4000-8000-00000000000{i}", f"{AGENCY}-251203-010{i}", when)
        for i in range(1, 5)
    ]
    records = polled(tmp_path, rows, stored={"id": 2})
    assert [r.source_offset for r in records] == [{"id": 3}, {"id": 4}]
