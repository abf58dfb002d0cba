"""What a dead letter may say about a record it could not handle: its agency, dossier and
event type, and only when each is in its code format, never free text that may carry
personal data (a name typed into the wrong field). One place for the rule, used by the
runtime's source and sink dead letters and by connectors that build their own."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from hub.contract.inbound import AGENCY_CODE_PATTERN, DOSSIER_CODE_PATTERN

__all__ = ["Codes", "codes_of"]

_AGENCY_RE: Final = re.compile(AGENCY_CODE_PATTERN)
_DOSSIER_RE: Final = re.compile(DOSSIER_CODE_PATTERN)
_EVENT_TYPE_RE: Final = re.compile(r"^[A-Z][A-Za-z]{2,40}$")


@dataclass(frozen=True)
class Codes:
    agency_code: str | None = None
    dossier_code: str | None = None
    event_type: str | None = None


def _code(value: object, pattern: re.Pattern[str]) -> str | None:
    if isinstance(value, str) and len(value) <= 64 and pattern.fullmatch(value.strip()):
        return value.strip()
    return None


def codes_of(value: object) -> Codes:
    """The codes of a record's value: a mapping (decoded JSON or Avro), or the bytes of a JSON
    object (a sink reading raw bytes, like the JSON bridge); anything else has none. The
    agency is ``agency_code``, else ``agency_code_handling`` (status records)."""
    if isinstance(value, bytes | bytearray | str):
        try:
            value = json.loads(value)
        except ValueError:
            return Codes()
    if not isinstance(value, Mapping):
        return Codes()
    data: Mapping[str, Any] = value
    agency = _code(data.get("agency_code"), _AGENCY_RE) or _code(
        data.get("agency_code_handling"), _AGENCY_RE
    )
    return Codes(
        agency_code=agency,
        dossier_code=_code(data.get("dossier_code"), _DOSSIER_RE),
        event_type=_code(data.get("event_type"), _EVENT_TYPE_RE),
    )
