"""Records the hub writes, built from domain outcomes. Pure: no Kafka here.

Output event ids are UUIDv5 of the cause (input event id plus what is emitted), so a
reprocessed input yields outputs with the same id (only ``recorded_at`` differs), and every
consumer (the portal sink's idempotency key, dashboards) can drop the repeat.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
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


def _ms(moment: datetime) -> datetime:
    # Avro timestamp-millis: drop sub-millisecond digits so a re-encode is identical. Times
    # decoded from Avro have none: then the very same datetime (``replace`` makes a new one).
    micro = moment.microsecond
    return moment if micro % 1000 == 0 else moment.replace(microsecond=micro // 1000 * 1000)


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
        "event_type": HubOutputType.STATUS_CHANGED.value,
        "occurred_at": _ms(change.occurred_at),
        "recorded_at": _ms(recorded_at),
        "source_system": source_system,
        "agency_code": change.agency_code,
        "dossier_code": change.dossier_code,
        "schema_version": SCHEMA_VERSION,
        "traceparent": None,
        # Unknown until a submission names it (dossier opened at the desk): empty string.
        "procedure_code": change.procedure_code or "",
        "channel": change.channel.value,
        "status": change.status.value,
        "portal_status_code": portal_codes[change.status],
        "previous_status": change.previous.value if change.previous else None,
        "agency_code_handling": change.agency_code,
        "received_at": _ms(change.received_at) if change.received_at else None,
        "appointment_date": change.appointment_date,
        "finished_at": _ms(change.finished_at) if change.finished_at else None,
        "returned_at": _ms(change.returned_at) if change.returned_at else None,
        "step": None
        if step is None
        else {
            "step_no": step.step_no,
            "step_name": step.step_name,
            "official": step.official,
            "unit": step.unit,
            "started_at": _ms(step.started_at),
            "step_deadline": step.step_deadline,
        },
        "applicant_name": change.applicant_name,
        "cause_event_id": change.cause_event_id,
    }


def alert_record(
    alert: Alert, state: DossierState, *, source_system: str, detected_at: datetime
) -> dict[str, Any]:
    return {
        "event_id": output_id(state.dossier_code, "alert", alert.key),
        "event_type": HubOutputType.ALERT.value,
        "occurred_at": _ms(detected_at),
        "recorded_at": _ms(datetime.now(UTC)),
        "source_system": source_system,
        "agency_code": state.agency_code,
        "dossier_code": state.dossier_code,
        "schema_version": SCHEMA_VERSION,
        "traceparent": None,
        "kind": alert.kind.value,
        "scope": alert.scope.value,
        "step_no": alert.step_no,
        "deadline": alert.deadline,
        "detected_at": _ms(detected_at),
    }
