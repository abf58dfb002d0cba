"""The worker's fast path from an Avro-decoded record to a checked domain event (issue 13).

The exact path is two passes: ``hub.domain.events.from_record`` (the record's shape, field by
field) and then ``hub.contract.inbound.check_avro_record`` (the connectors' rules: lengths, code
formats, clocks, procedure dates, NFC text), whose fixes are applied to the event. Both are
general: they report every problem with its path, rule and message, and normalise what the
models would normalise. Almost every record a worker reads is valid and already normal, and
for those the two passes do a great deal of bookkeeping to find nothing.

``fast_event`` is one pass that only *accepts*: per event type, one function generated from a
table of the fields (below) tests each value against the intersection of both passes' rules, in
their cheapest form (``type(v) is str`` rather than ``isinstance``; ``str.isascii`` before
``unicodedata.is_normalized``; one comparison per timestamp bound), and builds the event.
Anything the table does not accept outright (any problem, anything either pass would fix or
normalise, a record from a newer writer schema with extra fields, a plain-dict payload, an
event id spelt as a string in another form) returns ``None``, and the caller runs the exact
path, so dead-letter reasons, details and fixes come from the exact code alone.
``tests/unit/test_intake.py`` requires the event built here to equal the exact path's event
for every record accepted, and that the valid records of every type are accepted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any, Final
from uuid import UUID

from hub.contract.inbound import (
    _INT32_MAX,
    _INT64_MAX,
    AGENCY_CODE_RE,
    DOSSIER_CODE_RE,
    MAX_CODE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SOURCE_SYSTEM_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_TRACEPARENT_LENGTH,
    PROCEDURE_CODE_RE,
    TIMESTAMP_FLOOR,
    TRACEPARENT_RE,
    VN_TZ,
    ProcedureLookup,
    _valid_yymmdd,
)
from hub.domain.events import _PAYLOADS, Channel, DomainEvent

__all__ = ["FIELDS", "fast_event"]

#: A field's kind and its parameters: ("text", max length, pattern or None),
#: ("opt_text", ...), ("ts",), ("date",), ("opt_date",), ("int", low, high), ("bool",),
#: ("channel",), ("procedure",). The limits are those of ``check_avro_record``'s tables
#: (``_PAYLOAD_CHECKS``); ``from_record``'s own ranges lie inside them where it has any.
_Spec = tuple[Any, ...]
_NAME: Final = ("text", MAX_NAME_LENGTH, None)
_TEXT: Final = ("text", MAX_TEXT_LENGTH, None)
_AGENCY: Final = ("text", MAX_CODE_LENGTH, AGENCY_CODE_RE)
_TS: Final = ("ts",)

#: The payload fields of every event type, in the order of the models (and ``_PAYLOAD_CHECKS``).
FIELDS: Final[dict[str, tuple[tuple[str, _Spec], ...]]] = {
    "DossierSubmitted": (
        ("procedure_code", ("procedure",)),
        ("channel", ("channel",)),
        ("applicant_name", _NAME),
        ("applicant_id_number", ("opt_text", MAX_CODE_LENGTH, None)),
        ("submitted_at", _TS),
    ),
    "DossierReceived": (
        ("received_at", _TS),
        ("appointment_date", ("opt_date",)),
        ("official", ("opt_text", MAX_NAME_LENGTH, None)),
    ),
    "DossierRefused": (("reason", _TEXT),),
    "SupplementRequested": (("reason", _TEXT), ("requested_at", _TS)),
    "DossierSupplemented": (("supplemented_at", _TS),),
    "FinancialObligationRequested": (
        ("amount_vnd", ("int", 0, _INT64_MAX)),
        ("description", _TEXT),
    ),
    "FinancialObligationPaid": (("paid_at", _TS),),
    "StepStarted": (
        ("step_no", ("int", 1, _INT32_MAX)),
        ("step_name", _NAME),
        ("official", _NAME),
        ("unit", _NAME),
        ("step_deadline", ("opt_date",)),
    ),
    "StepCompleted": (("step_no", ("int", 1, _INT32_MAX)), ("content", _TEXT)),
    "DossierTransferred": (
        ("from_agency_code", _AGENCY),
        ("to_agency_code", _AGENCY),
        ("reason", _TEXT),
    ),
    "DossierProcessed": (("result_summary", _TEXT), ("electronic_result", ("bool",))),
    "ResultReturned": (("returned_at", _TS),),
    "ProcessingStopped": (("reason", _TEXT),),
    "DossierWithdrawn": (("reason", _TEXT),),
    "ApologyIssued": (("new_appointment_date", ("date",)), ("reason", _TEXT)),
    "ServiceRated": (("score", ("int", 1, 5)), ("comment", ("opt_text", MAX_TEXT_LENGTH, None))),
    "ComplaintFiled": (("subject", _NAME), ("content", _TEXT)),
}

#: What fastavro gives for a record of the hub's schema: every envelope field, no other.
_ENVELOPE_KEYS: Final = frozenset(
    {
        "event_id",
        "event_type",
        "occurred_at",
        "recorded_at",
        "source_system",
        "agency_code",
        "dossier_code",
        "schema_version",
        "traceparent",
        "payload",
    }
)

#: The first instant whose local date is not before ``TIMESTAMP_FLOOR``: a timestamp at or
#: after it passes the floor check (``_local_date(value) < TIMESTAMP_FLOOR`` is false). In
#: UTC, as the timestamps are: comparing datetimes of two different tzinfo objects costs ten
#: times as much (each side's offset is asked for).
_FLOOR_INSTANT: Final = datetime.combine(TIMESTAMP_FLOOR, time(), VN_TZ).astimezone(UTC)

_CHANNEL_SYMBOLS: Final = {channel.value: channel for channel in Channel}

#: ``str(uuid.UUID(...))``'s spelling: a string event id in it needs no canonicalising.
_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _is_nfc(text: str) -> bool:
    return unicodedata.is_normalized("NFC", text)


# --- code generation ---------------------------------------------------------------------
#
# Each snippet reads the value ``v`` and either leaves the event's value in ``v`` or returns
# None (not accepted here). A text value is accepted when it is already what the exact path
# would make of it: non-empty, stripped (``strip`` returns the very object when nothing is
# stripped), NFC (ASCII text is), within its length, matching its pattern.


def _text_lines(max_length: int, pattern: str | None) -> list[str]:
    test = (
        "type(v) is not str or not v or v.strip() is not v"
        f" or len(v) > {max_length} or not (v.isascii() or _is_nfc(v))"
    )
    if pattern is not None:
        test += f" or {pattern}(v) is None"
    return [f"if {test}:", "    return None"]


def _field_lines(spec: _Spec, scope: dict[str, Any]) -> list[str]:
    kind = spec[0]
    if kind in ("text", "opt_text"):
        pattern = None
        if spec[2] is not None:
            pattern = f"p{len(scope)}"
            scope[pattern] = spec[2].fullmatch
        lines = _text_lines(spec[1], pattern)
        if kind == "opt_text":
            return ["if v is not None:", *("    " + line for line in lines)]
        return lines
    if kind == "ts":
        # fastavro's timestamps are in ``UTC`` itself, which ``from_record`` keeps as they are
        return [
            "if (type(v) is not datetime or v.tzinfo is not UTC or v.microsecond % 1000",
            "        or v > latest or v < _FLOOR_INSTANT):",
            "    return None",
        ]
    if kind in ("date", "opt_date"):
        test = "type(v) is not date or v < _FLOOR_DATE"
        if kind == "opt_date":
            test = f"v is not None and ({test})"
        return [f"if {test}:", "    return None"]
    if kind == "int":
        return [f"if type(v) is not int or not {spec[1]} <= v <= {spec[2]}:", "    return None"]
    if kind == "bool":
        return ["if type(v) is not bool:", "    return None"]
    if kind == "channel":
        return [
            "v = _CHANNEL_SYMBOLS.get(v) if type(v) is str else None",
            "if v is None:",
            "    return None",
        ]
    if kind == "procedure":
        # the format, a known code, and (``_check_procedure_dates``) no submission, by either
        # timestamp's local date, before the procedure took effect; both timestamps are
        # checked later, so a non-datetime there returns None before this is used
        return [
            *_text_lines(MAX_CODE_LENGTH, "_PROCEDURE"),
            "effective_from = lookup(v) if lookup is not None else None",
            "if lookup is not None and effective_from is None:",
            "    return None",
        ]
    raise ValueError(f"unknown field kind {kind}")


_ENVELOPE_SPECS: Final[tuple[tuple[str, _Spec], ...]] = (
    ("occurred_at", _TS),
    ("source_system", ("text", MAX_SOURCE_SYSTEM_LENGTH, None)),
    ("agency_code", _AGENCY),
    ("dossier_code", ("text", MAX_CODE_LENGTH, DOSSIER_CODE_RE)),
    ("traceparent", ("opt_text", MAX_TRACEPARENT_LENGTH, TRACEPARENT_RE)),
)

_Builder = Callable[
    [dict[str, Any], dict[str, Any], datetime, ProcedureLookup | None, datetime],
    DomainEvent | None,
]


def _generate(event_type: str) -> _Builder:
    cls, _ = _PAYLOADS[event_type]
    fields = FIELDS[event_type]
    scope: dict[str, Any] = {
        "cls": cls,
        "datetime": datetime,
        "date": date,
        "UTC": UTC,
        "UUID": UUID,
        "_is_nfc": _is_nfc,
        "_FLOOR_INSTANT": _FLOOR_INSTANT,
        "_FLOOR_DATE": TIMESTAMP_FLOOR,
        "_CHANNEL_SYMBOLS": _CHANNEL_SYMBOLS,
        "_PROCEDURE": PROCEDURE_CODE_RE.fullmatch,
        "_valid_yymmdd": _valid_yymmdd,
        "_local": VN_TZ,
        "_CANONICAL": _CANONICAL_UUID.fullmatch,
        "_PAYLOAD_KEYS": frozenset(name for name, _ in fields),
    }
    lines = [
        "def build(record, body, latest, lookup, recorded_default):",
        "    if body.keys() != _PAYLOAD_KEYS:",  # an extra field, or event_type repeated
        "        return None",
        "    v = record['event_id']",
        "    if type(v) is UUID:",
        "        v = str(v)",  # fastavro's uuid: str() is the canonical spelling
        "    elif type(v) is not str or _CANONICAL(v) is None:",
        "        return None",
        "    event_id = v",
    ]
    for name, spec in _ENVELOPE_SPECS:
        lines.append(f"    v = record[{name!r}]")
        lines.extend("    " + line for line in _field_lines(spec, scope))
        lines.append(f"    e_{name} = v")
    lines += [
        # the dossier code's date part must be a real yymmdd date
        "    if not _valid_yymmdd(e_dossier_code.split('-')[1]):",
        "        return None",
        "    v = record['recorded_at']",
        "    if v is None:",
        "        v = recorded_default",  # what ``Processor._boundary_check`` fills in
        "    elif type(v) is not datetime or v.tzinfo is not UTC:",
        "        return None",
        "    e_recorded_at = v",
        "    v = record['schema_version']",
        "    if v is None:",
        "        v = 1",  # the event's default
        "    elif type(v) is not int or not v:",  # 0 is fixed to 1 by the exact path
        "        return None",
        "    e_schema_version = v",
    ]
    for name, spec in fields:
        lines.append(f"    v = body[{name!r}]")
        lines.extend("    " + line for line in _field_lines(spec, scope))
        lines.append(f"    f_{name} = v")
    if any(spec[0] == "procedure" for _, spec in fields):
        lines += [
            "    if effective_from is not None and (",
            "        e_occurred_at.astimezone(_local).date() < effective_from",
            "        or f_submitted_at.astimezone(_local).date() < effective_from",
            "    ):",
            "        return None",
        ]
    arguments = [
        "event_id=event_id",
        *(f"{name}=e_{name}" for name, _ in _ENVELOPE_SPECS),
        "recorded_at=e_recorded_at",
        "schema_version=e_schema_version",
        *(f"{name}=f_{name}" for name, _ in fields),
    ]
    lines.append(f"    return cls({', '.join(arguments)})")
    namespace: dict[str, Any] = {}
    code = compile("\n".join(lines), f"<intake {event_type}>", "exec")
    # The source is built above from this module's tables alone (names, limits, kinds).
    exec(code, scope, namespace)
    build: _Builder = namespace["build"]
    return build


#: One generated builder per event type, made once at import.
_BUILDERS: Final[dict[str, _Builder]] = {event_type: _generate(event_type) for event_type in FIELDS}


def fast_event(
    record: Any,
    *,
    latest: datetime,
    procedure_effective_from: ProcedureLookup | None,
    recorded_default: datetime,
) -> DomainEvent | None:
    """The checked event for a valid, already normal record, or None: run the exact path.

    ``latest`` is the hub's clock plus the allowed future skew (aware, best in ``UTC``: see
    ``_FLOOR_INSTANT``); ``recorded_default``
    the ``recorded_at`` to give an event whose record has none. When an event is returned, it
    equals what ``from_record`` followed by ``Processor._boundary_check`` would return.
    """
    if type(record) is not dict or record.keys() != _ENVELOPE_KEYS:
        return None
    event_type = record["event_type"]
    build = _BUILDERS.get(event_type) if type(event_type) is str else None
    if build is None:
        return None
    payload = record["payload"]
    if type(payload) is not tuple or len(payload) != 2:
        return None
    name, body = payload
    if type(body) is not dict or type(name) is not str or name.rsplit(".", 1)[-1] != event_type:
        return None
    return build(record, body, latest, procedure_effective_from, recorded_default)
