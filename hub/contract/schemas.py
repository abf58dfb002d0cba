"""The Avro schemas in the repository's ``schemas/`` folder, as the code sees them.

Layout: ``schemas/<kind>/v<N>.avsc``, one folder per kind of record, one file per version.
The files are the source of truth of the event contract (``docs/events.md`` summarises them).
"""

from __future__ import annotations

import functools
import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

import fastavro

__all__ = [
    "NAMESPACE",
    "SCHEMA_DIR",
    "SchemaError",
    "SchemaKind",
    "full_name",
    "load_schema",
    "parsed_schema",
    "pii_fields",
    "versions",
]

SCHEMA_DIR: Path = Path(__file__).resolve().parents[2] / "schemas"
NAMESPACE = "vn.gov.nghean.hub"

_VERSION_FILE = re.compile(r"^v([1-9]\d*)\.avsc$")


class SchemaError(Exception):
    """A schema file is missing, unreadable or not valid Avro."""


class SchemaKind(StrEnum):
    """One folder under ``schemas/``; one Kafka record type (and subject family)."""

    DOSSIER_EVENT = "dossier-event"  # vn.gov.nghean.hub.DossierEvent on dossier.events
    FEEDBACK_EVENT = "feedback-event"  # vn.gov.nghean.hub.FeedbackEvent on feedback.events
    DOSSIER_STATUS = "dossier-status"  # vn.gov.nghean.hub.DossierStatusChanged
    DOSSIER_ALERT = "dossier-alert"  # vn.gov.nghean.hub.DossierAlert


def full_name(record_name: str) -> str:
    """The Avro full name of a record in the hub's namespace (``DossierSubmitted`` → ``vn...``)."""
    return record_name if "." in record_name else f"{NAMESPACE}.{record_name}"


def _kind(kind: SchemaKind | str) -> SchemaKind:
    try:
        return SchemaKind(kind)
    except ValueError:
        raise SchemaError(f"unknown schema kind {kind!r}") from None


def versions(kind: SchemaKind | str) -> list[int]:
    """The versions present for ``kind``, ascending (``[1, 2]`` for v1.avsc and v2.avsc)."""
    folder = SCHEMA_DIR / _kind(kind)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _VERSION_FILE.match(entry.name)
        if match and entry.is_file():
            found.append(int(match.group(1)))
    return sorted(found)


def _resolve_version(kind: SchemaKind, version: int | None) -> int:
    available = versions(kind)
    if not available:
        raise SchemaError(f"no schema files for {kind} in {SCHEMA_DIR / kind}")
    if version is None:
        return available[-1]
    if version not in available:
        raise SchemaError(f"{kind} has no version {version} (have {available})")
    return version


def load_schema(kind: SchemaKind | str, version: int | None = None) -> dict[str, Any]:
    """The raw JSON of ``schemas/<kind>/v<version>.avsc``; the latest version if None.

    Returns a fresh dict on every call, so callers may modify it.
    """
    k = _kind(kind)
    v = _resolve_version(k, version)
    path = SCHEMA_DIR / k / f"v{v}.avsc"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"{path} does not hold a JSON object")
    return data


@functools.cache
def parsed_schema(kind: SchemaKind | str, version: int | None = None) -> dict[str, Any]:
    """``fastavro.parse_schema`` of :func:`load_schema`, cached per (kind, version).

    The result is shared between callers: do not modify it.
    """
    raw = load_schema(kind, version)
    try:
        parsed = fastavro.parse_schema(raw)
    except Exception as exc:  # fastavro raises several exception types for bad schemas
        raise SchemaError(f"{kind} v{version or 'latest'} is not valid Avro: {exc}") from exc
    return cast(dict[str, Any], parsed)


def pii_fields(schema: dict[str, Any]) -> set[str]:
    """Dotted paths of the fields marked ``"pii": true`` in a record schema.

    A field nested in a record reached through a union includes the record's (short) name,
    so ``payload.DossierSubmitted.applicant_name``; through a plain record field it does not,
    so ``step.official``. Works on raw JSON and on fastavro-parsed schemas.
    """
    found: set[str] = set()
    _collect_pii(schema, "", found)
    return found


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _collect_pii(record: dict[str, Any], prefix: str, found: set[str]) -> None:
    for field in record.get("fields", []):
        path = f"{prefix}{field['name']}"
        if field.get("pii") is True:
            found.add(path)
        field_type = field["type"]
        if isinstance(field_type, list):
            for branch in field_type:
                if isinstance(branch, dict) and branch.get("type") == "record":
                    _collect_pii(branch, f"{path}.{_short(branch['name'])}.", found)
        elif isinstance(field_type, dict) and field_type.get("type") == "record":
            _collect_pii(field_type, f"{path}.", found)
