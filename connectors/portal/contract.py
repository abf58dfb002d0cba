"""The national portal's status-sync contract, as configuration rather than code.

What the portal expects is known only from secondary sources (see DOMAIN.md), so everything a
portal release could change is a setting: the endpoint path, the bearer token's source, the
idempotency header, the JSON field names, date formats and the time zone. Sources, highest
priority first: ``HUB_PORTAL_*`` environment variables (nested with ``__``, e.g.
``HUB_PORTAL_FIELDS__APPLICANT_NAME=TenChuHoSo``), a JSON or TOML file
(:func:`load_contract`), the defaults below.

:func:`to_portal_payload` is pure: a decoded ``DossierStatusChanged`` record in, the portal's
JSON body out. The idempotency key (header, not body) is the record's ``event_id``, which the
hub derives deterministically from the cause, so every redelivery carries the same key.

Personal data: the portal needs the applicant's name (ChuHoSo), so the payload carries it in
full. :attr:`PortalContract.pii_fields` names the portal fields holding personal data so
callers keep them out of logs and errors; the token is a ``SecretStr`` and never printed.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = [
    "CHANNEL_CODES",
    "ContractFileError",
    "FieldMapping",
    "MappingError",
    "PortalAuth",
    "PortalContract",
    "idempotency_key",
    "load_contract",
    "to_portal_payload",
]

#: KenhThucHien: 1 in person, 2 online, 3 public postal service (the Avro enum's symbols)
CHANNEL_CODES: Mapping[str, int] = {"IN_PERSON": 1, "ONLINE": 2, "POSTAL": 3}


class ContractFileError(ValueError):
    """The contract file cannot be read or is not a valid contract."""


class MappingError(ValueError):
    """A record cannot be mapped to the portal's JSON (the message quotes no values)."""


class PortalAuth(BaseModel):
    """Where the bearer token comes from: ``token`` itself, else ``token_file``, else the
    environment variable named ``token_env``. No token at all means no Authorization header."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr | None = None
    token_file: Path | None = None
    token_env: str | None = "PORTAL_TOKEN"
    scheme: str = "Bearer"

    def bearer(self) -> SecretStr | None:
        if self.token is not None and self.token.get_secret_value():
            return self.token
        if self.token_file is not None:
            try:
                text = self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                # the path is configuration, not a secret; the content never appears
                raise ContractFileError(
                    f"cannot read the portal token file {self.token_file}: {exc.strerror}"
                ) from None
            return SecretStr(text) if text else None
        if self.token_env:
            value = os.environ.get(self.token_env, "").strip()
            return SecretStr(value) if value else None
        return None

    def header(self) -> dict[str, str]:
        """The Authorization header, or nothing; the one place the secret is revealed."""
        token = self.bearer()
        if token is None:
            return {}
        return {"Authorization": f"{self.scheme} {token.get_secret_value()}"}


class FieldMapping(BaseModel):
    """Portal JSON name of each DossierStatusChanged field; ``None`` leaves it out."""

    model_config = ConfigDict(extra="forbid")

    dossier_code: str = "MaHoSo"
    procedure_code: str | None = "MaTTHC"
    channel: str | None = "KenhThucHien"
    portal_status_code: str = "TrangThaiHoSo"
    received_at: str | None = "NgayTiepNhan"
    appointment_date: str | None = "NgayHenTra"
    finished_at: str | None = "NgayKetThucXuLy"
    returned_at: str | None = "NgayTra"
    agency_code_handling: str | None = "DonViXuLy"
    applicant_name: str | None = "ChuHoSo"
    occurred_at: str | None = None  # the time of the status change, if the portal wants it
    event_id: str | None = None  # the idempotency key repeated in the body, if wanted
    #: the current step: a list of one object under this name, or flat fields when None
    step: str | None = "QuaTrinhXuLy"
    step_no: str | None = None
    step_name: str | None = None
    step_official: str | None = "NguoiXuLy"
    step_unit: str | None = "PhongBanXuLy"
    step_started_at: str | None = "NgayBatDau"
    step_deadline: str | None = "NgayKetThucTheoQuyDinh"


class PortalContract(BaseSettings):
    """The portal's contract. Environment variables win over a file, a file over defaults."""

    model_config = SettingsConfigDict(
        env_prefix="HUB_PORTAL_", env_nested_delimiter="__", extra="ignore"
    )

    endpoint_path: str = "/api/dossiers/status"
    idempotency_header: str = "Idempotency-Key"
    auth: PortalAuth = Field(default_factory=PortalAuth)
    fields: FieldMapping = Field(default_factory=FieldMapping)
    #: portal fields the emulator insists on (by portal name)
    required_fields: tuple[str, ...] = (
        "MaHoSo",
        "MaTTHC",
        "KenhThucHien",
        "TrangThaiHoSo",
        "DonViXuLy",
    )
    datetime_format: str = "%Y%m%d%H%M%S"
    date_format: str = "%Y%m%d"
    time_zone: str = "Asia/Ho_Chi_Minh"
    #: leave null fields out of the body instead of sending ``null``
    omit_nulls: bool = False

    @field_validator("endpoint_path")
    @classmethod
    def _leading_slash(cls, value: str) -> str:
        return value if value.startswith("/") else f"/{value}"

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the file arrives as init arguments (load_contract); the environment overrides it
        return env_settings, init_settings, dotenv_settings, file_secret_settings

    @property
    def pii_fields(self) -> frozenset[str]:
        """Portal field names that carry personal data: never log, label or quote them."""
        return frozenset(name for name in (self.fields.applicant_name,) if name)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def load_contract(path: Path | str | None = None) -> PortalContract:
    """The contract from ``path`` (``.json`` or ``.toml``; else ``HUB_PORTAL_CONTRACT_FILE``),
    with ``HUB_PORTAL_*`` variables on top; defaults alone when there is no file."""
    chosen = path if path is not None else os.environ.get("HUB_PORTAL_CONTRACT_FILE") or None
    if chosen is None:
        return PortalContract()
    file = Path(chosen)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ContractFileError(f"cannot read portal contract {file}: {exc.strerror}") from None
    try:
        if file.suffix.lower() == ".toml":
            data: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractFileError(f"portal contract {file} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise ContractFileError(f"portal contract {file} must hold an object/table")
    try:
        return PortalContract(**data)
    except ValueError as exc:
        raise ContractFileError(f"portal contract {file} is not a valid contract: {exc}") from None


def idempotency_key(record: Mapping[str, Any]) -> str:
    """The key the portal deduplicates on: the status change's deterministic event id."""
    event_id = record.get("event_id")
    if event_id is None or str(event_id) == "":
        raise MappingError("record has no event_id")
    return str(event_id)


def _moment(value: Any, contract: PortalContract) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(contract.zone).strftime(contract.datetime_format)
    if isinstance(value, date):
        return value.strftime(contract.date_format)
    if isinstance(value, int):  # timestamp-millis read without logical types
        return _moment(datetime.fromtimestamp(value / 1000, contract.zone), contract)
    raise MappingError(f"expected a timestamp, got {type(value).__name__}")


def _day(value: Any, contract: PortalContract) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(contract.zone).strftime(contract.date_format)
    if isinstance(value, date):
        return value.strftime(contract.date_format)
    raise MappingError(f"expected a date, got {type(value).__name__}")


def _channel(value: Any) -> int:
    if isinstance(value, int) and value in CHANNEL_CODES.values():
        return value
    code = CHANNEL_CODES.get(str(value))
    if code is None:
        raise MappingError("channel is not IN_PERSON, ONLINE or POSTAL")
    return code


def to_portal_payload(record: Mapping[str, Any], contract: PortalContract) -> dict[str, Any]:
    """The portal's JSON body for one decoded DossierStatusChanged record. Pure.

    Raises :class:`MappingError` (naming the field, never its value) when the record lacks
    what the mapping needs."""
    names = contract.fields
    body: dict[str, Any] = {}

    def put(target: dict[str, Any], name: str | None, value: Any) -> None:
        if name is None or (value is None and contract.omit_nulls):
            return
        target[name] = value

    try:
        dossier_code = record["dossier_code"]
        status_code = record["portal_status_code"]
    except KeyError as exc:
        raise MappingError(f"record has no {exc.args[0]}") from None
    if not isinstance(status_code, int):
        raise MappingError("portal_status_code is not an integer")
    put(body, names.dossier_code, str(dossier_code))
    put(body, names.procedure_code, record.get("procedure_code"))
    put(body, names.channel, _channel(record.get("channel")))
    put(body, names.portal_status_code, status_code)
    put(body, names.received_at, _moment(record.get("received_at"), contract))
    put(body, names.appointment_date, _day(record.get("appointment_date"), contract))
    put(body, names.finished_at, _moment(record.get("finished_at"), contract))
    put(body, names.returned_at, _moment(record.get("returned_at"), contract))
    put(body, names.agency_code_handling, record.get("agency_code_handling"))
    put(body, names.applicant_name, record.get("applicant_name"))
    put(body, names.occurred_at, _moment(record.get("occurred_at"), contract))
    if names.event_id is not None:
        put(body, names.event_id, idempotency_key(record))

    step = record.get("step")
    if isinstance(step, tuple) and len(step) == 2:
        step = step[1]  # read with return_record_name (as AvroDeserializer does): (name, record)
    step_body: dict[str, Any] = {}
    if isinstance(step, Mapping):
        put(step_body, names.step_no, step.get("step_no"))
        put(step_body, names.step_name, step.get("step_name"))
        put(step_body, names.step_official, step.get("official"))
        put(step_body, names.step_unit, step.get("unit"))
        put(step_body, names.step_started_at, _moment(step.get("started_at"), contract))
        put(step_body, names.step_deadline, _day(step.get("step_deadline"), contract))
    elif step is not None:
        raise MappingError("step is not a record")
    if names.step is not None:
        if step_body:
            body[names.step] = [step_body]
        elif not contract.omit_nulls:
            body[names.step] = []
    else:
        body.update(step_body)
    return body
