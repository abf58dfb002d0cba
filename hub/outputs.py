"""Records the hub writes, built from domain outcomes. Pure: no Kafka here.

Output event ids are UUIDv5 of the cause (input event id plus what is emitted), so a
reprocessed input yields outputs with the same id (only ``recorded_at`` differs), and every
consumer (the portal sink's idempotency key, dashboards) can drop the repeat.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hub.contract.event_types import HubOutputType
from hub.domain.deadlines import Alert
from hub.domain.lifecycle import DossierState, StatusChange
from hub.domain.status import DossierStatus

__all__ = ["alert_record", "output_id", "status_record"]

_NAMESPACE = uuid.UUID("6f1c2a0e-4b7d-5c1e-9a53-48a0b1d6e940")
SCHEMA_VERSION = 1


_NAMESPACE_BYTES = _NAMESPACE.bytes


def output_id(*parts: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, "|".join(parts)))``, without building a UUID object
    (one or more per event: that was a tenth of the output cost)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "|".join(parts).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# The records below go straight to the compiled Avro writer (``hub.contract.serde``), so they
# hold what it writes without conversions: a ``StrEnum`` member is the string (and the enum
# symbol) it stands for, and timestamp-millis are floored to the millisecond by the encoding
# itself, so sub-millisecond digits never reach the bytes (and a re-encode is identical).
_STATUS_CHANGED = str(HubOutputType.STATUS_CHANGED)
_ALERT = str(HubOutputType.ALERT)


def status_record(
    change: StatusChange,
    portal_codes: Mapping[DossierStatus, int],
    *,
    source_system: str,
    recorded_at: datetime,
) -> dict[str, Any]:
    step = change.step
    return {
        "event_id": output_id(change.cause_event_id, "status"),
        "event_type": _STATUS_CHANGED,
        "occurred_at": change.occurred_at,
        "recorded_at": recorded_at,
        "source_system": source_system,
        "agency_code": change.agency_code,
        "dossier_code": change.dossier_code,
        "schema_version": SCHEMA_VERSION,
        "traceparent": None,
        # Unknown until a submission names it (dossier opened at the desk): empty string.
        "procedure_code": change.procedure_code or "",
        "channel": change.channel,
        "status": change.status,
        "portal_status_code": portal_codes[change.status],
        "previous_status": change.previous,
        "agency_code_handling": change.agency_code,
        "received_at": change.received_at,
        "appointment_date": change.appointment_date,
        "finished_at": change.finished_at,
        "returned_at": change.returned_at,
        "step": None
        if step is None
        else {
            "step_no": step.step_no,
            "step_name": step.step_name,
            "official": step.official,
            "unit": step.unit,
            "started_at": step.started_at,
            "step_deadline": step.step_deadline,
        },
        "applicant_name": change.applicant_name,
        "cause_event_id": change.cause_event_id,
    }


def alert_record(
    alert: Alert,
    state: DossierState,
    *,
    source_system: str,
    detected_at: datetime,
    recorded_at: datetime,
) -> dict[str, Any]:
    return {
        "event_id": output_id(state.dossier_code, "alert", alert.key),
        "event_type": _ALERT,
        "occurred_at": detected_at,
        "recorded_at": recorded_at,
        "source_system": source_system,
        "agency_code": state.agency_code,
        "dossier_code": state.dossier_code,
        "schema_version": SCHEMA_VERSION,
        "traceparent": None,
        "kind": alert.kind,
        "scope": alert.scope,
        "step_no": alert.step_no,
        "deadline": alert.deadline,
        "detected_at": detected_at,
    }
