"""Validation at the boundary: the JSON that agency systems push to the hub.

The models mirror the Avro records in ``schemas/`` (see ``docs/events.md``), minus the two
envelope fields the hub sets itself (``recorded_at``, ``schema_version``). The sender's JSON::

    {"event_id": "…uuid…", "event_type": "DossierSubmitted",
     "occurred_at": "2025-08-05T08:00:00+07:00",
     "source_system": "one-stop-department-justice", "agency_code": "000.00.12.H40",
     "dossier_code": "000.00.12.H40-250805-0001", "traceparent": null,
     "payload": {"procedure_code": "1.001193", "channel": 2, "applicant_name": "Nguyễn Văn A", …}}

Discriminator: ``event_type`` is given once, at the top. Each payload model has a ``Literal``
``event_type`` field and ``payload`` is a pydantic discriminated union on it; a ``before``
model validator copies the top-level ``event_type`` into the payload object (when the payload
does not already carry one), so the sender writes it only once and errors point at the right
branch. A payload that carries a different ``event_type`` than the envelope is rejected
(rule ``event_type_mismatch``).

Validation context (``model_validate(data, context={...})``):

* ``now``: aware ``datetime`` the timestamps are checked against (default: ``datetime.now(UTC)``);
* ``max_future_skew``: ``timedelta`` a timestamp may lie after ``now`` (default 5 minutes);
* ``procedure_effective_from``: ``Callable[[str], date | None]`` giving the date a procedure
  code took effect, None for an unknown code. Without it the procedure checks are skipped.

Error messages and ``str(ValidationError)`` never carry input values (``hide_input_in_errors``);
:class:`FieldProblem` messages for PII fields are built from the rule alone.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from enum import Enum, StrEnum
from typing import Annotated, Any, Final, Literal, Self, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hub.contract.event_types import DossierEventType, FeedbackEventType
from hub.contract.schemas import full_name

__all__ = [
    "AGENCY_CODE_PATTERN",
    "AGENCY_CODE_RE",
    "DEFAULT_MAX_FUTURE_SKEW",
    "DOSSIER_CODE_PATTERN",
    "DOSSIER_CODE_RE",
    "MAX_CODE_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_SOURCE_SYSTEM_LENGTH",
    "MAX_TEXT_LENGTH",
    "PII_FIELD_NAMES",
    "PROCEDURE_CODE_PATTERN",
    "PROCEDURE_CODE_RE",
    "TIMESTAMP_FLOOR",
    "VN_TZ",
    "ApologyIssuedPayload",
    "Channel",
    "ComplaintFiledPayload",
    "DossierPayload",
    "DossierProcessedPayload",
    "DossierReceivedPayload",
    "DossierRefusedPayload",
    "DossierSubmittedPayload",
    "DossierSupplementedPayload",
    "DossierTransferredPayload",
    "DossierWithdrawnPayload",
    "FeedbackPayload",
    "FieldProblem",
    "FinancialObligationPaidPayload",
    "FinancialObligationRequestedPayload",
    "InboundDossierEvent",
    "InboundFeedbackEvent",
    "ProcedureLookup",
    "ProcessingStoppedPayload",
    "ResultReturnedPayload",
    "ServiceRatedPayload",
    "StepCompletedPayload",
    "StepStartedPayload",
    "SupplementRequestedPayload",
    "check_avro_record",
    "to_avro_record",
    "validate_dossier_event",
    "validate_feedback_event",
]

# --- limits and formats (docs/events.md, "Codes") ------------------------------------------

AGENCY_CODE_PATTERN: Final = r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}$"
DOSSIER_CODE_PATTERN: Final = r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}-[0-9]{6}-[0-9]{4,}$"
PROCEDURE_CODE_PATTERN: Final = r"^[1-3]\.[0-9]{6}$"
TRACEPARENT_PATTERN: Final = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def _fullmatch_re(pattern: str) -> re.Pattern[str]:
    """A pattern above compiled for ``fullmatch``: Python's ``$`` would also accept a
    trailing newline, which pydantic's regex (and the contract) does not."""
    assert pattern.startswith("^") and pattern.endswith("$")
    return re.compile(pattern[1:-1])


#: The patterns above, compiled once; use ``.fullmatch``. Every check of a code's format in
#: the hub (domain shape checks, the worker's checks below) uses these.
AGENCY_CODE_RE: Final = _fullmatch_re(AGENCY_CODE_PATTERN)
DOSSIER_CODE_RE: Final = _fullmatch_re(DOSSIER_CODE_PATTERN)
PROCEDURE_CODE_RE: Final = _fullmatch_re(PROCEDURE_CODE_PATTERN)
TRACEPARENT_RE: Final = _fullmatch_re(TRACEPARENT_PATTERN)

MAX_NAME_LENGTH: Final = 200
MAX_TEXT_LENGTH: Final = 4000
MAX_CODE_LENGTH: Final = 64
MAX_SOURCE_SYSTEM_LENGTH: Final = 100
MAX_TRACEPARENT_LENGTH: Final = 55

DEFAULT_MAX_FUTURE_SKEW: Final = timedelta(minutes=5)
#: Vietnam's local time (Asia/Ho_Chi_Minh, no DST); calendar dates are local dates.
VN_TZ: Final = timezone(timedelta(hours=7), "ICT")
#: No timestamp or calendar date in an inbound event may lie before this local date.
TIMESTAMP_FLOOR: Final = date(2015, 1, 1)

_INT32_MAX: Final = 2**31 - 1
_INT64_MAX: Final = 2**63 - 1

#: Leaf names of the fields whose values must never appear in messages.
PII_FIELD_NAMES: Final = frozenset({"applicant_name", "applicant_id_number", "comment", "content"})

ProcedureLookup = Callable[[str], date | None]


# --- building blocks --------------------------------------------------------------------------


def _nfc(value: object) -> object:
    """NFC-normalise and strip strings, so NFD-typed 'Nguyễn' equals the NFC one."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip()
    return value


def _blank_to_none(value: object) -> object:
    """For optional text: normalise, and treat an empty/blank string as absent."""
    value = _nfc(value)
    return None if value == "" else value


def _no_bool(value: object) -> object:
    """JSON ``true`` is not a number here (pydantic would read it as 1)."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def _context(info: ValidationInfo) -> Mapping[str, Any]:
    ctx = info.context
    return ctx if isinstance(ctx, Mapping) else {}


def _now(info: ValidationInfo) -> datetime:
    now = _context(info).get("now")
    if not isinstance(now, datetime):
        return datetime.now(UTC)
    return now if now.utcoffset() is not None else now.replace(tzinfo=UTC)


def _skew(info: ValidationInfo) -> timedelta:
    skew = _context(info).get("max_future_skew")
    return skew if isinstance(skew, timedelta) else DEFAULT_MAX_FUTURE_SKEW


def _procedure_lookup(info: ValidationInfo) -> ProcedureLookup | None:
    lookup = _context(info).get("procedure_effective_from")
    return lookup if callable(lookup) else None


def _local_date(value: datetime) -> date:
    return value.astimezone(VN_TZ).date()


def _check_timestamp(value: datetime, info: ValidationInfo) -> datetime:
    now = _now(info)
    skew = _skew(info)
    if value > now + skew:
        raise PydanticCustomError(
            "in_future",
            "timestamp is more than {max_future_skew} after the hub's clock",
            {"max_future_skew": str(skew)},
        )
    if _local_date(value) < TIMESTAMP_FLOOR:
        raise PydanticCustomError(
            "before_floor", "timestamp is before {floor}", {"floor": TIMESTAMP_FLOOR.isoformat()}
        )
    return value


def _check_date(value: date) -> date:
    if value < TIMESTAMP_FLOOR:
        raise PydanticCustomError(
            "before_floor", "date is before {floor}", {"floor": TIMESTAMP_FLOOR.isoformat()}
        )
    return value


@functools.lru_cache(maxsize=4096)
def _valid_yymmdd(yymmdd: str) -> bool:
    # cached: a day's dossiers share the date part, and strptime costs microseconds
    try:
        datetime.strptime(yymmdd, "%y%m%d")
    except ValueError:
        return False
    return True


def _check_dossier_code_date(value: str) -> str:
    if not _valid_yymmdd(value.split("-")[1]):
        raise PydanticCustomError("pattern", "dossier code's date part is not a valid yymmdd date")
    return value


def _check_procedure_known(value: str, info: ValidationInfo) -> str:
    lookup = _procedure_lookup(info)
    if lookup is not None and lookup(value) is None:
        raise PydanticCustomError("unknown_procedure", "unknown procedure code")
    return value


def _str(max_length: int, pattern: str | None = None) -> StringConstraints:
    return StringConstraints(min_length=1, max_length=max_length, pattern=pattern)


Name = Annotated[str, _str(MAX_NAME_LENGTH), BeforeValidator(_nfc)]
Text = Annotated[str, _str(MAX_TEXT_LENGTH), BeforeValidator(_nfc)]
OptionalName = Annotated[Name | None, BeforeValidator(_blank_to_none)]
OptionalText = Annotated[Text | None, BeforeValidator(_blank_to_none)]
IdNumber = Annotated[str, _str(MAX_CODE_LENGTH), BeforeValidator(_nfc)]
OptionalIdNumber = Annotated[IdNumber | None, BeforeValidator(_blank_to_none)]
SourceSystem = Annotated[str, _str(MAX_SOURCE_SYSTEM_LENGTH), BeforeValidator(_nfc)]
AgencyCode = Annotated[str, _str(MAX_CODE_LENGTH, AGENCY_CODE_PATTERN), BeforeValidator(_nfc)]
DossierCode = Annotated[
    str,
    _str(MAX_CODE_LENGTH, DOSSIER_CODE_PATTERN),
    BeforeValidator(_nfc),
    AfterValidator(_check_dossier_code_date),
]
ProcedureCode = Annotated[
    str,
    _str(MAX_CODE_LENGTH, PROCEDURE_CODE_PATTERN),
    BeforeValidator(_nfc),
    AfterValidator(_check_procedure_known),
]
Traceparent = Annotated[
    str, _str(MAX_TRACEPARENT_LENGTH, TRACEPARENT_PATTERN), BeforeValidator(_nfc)
]
OptionalTraceparent = Annotated[Traceparent | None, BeforeValidator(_blank_to_none)]
Timestamp = Annotated[AwareDatetime, AfterValidator(_check_timestamp)]
LocalDate = Annotated[date, AfterValidator(_check_date)]
StepNo = Annotated[int, BeforeValidator(_no_bool), Field(ge=1, le=_INT32_MAX)]
Score = Annotated[int, BeforeValidator(_no_bool), Field(ge=1, le=5)]
AmountVnd = Annotated[int, BeforeValidator(_no_bool), Field(ge=0, le=_INT64_MAX)]


class Channel(StrEnum):
    """Submission channel (KenhThucHien); the values are the Avro enum symbols."""

    IN_PERSON = "IN_PERSON"  # 1: at a one-stop desk
    ONLINE = "ONLINE"  # 2
    POSTAL = "POSTAL"  # 3: public postal service

    @property
    def code(self) -> int:
        """The national portal's number for the channel (1, 2 or 3)."""
        return _CHANNEL_CODES[self]


_CHANNEL_CODES: Final = {Channel.IN_PERSON: 1, Channel.ONLINE: 2, Channel.POSTAL: 3}
_CHANNEL_BY_CODE: Final = {code: channel for channel, code in _CHANNEL_CODES.items()}


def _channel(value: object) -> Channel:
    if isinstance(value, int) and not isinstance(value, bool) and value in _CHANNEL_BY_CODE:
        return _CHANNEL_BY_CODE[value]
    if isinstance(value, str):
        text = str(_nfc(value)).upper()
        if text.isdigit() and int(text) in _CHANNEL_BY_CODE:
            return _CHANNEL_BY_CODE[int(text)]
        if text in Channel.__members__:
            return Channel[text]
    raise PydanticCustomError("enum", "channel must be 1, 2, 3 or one of IN_PERSON, ONLINE, POSTAL")


ChannelField = Annotated[Channel, BeforeValidator(_channel)]


# --- payload models ---------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class DossierSubmittedPayload(_Model):
    event_type: Literal["DossierSubmitted"] = "DossierSubmitted"
    procedure_code: ProcedureCode
    channel: ChannelField
    applicant_name: Name
    applicant_id_number: OptionalIdNumber = None
    submitted_at: Timestamp


class DossierReceivedPayload(_Model):
    event_type: Literal["DossierReceived"] = "DossierReceived"
    received_at: Timestamp
    appointment_date: LocalDate | None = None
    official: OptionalName = None


class DossierRefusedPayload(_Model):
    event_type: Literal["DossierRefused"] = "DossierRefused"
    reason: Text


class SupplementRequestedPayload(_Model):
    event_type: Literal["SupplementRequested"] = "SupplementRequested"
    reason: Text
    requested_at: Timestamp


class DossierSupplementedPayload(_Model):
    event_type: Literal["DossierSupplemented"] = "DossierSupplemented"
    supplemented_at: Timestamp


class FinancialObligationRequestedPayload(_Model):
    event_type: Literal["FinancialObligationRequested"] = "FinancialObligationRequested"
    amount_vnd: AmountVnd
    description: Text


class FinancialObligationPaidPayload(_Model):
    event_type: Literal["FinancialObligationPaid"] = "FinancialObligationPaid"
    paid_at: Timestamp


class StepStartedPayload(_Model):
    event_type: Literal["StepStarted"] = "StepStarted"
    step_no: StepNo
    step_name: Name
    official: Name
    unit: Name
    step_deadline: LocalDate | None = None


class StepCompletedPayload(_Model):
    event_type: Literal["StepCompleted"] = "StepCompleted"
    step_no: StepNo
    content: Text


class DossierTransferredPayload(_Model):
    event_type: Literal["DossierTransferred"] = "DossierTransferred"
    from_agency_code: AgencyCode
    to_agency_code: AgencyCode
    reason: Text


class DossierProcessedPayload(_Model):
    event_type: Literal["DossierProcessed"] = "DossierProcessed"
    result_summary: Text
    electronic_result: bool


class ResultReturnedPayload(_Model):
    event_type: Literal["ResultReturned"] = "ResultReturned"
    returned_at: Timestamp


class ProcessingStoppedPayload(_Model):
    event_type: Literal["ProcessingStopped"] = "ProcessingStopped"
    reason: Text


class DossierWithdrawnPayload(_Model):
    event_type: Literal["DossierWithdrawn"] = "DossierWithdrawn"
    reason: Text


class ApologyIssuedPayload(_Model):
    event_type: Literal["ApologyIssued"] = "ApologyIssued"
    new_appointment_date: LocalDate
    reason: Text


class ServiceRatedPayload(_Model):
    event_type: Literal["ServiceRated"] = "ServiceRated"
    score: Score
    comment: OptionalText = None


class ComplaintFiledPayload(_Model):
    event_type: Literal["ComplaintFiled"] = "ComplaintFiled"
    subject: Name
    content: Text


DossierPayload = Annotated[
    DossierSubmittedPayload
    | DossierReceivedPayload
    | DossierRefusedPayload
    | SupplementRequestedPayload
    | DossierSupplementedPayload
    | FinancialObligationRequestedPayload
    | FinancialObligationPaidPayload
    | StepStartedPayload
    | StepCompletedPayload
    | DossierTransferredPayload
    | DossierProcessedPayload
    | ResultReturnedPayload
    | ProcessingStoppedPayload
    | DossierWithdrawnPayload
    | ApologyIssuedPayload,
    Field(discriminator="event_type"),
]

FeedbackPayload = Annotated[
    ServiceRatedPayload | ComplaintFiledPayload, Field(discriminator="event_type")
]

_PAYLOAD_TAGS: Final = frozenset(
    [t.value for t in DossierEventType] + [t.value for t in FeedbackEventType]
)


# --- envelopes --------------------------------------------------------------------------------


class _Envelope(_Model):
    """Fields shared by every inbound event; ``recorded_at``/``schema_version`` are the hub's."""

    event_id: UUID
    occurred_at: Timestamp
    source_system: SourceSystem
    agency_code: AgencyCode
    dossier_code: DossierCode
    traceparent: OptionalTraceparent = None

    @model_validator(mode="before")
    @classmethod
    def _copy_event_type_into_payload(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        event_type = data.get("event_type")
        payload = data.get("payload")
        if not (isinstance(event_type, str) and isinstance(payload, Mapping)):
            return data
        event_type = _nfc(event_type)
        if "event_type" in payload and _nfc(payload["event_type"]) != event_type:
            raise _mismatch()
        return {**data, "payload": {**payload, "event_type": event_type}}

    def _check_payload_type(self, event_type: str, payload_type: str) -> None:
        if event_type != payload_type:  # only reachable with an already-built payload model
            raise _mismatch()


def _mismatch() -> PydanticCustomError:
    return PydanticCustomError(
        "event_type_mismatch",
        "payload.event_type differs from the envelope's event_type",
        {"path": "payload.event_type"},
    )


class InboundDossierEvent(_Envelope):
    """A dossier lifecycle event as an agency system pushes it (topic ``dossier.events``)."""

    event_type: Annotated[DossierEventType, BeforeValidator(_nfc)]
    payload: DossierPayload

    @model_validator(mode="after")
    def _check_consistency(self, info: ValidationInfo) -> Self:
        self._check_payload_type(self.event_type.value, self.payload.event_type)
        lookup = _procedure_lookup(info)
        if lookup is None or not isinstance(self.payload, DossierSubmittedPayload):
            return self
        effective_from = lookup(self.payload.procedure_code)
        if effective_from is None:  # reported by the field validator already
            return self
        for path, value in (
            ("occurred_at", self.occurred_at),
            ("payload.submitted_at", self.payload.submitted_at),
        ):
            if _local_date(value) < effective_from:
                raise PydanticCustomError(
                    "before_procedure",
                    "{path} is before procedure {procedure_code} took effect on {effective_from}",
                    {
                        "path": path,
                        "procedure_code": self.payload.procedure_code,
                        "effective_from": effective_from.isoformat(),
                    },
                )
        return self


class InboundFeedbackEvent(_Envelope):
    """Citizen feedback on a dossier as an agency system pushes it (topic ``feedback.events``)."""

    event_type: Annotated[FeedbackEventType, BeforeValidator(_nfc)]
    payload: FeedbackPayload

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        self._check_payload_type(self.event_type.value, self.payload.event_type)
        return self


# --- problems ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with an inbound event: where (dotted path), which rule, and why.

    ``path`` is relative to the event, e.g. ``payload.appointment_date`` ("" for the whole
    event). ``message`` never contains the submitted value of a PII field.
    """

    path: str
    rule: str
    message: str


_RULES: Final = {
    "missing": "missing",
    "extra_forbidden": "extra",
    "string_too_long": "too_long",
    "string_too_short": "too_short",
    "string_pattern_mismatch": "pattern",
    "timezone_aware": "timezone",
    "greater_than": "out_of_range",
    "greater_than_equal": "out_of_range",
    "less_than": "out_of_range",
    "less_than_equal": "out_of_range",
    "literal_error": "enum",
    "union_tag_invalid": "unknown_event_type",
    "union_tag_not_found": "type",
    "json_invalid": "json",
    "json_type": "json",
}

_CUSTOM_RULES: Final = frozenset(
    {
        "enum",
        "pattern",
        "in_future",
        "before_floor",
        "before_procedure",
        "unknown_procedure",
        "event_type_mismatch",
    }
)

_PII_MESSAGES: Final = {
    "missing": "field required",
    "too_long": "too long (at most {max_length} characters)",
    "too_short": "must not be empty",
    "type": "wrong type",
    "extra": "not a field of this event",
}


def _rule(error_type: str) -> str:
    if error_type in _RULES:
        return _RULES[error_type]
    if error_type in _CUSTOM_RULES:
        return error_type
    return "type"


def _path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        if i > 0 and loc[i - 1] == "payload" and part in _PAYLOAD_TAGS:
            continue  # the discriminated-union branch pydantic adds to the location
        parts.append(str(part))
    return ".".join(parts)


def _problems(exc: ValidationError) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    for error in exc.errors(include_input=False, include_url=False):
        ctx = error.get("ctx") or {}
        path = str(ctx["path"]) if "path" in ctx else _path(error["loc"])
        rule = _rule(error["type"])
        if path == "event_type" and rule == "enum":
            rule = "unknown_event_type"
        message = error["msg"]
        if path.rsplit(".", 1)[-1] in PII_FIELD_NAMES:
            template = _PII_MESSAGES.get(rule, "invalid ({rule})")
            message = template.format(rule=rule, max_length=ctx.get("max_length", "?"))
        problems.append(FieldProblem(path=path, rule=rule, message=message))
    if any(p.path == "event_type" for p in problems):
        # Without a valid event_type there is no payload branch to check against.
        dropped = {"type", "unknown_event_type"}
        problems = [p for p in problems if not (p.path == "payload" and p.rule in dropped)]
    return problems


_M = TypeVar("_M", InboundDossierEvent, InboundFeedbackEvent)


def _validate(
    model: type[_M],
    data: object,
    now: datetime | None,
    procedure_effective_from: ProcedureLookup | None,
    max_future_skew: timedelta,
) -> _M | list[FieldProblem]:
    context: dict[str, Any] = {
        "now": now if now is not None else datetime.now(UTC),
        "max_future_skew": max_future_skew,
    }
    if procedure_effective_from is not None:
        context["procedure_effective_from"] = procedure_effective_from
    try:
        if isinstance(data, str | bytes | bytearray):
            return model.model_validate_json(data, context=context)
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        return _problems(exc)


def validate_dossier_event(
    data: object,
    *,
    now: datetime | None = None,
    procedure_effective_from: ProcedureLookup | None = None,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
) -> InboundDossierEvent | list[FieldProblem]:
    """Validate a dossier event (a parsed JSON object, or JSON text/bytes).

    Returns the model, or every problem found (never an empty list). ``now`` defaults to the
    current UTC time; without ``procedure_effective_from`` the procedure checks are skipped.
    """
    return _validate(InboundDossierEvent, data, now, procedure_effective_from, max_future_skew)


def validate_feedback_event(
    data: object,
    *,
    now: datetime | None = None,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
) -> InboundFeedbackEvent | list[FieldProblem]:
    """Validate a feedback event; same conventions as :func:`validate_dossier_event`."""
    return _validate(InboundFeedbackEvent, data, now, None, max_future_skew)


# --- to Avro ----------------------------------------------------------------------------------


def _millis(value: datetime) -> datetime:
    """UTC, truncated to the millisecond (what ``timestamp-millis`` keeps)."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _avro_value(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return _millis(value)
    return value


def to_avro_record(
    event: InboundDossierEvent | InboundFeedbackEvent,
    *,
    recorded_at: datetime,
    schema_version: int,
) -> dict[str, Any]:
    """The dict ``fastavro.schemaless_writer`` takes for the dossier-event/feedback-event schema.

    The payload is the tuple ``(full record name, fields)`` so the union branch is explicit.
    Timestamps come out as aware UTC datetimes truncated to milliseconds, ids as ``UUID``,
    enums as their symbol, so the record equals what ``schemaless_reader`` returns with
    ``return_record_name=True``.
    """
    if recorded_at.utcoffset() is None:
        raise ValueError("recorded_at must be timezone-aware")
    if schema_version < 1:
        raise ValueError("schema_version must be >= 1")
    payload = event.payload
    branch = {
        name: _avro_value(getattr(payload, name))
        for name in type(payload).model_fields
        if name != "event_type"
    }
    return {
        "event_id": event.event_id,
        "event_type": event.event_type.value,
        "occurred_at": _millis(event.occurred_at),
        "recorded_at": _millis(recorded_at),
        "source_system": event.source_system,
        "agency_code": event.agency_code,
        "dossier_code": event.dossier_code,
        "schema_version": schema_version,
        "traceparent": event.traceparent,
        "payload": (full_name(event.event_type.value), branch),
    }


# --- precompiled checks for records already typed by the Avro schema ---------------------------
#
# The worker reads Avro records any Kafka client may have written. Their types are fixed by the
# schema (and by ``hub.domain.events.from_record``, which runs first), so the pydantic models'
# type coercion has nothing to do there; what a foreign client can still get wrong are the
# rules beyond types: lengths, code formats, clocks, procedure dates, NFC text. The checks
# below are those same rules, precompiled per event type, applied to the decoded record with
# no model round trip. They report exactly the problems (paths, rules, messages) the models
# would report for the same values; ``tests/unit/test_avro_checks.py`` proves it on a table of
# bad records, and that each table below lists exactly its model's fields.

_Fixes = dict[str, Any]
_Problems = list[FieldProblem]


@dataclass(frozen=True, slots=True)
class _Clock:
    """What timestamp checks need: the hub's clock plus the allowed future skew."""

    latest: datetime  # now + max_future_skew
    skew: timedelta  # max_future_skew, shown in the message as the model shows it
    procedure_effective_from: ProcedureLookup | None


def _problem(problems: _Problems, path: str, rule: str, message: str, **ctx: Any) -> None:
    if path.rsplit(".", 1)[-1] in PII_FIELD_NAMES:
        template = _PII_MESSAGES.get(rule, "invalid ({rule})")
        message = template.format(rule=rule, max_length=ctx.get("max_length", "?"))
    problems.append(FieldProblem(path=path, rule=rule, message=message))


def _normalised(value: str) -> str:
    # ``normalize`` and ``strip`` return the very same object when nothing changes (the common
    # case), which the callers test with ``is`` to know whether to record a fix.
    return unicodedata.normalize("NFC", value).strip()


def _text_check(max_length: int, pattern: re.Pattern[str] | None = None) -> _Check:
    def check(
        path: str, value: Any, problems: _Problems, fixes: _Fixes, field: str, clock: _Clock
    ) -> bool:
        text = _normalised(value)
        if text is not value:
            fixes[field] = text
        if not text:
            _problem(problems, path, "too_short", "String should have at least 1 character")
        elif len(text) > max_length:
            _problem(
                problems, path, "too_long",
                f"String should have at most {max_length} characters", max_length=max_length,
            )  # fmt: skip
        elif pattern is not None and not pattern.fullmatch(text):
            _problem(
                problems, path, "pattern", f"String should match pattern '^{pattern.pattern}$'"
            )
        else:
            return True
        return False

    return check


def _optional(check: _Check) -> _Check:
    """``None`` stays absent, and so does blank text (``_blank_to_none``)."""

    def optional(
        path: str, value: Any, problems: _Problems, fixes: _Fixes, field: str, clock: _Clock
    ) -> bool:
        if value is None:
            return True
        if not _normalised(value):
            fixes[field] = None
            return True
        return check(path, value, problems, fixes, field, clock)

    return optional


def _check_ts(
    path: str, value: Any, problems: _Problems, fixes: _Fixes, field: str, clock: _Clock
) -> bool:
    if value > clock.latest:
        _problem(
            problems,
            path,
            "in_future",
            f"timestamp is more than {clock.skew} after the hub's clock",
        )
        return False
    if _local_date(value) < TIMESTAMP_FLOOR:
        _problem(problems, path, "before_floor", f"timestamp is before {TIMESTAMP_FLOOR}")
        return False
    if value.microsecond % 1000:  # what ``timestamp-millis`` would have kept (``_millis``)
        fixes[field] = _millis(value)
    return True


def _check_date_value(
    path: str, value: Any, problems: _Problems, fixes: _Fixes, field: str, clock: _Clock
) -> bool:
    if value < TIMESTAMP_FLOOR:
        _problem(problems, path, "before_floor", f"date is before {TIMESTAMP_FLOOR}")
        return False
    return True


def _check_opt_date(
    path: str, value: Any, problems: _Problems, fixes: _Fixes, field: str, clock: _Clock
) -> bool:
    return value is None or _check_date_value(path, value, problems, fixes, field, clock)


def _range_check(low: int, high: int) -> _Check:
    def check(
        path: str, value: Any, problems: _Problems, fixes: _Fixes, field: str, clock: _Clock
    ) -> bool:
        if value < low:
            _problem(
                problems, path, "out_of_range", f"Input should be greater than or equal to {low}"
            )
        elif value > high:
            _problem(
                problems, path, "out_of_range", f"Input should be less than or equal to {high}"
            )
        else:
            return True
        return False

    return check


def _accept(
    path: str, value: Any, problems: _Problems, fixes: _Fixes, field: str, clock: _Clock
) -> bool:
    return True  # the schema's type (a bool, a channel symbol) is the whole rule


_check_name = _text_check(MAX_NAME_LENGTH)
_check_text = _text_check(MAX_TEXT_LENGTH)
_check_id_number = _text_check(MAX_CODE_LENGTH)
_check_agency = _text_check(MAX_CODE_LENGTH, AGENCY_CODE_RE)
_check_procedure_format = _text_check(MAX_CODE_LENGTH, PROCEDURE_CODE_RE)
_check_dossier_format = _text_check(MAX_CODE_LENGTH, DOSSIER_CODE_RE)


def _check_dossier(
    path: str, value: Any, problems: _Problems, fixes: _Fixes, field: str, clock: _Clock
) -> bool:
    if not _check_dossier_format(path, value, problems, fixes, field, clock):
        return False
    try:
        _check_dossier_code_date(fixes.get(field, value))
    except PydanticCustomError as exc:
        _problem(problems, path, "pattern", exc.message())
        return False
    return True


def _check_procedure(
    path: str, value: Any, problems: _Problems, fixes: _Fixes, field: str, clock: _Clock
) -> bool:
    if not _check_procedure_format(path, value, problems, fixes, field, clock):
        return False
    lookup = clock.procedure_effective_from
    if lookup is not None and lookup(value) is None:
        _problem(problems, path, "unknown_procedure", "unknown procedure code")
        return False
    return True


_Check = Callable[[str, Any, _Problems, _Fixes, str, _Clock], bool]

#: The envelope, in the models' field order (pydantic reports problems in that order).
_ENVELOPE_CHECKS: Final[tuple[tuple[str, _Check], ...]] = (
    ("event_id", _accept),  # a UUID by then (``from_record``); canonicalised by the caller
    ("occurred_at", _check_ts),
    ("source_system", _text_check(MAX_SOURCE_SYSTEM_LENGTH)),
    ("agency_code", _check_agency),
    ("dossier_code", _check_dossier),
    ("traceparent", _optional(_text_check(MAX_TRACEPARENT_LENGTH, TRACEPARENT_RE))),
    ("event_type", _accept),  # one of the known types by then (``from_record``)
)
#: Envelope names the record may carry that are the hub's own (not checked, not "extra").
_ENVELOPE_OWN: Final = frozenset({"recorded_at", "schema_version", "payload"})
_ENVELOPE_NAMES: Final = frozenset(name for name, _ in _ENVELOPE_CHECKS) | _ENVELOPE_OWN

_OPT_NAME = _optional(_check_name)
_OPT_TEXT = _optional(_check_text)

#: Per event type, the payload fields in model order with their checks.
_PAYLOAD_CHECKS: Final[dict[str, tuple[tuple[str, _Check], ...]]] = {
    "DossierSubmitted": (
        ("procedure_code", _check_procedure),
        ("channel", _accept),
        ("applicant_name", _check_name),
        ("applicant_id_number", _optional(_check_id_number)),
        ("submitted_at", _check_ts),
    ),
    "DossierReceived": (
        ("received_at", _check_ts),
        ("appointment_date", _check_opt_date),
        ("official", _OPT_NAME),
    ),
    "DossierRefused": (("reason", _check_text),),
    "SupplementRequested": (("reason", _check_text), ("requested_at", _check_ts)),
    "DossierSupplemented": (("supplemented_at", _check_ts),),
    "FinancialObligationRequested": (
        ("amount_vnd", _range_check(0, _INT64_MAX)),
        ("description", _check_text),
    ),
    "FinancialObligationPaid": (("paid_at", _check_ts),),
    "StepStarted": (
        ("step_no", _range_check(1, _INT32_MAX)),
        ("step_name", _check_name),
        ("official", _check_name),
        ("unit", _check_name),
        ("step_deadline", _check_opt_date),
    ),
    "StepCompleted": (("step_no", _range_check(1, _INT32_MAX)), ("content", _check_text)),
    "DossierTransferred": (
        ("from_agency_code", _check_agency),
        ("to_agency_code", _check_agency),
        ("reason", _check_text),
    ),
    "DossierProcessed": (("result_summary", _check_text), ("electronic_result", _accept)),
    "ResultReturned": (("returned_at", _check_ts),),
    "ProcessingStopped": (("reason", _check_text),),
    "DossierWithdrawn": (("reason", _check_text),),
    "ApologyIssued": (("new_appointment_date", _check_date_value), ("reason", _check_text)),
    "ServiceRated": (("score", _range_check(1, 5)), ("comment", _OPT_TEXT)),
    "ComplaintFiled": (("subject", _check_name), ("content", _check_text)),
}
_PAYLOAD_NAMES: Final = {
    event_type: frozenset(name for name, _ in checks) | {"event_type"}
    for event_type, checks in _PAYLOAD_CHECKS.items()
}
_EXTRA: Final = "Extra inputs are not permitted"


def check_avro_record(
    record: Mapping[str, Any],
    *,
    now: datetime,
    procedure_effective_from: ProcedureLookup | None = None,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
) -> tuple[list[FieldProblem], dict[str, Any]]:
    """The boundary rules for a record decoded from the Avro topics: ``(problems, fixes)``.

    ``record`` is what ``AvroDeserializer`` returns and ``hub.domain.events.from_record``
    accepted (so every field has its schema's type). ``problems`` are those the pydantic
    models would report for the same values (empty: valid); ``fixes`` maps the fields whose
    value the models would normalise (NFC and stripped text, blank optional text as None,
    timestamps to the millisecond) to the normalised value, by field name (payload fields by
    their own name; event and payload field names never collide).
    """
    if now.utcoffset() is None:
        now = now.replace(tzinfo=UTC)
    clock = _Clock(now + max_future_skew, max_future_skew, procedure_effective_from)
    problems: _Problems = []
    fixes: _Fixes = {}
    raw_payload = record["payload"]
    body = raw_payload[1] if isinstance(raw_payload, tuple) else raw_payload
    event_type = record["event_type"]
    if "event_type" in body and _nfc(body["event_type"]) != _nfc(event_type):
        # The model's before-validator refuses this first, and alone.
        exc = _mismatch()
        return [FieldProblem("payload.event_type", "event_type_mismatch", exc.message())], fixes
    for name, check in _ENVELOPE_CHECKS:
        value = record.get(name)
        if value is not None or name == "traceparent":
            check(name, value, problems, fixes, name, clock)
    for name, check in _PAYLOAD_CHECKS[event_type]:
        check(f"payload.{name}", body[name], problems, fixes, name, clock)
    names = _PAYLOAD_NAMES[event_type]
    for name in body:
        if name not in names:
            _problem(problems, f"payload.{name}", "extra", _EXTRA)
    for name in record:
        if name not in _ENVELOPE_NAMES:
            _problem(problems, name, "extra", _EXTRA)
    if not problems and procedure_effective_from is not None and event_type == "DossierSubmitted":
        _check_procedure_dates(record, body, fixes, procedure_effective_from, problems)
    return problems, fixes


def _check_procedure_dates(
    record: Mapping[str, Any],
    body: Mapping[str, Any],
    fixes: _Fixes,
    lookup: ProcedureLookup,
    problems: _Problems,
) -> None:
    """The model validator of ``InboundDossierEvent``: no submission before its procedure."""
    code = fixes.get("procedure_code", body["procedure_code"])
    effective_from = lookup(code)
    if effective_from is None:
        return
    for path, value in (
        ("occurred_at", record["occurred_at"]),
        ("payload.submitted_at", body["submitted_at"]),
    ):
        if _local_date(value) < effective_from:
            problems.append(
                FieldProblem(
                    path,
                    "before_procedure",
                    f"{path} is before procedure {code} took effect on "
                    f"{effective_from.isoformat()}",
                )
            )
            return
