"""Records the hub writes, built from domain outcomes. Pure: no Kafka here.

Output event ids are UUIDv5 of the cause (input event id plus what is emitted), so a
reprocessed input yields outputs with the same id (only ``recorded_at`` differs), and every
consumer (the portal sink's idempotency key, dashboards) can drop the repeat.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import date, datetime

import msgspec

from hub.contract.event_types import HubOutputType
from hub.domain.deadlines import Alert, AlertKind, AlertScope
from hub.domain.events import Channel
from hub.domain.lifecycle import CurrentStep, DossierState, StatusChange
from hub.domain.status import DossierStatus

__all__ = [
    "AlertRecord",
    "OutputEnvelope",
    "StatusRecord",
    "alert_record",
    "output_id",
    "status_record",
]

_NAMESPACE = uuid.UUID("6f1c2a0e-4b7d-5c1e-9a53-48a0b1d6e940")
SCHEMA_VERSION = 1


_NAMESPACE_BYTES = _NAMESPACE.bytes


def output_id(*parts: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, "|".join(parts)))``, without building a UUID object
    (one or more per event): the SHA-1's hex digits with the version nibble set to 5 and
    the variant bits of the next-but-three nibble to 10 (RFC 4122)."""
    h = _sha1(_NAMESPACE_BYTES + "|".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


#: a hex digit with its top two bits replaced by 10
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
_sha1 = hashlib.sha1


# The records below go straight to the compiled Avro writer (``hub.contract.serde``), so they
# hold what it writes without conversions: a ``StrEnum`` member is the string (and the enum
# symbol) it stands for, and timestamp-millis are floored to the millisecond by the encoding
# itself, so sub-millisecond digits never reach the bytes (and a re-encode is identical).
_STATUS_CHANGED = str(HubOutputType.STATUS_CHANGED)
_ALERT = str(HubOutputType.ALERT)


class OutputEnvelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The fields every output record starts with, in the schemas' order (the envelope of
    ``schemas/dossier-status`` and ``schemas/dossier-alert``)."""

    event_id: str
    event_type: str
    occurred_at: datetime
    recorded_at: datetime
    source_system: str
    agency_code: str
    dossier_code: str
    schema_version: int
    traceparent: str | None


class StatusRecord(OutputEnvelope, frozen=True, kw_only=True, gc=False):
    """A ``dossier.status`` / ``portal.outbox`` record: its attributes are the schema's fields
    (``schemas/dossier-status``), so the compiled writer reads them straight from it
    (``AvroSerializer.encode_attributes``), with no dict built per event. ``step`` is the
    state's ``CurrentStep``, whose attributes are the ``DossierStep`` record's fields."""

    procedure_code: str
    channel: Channel
    status: DossierStatus
    portal_status_code: int
    previous_status: DossierStatus | None
    agency_code_handling: str
    received_at: datetime | None
    appointment_date: date | None
    finished_at: datetime | None
    returned_at: datetime | None
    step: CurrentStep | None
    applicant_name: str | None
    cause_event_id: str


def status_record(
    change: StatusChange,
    portal_codes: Mapping[DossierStatus, int],
    *,
    source_system: str,
    recorded_at: datetime,
) -> StatusRecord:
    return StatusRecord(
        event_id=output_id(change.cause_event_id, "status"),
        event_type=_STATUS_CHANGED,
        occurred_at=change.occurred_at,
        recorded_at=recorded_at,
        source_system=source_system,
        agency_code=change.agency_code,
        dossier_code=change.dossier_code,
        schema_version=SCHEMA_VERSION,
        traceparent=None,
        # Unknown until a submission names it (dossier opened at the desk): empty string.
        procedure_code=change.procedure_code or "",
        channel=change.channel,
        status=change.status,
        portal_status_code=portal_codes[change.status],
        previous_status=change.previous,
        agency_code_handling=change.agency_code,
        received_at=change.received_at,
        appointment_date=change.appointment_date,
        finished_at=change.finished_at,
        returned_at=change.returned_at,
        step=change.step,
        applicant_name=change.applicant_name,
        cause_event_id=change.cause_event_id,
    )


class AlertRecord(OutputEnvelope, frozen=True, kw_only=True, gc=False):
    """A ``dossier.alerts`` record, its attributes the schema's fields
    (``schemas/dossier-alert``), written as ``StatusRecord`` is."""

    kind: AlertKind
    scope: AlertScope
    step_no: int | None
    deadline: date
    detected_at: datetime


def alert_record(
    alert: Alert,
    state: DossierState,
    *,
    source_system: str,
    detected_at: datetime,
    recorded_at: datetime,
) -> AlertRecord:
    return AlertRecord(
        event_id=output_id(state.dossier_code, "alert", alert.key),
        event_type=_ALERT,
        occurred_at=detected_at,
        recorded_at=recorded_at,
        source_system=source_system,
        agency_code=state.agency_code,
        dossier_code=state.dossier_code,
        schema_version=SCHEMA_VERSION,
        traceparent=None,
        kind=alert.kind,
        scope=alert.scope,
        step_no=alert.step_no,
        deadline=alert.deadline,
        detected_at=detected_at,
    )
