"""The national portal's contract: configuration sources, the field mapping, secrets."""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from connectors.portal.contract import (
    MappingError,
    PortalAuth,
    PortalContract,
    idempotency_key,
    load_contract,
    to_portal_payload,
)
from hub.contract.samples import sample_records
from hub.contract.schemas import SchemaKind, load_schema

TOKEN = "s3cr3t-portal-token-XYZ"
NAME = "Nguyễn Thị Bình"


def status(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "6b3e1b7e-2f0c-5d6e-9a1b-3c4d5e6f7a8b",
        "event_type": "DossierStatusChanged",
        "occurred_at": datetime(2025, 8, 5, 2, 30, tzinfo=UTC),
        "recorded_at": datetime(2025, 8, 5, 2, 30, 1, tzinfo=UTC),
        "source_system": "nghean-hub",
        "agency_code": "000.00.03.H40",
        "dossier_code": "000.00.03.H40-250805-0001",
        "schema_version": 1,
        "traceparent": None,
        "procedure_code": "2.000488",
        "channel": "ONLINE",
        "status": "PROCESSING",
        "portal_status_code": 4,
        "previous_status": "RECEIVED",
        "agency_code_handling": "000.00.03.H40",
        "received_at": datetime(2025, 8, 5, 1, 0, tzinfo=UTC),
        "appointment_date": date(2025, 8, 15),
        "finished_at": None,
        "returned_at": None,
        "step": {
            "step_no": 1,
            "step_name": "Thẩm định",
            "official": "Trần Văn Cường",
            "unit": "Phòng Hành chính tư pháp",
            "started_at": datetime(2025, 8, 5, 2, 30, tzinfo=UTC),
            "step_deadline": date(2025, 8, 12),
        },
        "applicant_name": NAME,
        "cause_event_id": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
    }
    record.update(changes)
    return record


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HUB_PORTAL_") or name == "PORTAL_TOKEN":
            monkeypatch.delenv(name)


def test_the_default_mapping_uses_the_portal_names_and_local_time() -> None:
    assert to_portal_payload(status(), PortalContract()) == {
        "MaHoSo": "000.00.03.H40-250805-0001",
        "MaTTHC": "2.000488",
        "KenhThucHien": 2,
        "TrangThaiHoSo": 4,
        "NgayTiepNhan": "20250805080000",  # 01:00 UTC is 08:00 in Vinh
        "NgayHenTra": "20250815",
        "NgayKetThucXuLy": None,
        "NgayTra": None,
        "DonViXuLy": "000.00.03.H40",
        "ChuHoSo": NAME,
        "QuaTrinhXuLy": [
            {
                "NguoiXuLy": "Trần Văn Cường",
                "PhongBanXuLy": "Phòng Hành chính tư pháp",
                "NgayBatDau": "20250805093000",
                "NgayKetThucTheoQuyDinh": "20250812",
            }
        ],
    }


@pytest.mark.parametrize(("symbol", "code"), [("IN_PERSON", 1), ("ONLINE", 2), ("POSTAL", 3)])
def test_channels_become_kenh_thuc_hien_codes(symbol: str, code: int) -> None:
    assert to_portal_payload(status(channel=symbol), PortalContract())["KenhThucHien"] == code


def test_finished_and_returned_dossiers_carry_their_dates() -> None:
    payload = to_portal_payload(
        status(
            portal_status_code=10,
            step=None,
            finished_at=datetime(2025, 8, 6, 9, 0, tzinfo=UTC),
            returned_at=datetime(2025, 8, 6, 17, 30, tzinfo=UTC),  # next day in Vinh
        ),
        PortalContract(),
    )
    assert payload["TrangThaiHoSo"] == 10
    assert payload["NgayKetThucXuLy"] == "20250806160000"
    assert payload["NgayTra"] == "20250807003000"
    assert payload["QuaTrinhXuLy"] == []


def test_the_applicant_name_reaches_the_portal_unmasked_but_is_marked_personal() -> None:
    contract = PortalContract()
    assert to_portal_payload(status(), contract)["ChuHoSo"] == NAME
    assert contract.pii_fields == {"ChuHoSo"}
    renamed = PortalContract(fields={"applicant_name": "TenChuHoSo"})
    assert renamed.pii_fields == {"TenChuHoSo"}
    assert to_portal_payload(status(), renamed)["TenChuHoSo"] == NAME


def test_what_the_sink_decodes_from_avro_maps_like_the_record_itself() -> None:
    schema = fastavro.parse_schema(load_schema(SchemaKind.DOSSIER_STATUS))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, status())
    buf.seek(0)
    decoded = fastavro.schemaless_reader(buf, schema, None, return_record_name=True)
    assert isinstance(decoded, dict)
    assert isinstance(decoded["step"], tuple)  # (record name, record), as the sink reads it
    contract = PortalContract()
    assert to_portal_payload(decoded, contract) == to_portal_payload(status(), contract)
    assert idempotency_key(decoded) == status()["event_id"]


def test_every_schema_valid_record_maps_with_the_required_fields() -> None:
    contract = PortalContract()
    records = sample_records(load_schema(SchemaKind.DOSSIER_STATUS), limit=50)
    assert records
    for record in records:
        payload = to_portal_payload(record, contract)
        for name in ("MaHoSo", "KenhThucHien", "TrangThaiHoSo", "DonViXuLy"):
            assert payload[name] is not None
        assert isinstance(payload["QuaTrinhXuLy"], list)


def test_mapping_is_configurable_nulls_left_out_and_steps_flattened() -> None:
    contract = PortalContract(
        fields={"step": None, "step_no": "BuocXuLy", "occurred_at": "ThoiDiemXuLy",
                "event_id": "MaSuKien", "returned_at": None},
        omit_nulls=True,
        datetime_format="%Y-%m-%dT%H:%M:%S",
    )  # fmt: skip
    payload = to_portal_payload(status(), contract)
    assert "NgayTra" not in payload and "NgayKetThucXuLy" not in payload
    assert payload["BuocXuLy"] == 1
    assert payload["NguoiXuLy"] == "Trần Văn Cường"
    assert payload["ThoiDiemXuLy"] == "2025-08-05T09:30:00"
    assert payload["MaSuKien"] == status()["event_id"]
    assert "QuaTrinhXuLy" not in payload


def test_uuid_event_ids_become_text_keys() -> None:
    value = uuid.uuid4()
    assert idempotency_key(status(event_id=value)) == str(value)
    with pytest.raises(MappingError):
        idempotency_key(status(event_id=None))


def test_mapping_errors_name_the_field_never_the_value() -> None:
    with pytest.raises(MappingError) as caught:
        to_portal_payload(status(channel=NAME), PortalContract())
    assert NAME not in str(caught.value)
    assert "channel" in str(caught.value)
    record = status()
    del record["portal_status_code"]
    with pytest.raises(MappingError, match="portal_status_code"):
        to_portal_payload(record, PortalContract())


def test_a_json_file_configures_the_contract_and_the_environment_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "portal.json"
    file.write_text(
        json.dumps(
            {
                "endpoint_path": "api/v2/hoso",
                "idempotency_header": "X-Request-Id",
                "fields": {"applicant_name": "TenChuHoSo"},
            }
        )
    )
    contract = load_contract(file)
    assert contract.endpoint_path == "/api/v2/hoso"
    assert contract.idempotency_header == "X-Request-Id"
    assert contract.fields.applicant_name == "TenChuHoSo"
    assert contract.fields.dossier_code == "MaHoSo"  # untouched defaults stay

    monkeypatch.setenv("HUB_PORTAL_IDEMPOTENCY_HEADER", "Idempotency-Key")
    monkeypatch.setenv("HUB_PORTAL_FIELDS__DOSSIER_CODE", "SoHoSo")
    contract = load_contract(file)
    assert contract.idempotency_header == "Idempotency-Key"
    assert contract.fields.dossier_code == "SoHoSo"
    assert contract.fields.applicant_name == "TenChuHoSo"


def test_a_toml_file_named_by_the_environment_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "portal.toml"
    file.write_text(
        'endpoint_path = "/dvc/status"\nrequired_fields = ["MaHoSo"]\n\n'
        '[auth]\ntoken_env = "DVC_TOKEN"\n\n[fields]\nprocedure_code = "MaThuTuc"\n'
    )
    monkeypatch.setenv("HUB_PORTAL_CONTRACT_FILE", str(file))
    contract = load_contract()
    assert contract.endpoint_path == "/dvc/status"
    assert contract.required_fields == ("MaHoSo",)
    assert contract.auth.token_env == "DVC_TOKEN"
    assert to_portal_payload(status(), contract)["MaThuTuc"] == "2.000488"


def test_defaults_when_there_is_no_file() -> None:
    contract = load_contract()
    assert contract.endpoint_path == "/api/dossiers/status"
    assert contract.idempotency_header == "Idempotency-Key"


def test_a_broken_contract_file_says_which_file(tmp_path: Path) -> None:
    file = tmp_path / "portal.json"
    file.write_text("{not json")
    with pytest.raises(ValueError, match=r"portal\.json"):
        load_contract(file)
    file.write_text(json.dumps({"fields": {"no_such_field": "X"}}))
    with pytest.raises(ValueError, match="not a valid contract"):
        load_contract(file)
    with pytest.raises(ValueError, match="cannot read"):
        load_contract(tmp_path / "missing.toml")


def test_the_token_comes_from_the_named_variable_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert PortalAuth().header() == {}
    monkeypatch.setenv("PORTAL_TOKEN", TOKEN)
    assert PortalAuth().header() == {"Authorization": f"Bearer {TOKEN}"}
    secret_file = tmp_path / "token"
    secret_file.write_text(f"{TOKEN}-file\n")
    auth = PortalAuth(token_file=secret_file, token_env=None)
    assert auth.header() == {"Authorization": f"Bearer {TOKEN}-file"}
    with pytest.raises(ValueError, match="cannot read"):
        PortalAuth(token_file=tmp_path / "nope").bearer()


def test_the_token_never_shows_in_repr_dumps_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HUB_PORTAL_AUTH__TOKEN", TOKEN)
    contract = load_contract()
    assert contract.auth.bearer() is not None
    assert contract.auth.header()["Authorization"].endswith(TOKEN)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("contract %s / %r", contract, contract.auth)
    shown = [repr(contract), str(contract), contract.model_dump_json(), caplog.text,
             repr(contract.auth.bearer()), str(contract.model_dump())]  # fmt: skip
    for text in shown:
        assert TOKEN not in text
