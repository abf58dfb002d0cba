"""Typed domain events, and the conversion from Avro-decoded records.

Every event is a frozen ``msgspec.Struct`` (built in C: a tenth of a frozen dataclass's cost,
and the worker builds one per record) carrying the envelope (``event_id``,
``occurred_at`` (aware, UTC), ``agency_code``, ``dossier_code``, ``source_system``, plus the
optional ``recorded_at``, ``schema_version`` and ``traceparent``) and its payload fields as
listed in ``docs/events.md``. ``event_type`` is a class-level constant, so an event can never
claim a type other than its class.

``from_record`` accepts a record as fastavro decodes it: timestamps are aware ``datetime``
values, dates are ``date`` values, the channel enum is its symbol (``"ONLINE"``; the portal's
numbers 1..3 are accepted too), and ``payload`` is either ``(record_name, dict)`` (fastavro
with ``return_record_name=True``; the name may be namespaced) or a plain dict, in which case
the envelope's ``event_type`` says which record it is. Anything unexpected raises
``EventShapeError`` naming the field (never its value: values may be personal data). Payload
fields not known to this version are ignored, so producers may add optional fields first.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, ClassVar, TypeAlias, cast

import msgspec

from hub.contract.event_types import DossierEventType, FeedbackEventType

# The code formats live once, in the contract (``fullmatch`` patterns).
from hub.contract.inbound import AGENCY_CODE_RE, DOSSIER_CODE_RE, PROCEDURE_CODE_RE

__all__ = [
    "AGENCY_CODE_RE",
    "DOSSIER_CODE_RE",
    "LOCAL_TZ",
    "PROCEDURE_CODE_RE",
    "ApologyIssued",
    "Channel",
    "ComplaintFiled",
    "DomainEvent",
    "DossierEvent",
    "DossierProcessed",
    "DossierReceived",
    "DossierRefused",
    "DossierSubmitted",
    "DossierSupplemented",
    "DossierTransferred",
    "DossierWithdrawn",
    "Event",
    "EventShapeError",
    "FeedbackEvent",
    "FinancialObligationPaid",
    "FinancialObligationRequested",
    "ProcessingStopped",
    "ResultReturned",
    "ServiceRated",
    "StepCompleted",
    "StepStarted",
    "SupplementRequested",
    "from_record",
    "local_date",
]


#: Vietnam has kept UTC+07:00 without daylight saving since 1975; a fixed offset avoids a
#: dependency on the host's tz database for Asia/Ho_Chi_Minh.
LOCAL_TZ = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")


_UTC_TO_LOCAL = LOCAL_TZ.utcoffset(None)


def local_date(moment: datetime) -> date:
    """The calendar date in Asia/Ho_Chi_Minh of an aware timestamp."""
    if moment.tzinfo is UTC:  # the events' own timestamps: a quarter of ``astimezone``'s cost
        return (moment + _UTC_TO_LOCAL).date()
    return moment.astimezone(LOCAL_TZ).date()


class EventShapeError(ValueError):
    """A record does not have the shape of a hub event. ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Channel(StrEnum):
    """KenhThucHien: how the applicant submitted the dossier."""

    IN_PERSON = "IN_PERSON"
    ONLINE = "ONLINE"
    POSTAL = "POSTAL"

    @property
    def portal_code(self) -> int:
        return _CHANNEL_CODES[self]


_CHANNEL_CODES: dict[Channel, int] = {Channel.IN_PERSON: 1, Channel.ONLINE: 2, Channel.POSTAL: 3}


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The envelope shared by every event."""

    event_type: ClassVar[DossierEventType | FeedbackEventType]

    event_id: str
    occurred_at: datetime
    agency_code: str
    dossier_code: str
    source_system: str
    recorded_at: datetime | None = None
    schema_version: int = 1
    traceparent: str | None = None


# --- dossier lifecycle ---------------------------------------------------------------------


class DossierSubmitted(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.SUBMITTED
    procedure_code: str
    channel: Channel
    applicant_name: str  # PII
    applicant_id_number: str | None  # PII
    submitted_at: datetime


class DossierReceived(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.RECEIVED
    received_at: datetime
    appointment_date: date | None
    official: str | None


class DossierRefused(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.REFUSED
    reason: str


class SupplementRequested(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.SUPPLEMENT_REQUESTED
    reason: str
    requested_at: datetime


class DossierSupplemented(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.SUPPLEMENTED
    supplemented_at: datetime


class FinancialObligationRequested(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.FINANCIAL_OBLIGATION_REQUESTED
    amount_vnd: int
    description: str


class FinancialObligationPaid(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.FINANCIAL_OBLIGATION_PAID
    paid_at: datetime


class StepStarted(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.STEP_STARTED
    step_no: int
    step_name: str
    official: str  # NguoiXuLy
    unit: str  # PhongBanXuLy
    step_deadline: date | None


class StepCompleted(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.STEP_COMPLETED
    step_no: int
    content: str  # NoiDungXuLy


class DossierTransferred(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.TRANSFERRED
    from_agency_code: str
    to_agency_code: str
    reason: str


class DossierProcessed(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.PROCESSED
    result_summary: str
    electronic_result: bool


class ResultReturned(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.RESULT_RETURNED
    returned_at: datetime


class ProcessingStopped(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.STOPPED
    reason: str


class DossierWithdrawn(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.WITHDRAWN
    reason: str


class ApologyIssued(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[DossierEventType] = DossierEventType.APOLOGY_ISSUED
    new_appointment_date: date
    reason: str


# --- feedback ------------------------------------------------------------------------------


class ServiceRated(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[FeedbackEventType] = FeedbackEventType.RATING
    score: int  # 1..5
    comment: str | None  # PII


class ComplaintFiled(Event, frozen=True, kw_only=True, gc=False):
    event_type: ClassVar[FeedbackEventType] = FeedbackEventType.COMPLAINT
    subject: str
    content: str  # PII


DossierEvent: TypeAlias = (
    DossierSubmitted
    | DossierReceived
    | DossierRefused
    | SupplementRequested
    | DossierSupplemented
    | FinancialObligationRequested
    | FinancialObligationPaid
    | StepStarted
    | StepCompleted
    | DossierTransferred
    | DossierProcessed
    | ResultReturned
    | ProcessingStopped
    | DossierWithdrawn
    | ApologyIssued
)
FeedbackEvent: TypeAlias = ServiceRated | ComplaintFiled
DomainEvent: TypeAlias = DossierEvent | FeedbackEvent


# --- conversion ----------------------------------------------------------------------------

_Check = Callable[[str, Any], Any]


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise EventShapeError(name, f"expected a string, got {type(value).__name__}")
    return value


def _text(name: str, value: Any) -> str:
    text = _str(name, value)
    if not text.strip():
        raise EventShapeError(name, "must not be empty")
    return text


def _opt_str(name: str, value: Any) -> str | None:
    return None if value is None else _str(name, value)


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventShapeError(name, f"expected an int, got {type(value).__name__}")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise EventShapeError(name, f"expected a boolean, got {type(value).__name__}")
    return value


def _ts(name: str, value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise EventShapeError(name, f"expected a timestamp, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise EventShapeError(name, "timestamp must be timezone-aware")
    return value.astimezone(UTC)


def _opt_ts(name: str, value: Any) -> datetime | None:
    return None if value is None else _ts(name, value)


def _date(name: str, value: Any) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise EventShapeError(name, f"expected a date, got {type(value).__name__}")
    return value


def _opt_date(name: str, value: Any) -> date | None:
    return None if value is None else _date(name, value)


def _channel(name: str, value: Any) -> Channel:
    if isinstance(value, str):
        try:
            return Channel(value)
        except ValueError:
            raise EventShapeError(name, "unknown channel symbol") from None
    if isinstance(value, int) and not isinstance(value, bool):
        for channel, code in _CHANNEL_CODES.items():
            if code == value:
                return channel
        raise EventShapeError(name, "unknown channel code")
    raise EventShapeError(name, f"expected a channel, got {type(value).__name__}")


def _score(name: str, value: Any) -> int:
    score = _int(name, value)
    if not 1 <= score <= 5:
        raise EventShapeError(name, "score must be within 1..5")
    return score


def _step_no(name: str, value: Any) -> int:
    step = _int(name, value)
    if step < 1:
        raise EventShapeError(name, "step numbers start at 1")
    return step


def _amount(name: str, value: Any) -> int:
    amount = _int(name, value)
    if amount < 0:
        raise EventShapeError(name, "amount must not be negative")
    return amount


def _pattern(regex: re.Pattern[str], what: str) -> _Check:
    def check(name: str, value: Any) -> str:
        text = _str(name, value)
        if not regex.fullmatch(text):
            raise EventShapeError(name, f"not a valid {what}")
        return text

    return check


def _uuid(name: str, value: Any) -> str:
    # fastavro returns logicalType uuid as uuid.UUID; other decoders give the string.
    if isinstance(value, uuid.UUID):
        return str(value)
    text = _str(name, value)
    try:
        uuid.UUID(text)
    except ValueError:
        raise EventShapeError(name, "not a UUID") from None
    return text


_agency = _pattern(AGENCY_CODE_RE, "agency code")
_dossier = _pattern(DOSSIER_CODE_RE, "dossier code")
_procedure = _pattern(PROCEDURE_CODE_RE, "procedure code")

_PAYLOADS: dict[str, tuple[type[Event], dict[str, _Check]]] = {
    DossierEventType.SUBMITTED: (
        DossierSubmitted,
        {
            "procedure_code": _procedure,
            "channel": _channel,
            "applicant_name": _text,
            "applicant_id_number": _opt_str,
            "submitted_at": _ts,
        },
    ),
    DossierEventType.RECEIVED: (
        DossierReceived,
        {"received_at": _ts, "appointment_date": _opt_date, "official": _opt_str},
    ),
    DossierEventType.REFUSED: (DossierRefused, {"reason": _str}),
    DossierEventType.SUPPLEMENT_REQUESTED: (
        SupplementRequested,
        {"reason": _str, "requested_at": _ts},
    ),
    DossierEventType.SUPPLEMENTED: (DossierSupplemented, {"supplemented_at": _ts}),
    DossierEventType.FINANCIAL_OBLIGATION_REQUESTED: (
        FinancialObligationRequested,
        {"amount_vnd": _amount, "description": _str},
    ),
    DossierEventType.FINANCIAL_OBLIGATION_PAID: (FinancialObligationPaid, {"paid_at": _ts}),
    DossierEventType.STEP_STARTED: (
        StepStarted,
        {
            "step_no": _step_no,
            "step_name": _str,
            "official": _str,
            "unit": _str,
            "step_deadline": _opt_date,
        },
    ),
    DossierEventType.STEP_COMPLETED: (StepCompleted, {"step_no": _step_no, "content": _str}),
    DossierEventType.TRANSFERRED: (
        DossierTransferred,
        {"from_agency_code": _agency, "to_agency_code": _agency, "reason": _str},
    ),
    DossierEventType.PROCESSED: (
        DossierProcessed,
        {"result_summary": _str, "electronic_result": _bool},
    ),
    DossierEventType.RESULT_RETURNED: (ResultReturned, {"returned_at": _ts}),
    DossierEventType.STOPPED: (ProcessingStopped, {"reason": _str}),
    DossierEventType.WITHDRAWN: (DossierWithdrawn, {"reason": _str}),
    DossierEventType.APOLOGY_ISSUED: (
        ApologyIssued,
        {"new_appointment_date": _date, "reason": _str},
    ),
    FeedbackEventType.RATING: (ServiceRated, {"score": _score, "comment": _opt_str}),
    FeedbackEventType.COMPLAINT: (ComplaintFiled, {"subject": _str, "content": _str}),
}

_ENVELOPE: dict[str, _Check] = {
    "event_id": _uuid,
    "occurred_at": _ts,
    "agency_code": _agency,
    "dossier_code": _dossier,
    "source_system": _text,
}
_ENVELOPE_OPTIONAL: dict[str, _Check] = {
    "recorded_at": _opt_ts,
    "schema_version": _int,
    "traceparent": _opt_str,
}


def _field(record: Mapping[str, Any], name: str, prefix: str = "") -> Any:
    if name not in record:
        raise EventShapeError(prefix + name, "missing")
    return record[name]


def _is_mapping(value: Any) -> bool:
    # fastavro gives dicts; the ABC check is only for other mappings (it costs a microsecond)
    return type(value) is dict or isinstance(value, Mapping)


_MISSING: Any = object()

#: ``_PAYLOADS`` with each field's error path spelt once, not per record.
_PAYLOAD_FIELDS: dict[str, tuple[type[Event], tuple[tuple[str, str, _Check], ...]]] = {
    event_type: (cls, tuple((name, f"payload.{name}", check) for name, check in checks.items()))
    for event_type, (cls, checks) in _PAYLOADS.items()
}


def from_record(record: Mapping[str, Any]) -> DomainEvent:
    """Build the typed event from an Avro-decoded record; ``EventShapeError`` on bad shape."""
    if not _is_mapping(record):
        raise EventShapeError("record", f"expected a mapping, got {type(record).__name__}")
    event_type = _str("event_type", _field(record, "event_type"))
    if event_type not in _PAYLOADS:
        raise EventShapeError("event_type", "unknown event type")
    raw_payload = _field(record, "payload")
    if isinstance(raw_payload, tuple):
        if len(raw_payload) != 2:
            raise EventShapeError("payload", "expected (record_name, fields)")
        record_name, body = raw_payload
        short_name = _str("payload", record_name).rsplit(".", 1)[-1]
        if short_name != event_type:
            raise EventShapeError("payload", "record name does not match event_type")
    else:
        body = raw_payload
    if not _is_mapping(body):
        raise EventShapeError("payload", f"expected a record, got {type(body).__name__}")

    cls, checks = _PAYLOAD_FIELDS[event_type]
    kwargs: dict[str, Any] = {}
    get = record.get
    for name, check in _ENVELOPE.items():
        value = get(name, _MISSING)
        if value is _MISSING:
            raise EventShapeError(name, "missing")
        kwargs[name] = check(name, value)
    for name, check in _ENVELOPE_OPTIONAL.items():
        value = get(name)
        if value is not None:
            kwargs[name] = check(name, value)
    get = body.get
    for name, path, check in checks:
        value = get(name, _MISSING)
        if value is _MISSING:
            raise EventShapeError(path, "missing")
        kwargs[name] = check(path, value)
    return cast(DomainEvent, cls(**kwargs))
