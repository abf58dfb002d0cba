"""The worker's fast path from a framed Avro message to a checked domain event (issue 13).

The exact path is three passes: ``AvroDeserializer.decode_event`` (bytes to a record dict),
``hub.domain.events.from_record`` (the record's shape, field by field) and then
``hub.contract.inbound.check_avro_record`` (the connectors' rules: lengths, code formats,
clocks, procedure dates, NFC text), whose fixes are applied to the event. All are general:
they report every problem with its path, rule and message, and normalise what the models
would normalise. Almost every record a worker reads is valid and already normal, and for
those the passes do a great deal of bookkeeping to find nothing.

``event_reader`` gives, per writer schema, one generated function that reads the Avro binary
encoding straight into the event's fields (no record dict), tests each value against the
intersection of the passes' rules in their cheapest form (``type(v) is str`` rather than
``isinstance``; ``str.isascii`` before ``unicodedata.is_normalized``; one comparison per
timestamp bound), and builds the event: it only *accepts*. Anything it does not accept
outright (bytes that do not decode, any problem, anything a pass would fix or normalise, a
writer schema with fields it does not know, an event id spelt in another form) returns
``None``, and the caller runs the exact path, so dead-letter reasons, details and fixes come
from the exact code alone. ``tests/unit/test_intake.py`` requires the event read here to equal
the exact path's event for every message accepted, and that the valid records of every type
are accepted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

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

__all__ = ["FIELDS", "Reader", "event_reader"]

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

#: The reader of a writer schema: (framed message, latest, procedure lookup, recorded
#: default) -> the checked event, or None (the exact path runs).
Reader = Callable[[bytes, datetime, ProcedureLookup | None, datetime], DomainEvent | None]


class _UnsupportedError(Exception):
    """A writer schema with a shape the generated reader does not read: no reader for it."""


# --- reading the Avro binary encoding ----------------------------------------------------
#
# The generated code reads the encoding as fastavro does (zig-zag varints, length-prefixed
# UTF-8, union branch indexes) and gives each value as the worker's ``decode_event`` does (an
# aware ``UTC`` datetime per timestamp-millis, a ``date`` per date, a uuid as its text, an enum
# as its symbol). It never has to report what is wrong: anything unexpected (a byte past the
# end, bytes left over, a negative length, an unknown branch, invalid UTF-8, a boolean byte
# other than 0 or 1) returns None, and ``decode_event`` reads the record again and says.

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAYS_SHIFT: Final = date(1970, 1, 1).toordinal()


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``pos``: (value, position after it). At most ten bytes, as a
    64-bit long has; more raises (the record is not what the schema says)."""
    n = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return (n >> 1) ^ -(n & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than ten bytes")


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    n, pos = _read_long(data, pos)
    if n < 0:
        raise ValueError("negative length")
    return n, pos


# Varints are read inline (a timestamp is six bytes); lengths longer than 63 call.
_LONG_LINES: Final = [
    "b = data[pos]",
    "pos += 1",
    "if b < 0x80:",
    "    v = (b >> 1) ^ -(b & 1)",
    "else:",
    "    v = b & 0x7F",
    "    shift = 7",
    "    while True:",
    "        b = data[pos]",
    "        pos += 1",
    "        v |= (b & 0x7F) << shift",
    "        if b < 0x80:",
    "            break",
    "        shift += 7",
    "        if shift > 63:",  # longer than a 64-bit long's ten bytes
    "            return None",
    "    v = (v >> 1) ^ -(v & 1)",
]
_STRING_LINES: Final = [
    "b = data[pos]",
    "if b < 0x80 and not b & 1:",
    "    end = pos + 1 + (b >> 1)",
    "    v = data[pos + 1 : end].decode()",
    "else:",
    "    n, pos = _read_length(data, pos)",
    "    end = pos + n",
    "    v = data[pos:end].decode()",
    "pos = end",
]


def _read_lines(schema: Any, names: dict[str, Any], scope: dict[str, Any]) -> list[str]:
    """Lines reading one value of ``schema`` at ``pos`` into ``v``."""
    if isinstance(schema, str) and schema in names:
        schema = names[schema]
    if isinstance(schema, list):
        if len(schema) != 2 or "null" not in schema:
            raise _UnsupportedError("a union other than null-or-one-type")
        null_index = schema.index("null")
        other = _read_lines(schema[1 - null_index], names, scope)
        return [
            "b = data[pos]",
            "pos += 1",
            f"if b == {null_index * 2}:",
            "    v = None",
            f"elif b == {(1 - null_index) * 2}:",
            *("    " + line for line in other),
            "else:",
            "    return None",
        ]
    kind = schema.get("type") if isinstance(schema, dict) else schema
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if isinstance(kind, (dict, list)):
        return _read_lines(kind, names, scope)
    if kind == "string" and logical in (None, "uuid"):
        return list(_STRING_LINES)
    if kind == "long" and logical == "timestamp-millis":
        return [*_LONG_LINES, "v = _EPOCH + _timedelta(0, 0, 0, v)"]
    if kind == "int" and logical == "date":
        return [*_LONG_LINES, "v = _fromordinal(v + _DAYS_SHIFT)"]
    if kind in ("int", "long") and logical is None:
        return list(_LONG_LINES)
    if kind == "boolean":
        return ["b = data[pos]", "pos += 1", "if b > 1:", "    return None", "v = b == 1"]
    if kind == "enum":
        symbols = f"s{len(scope)}"
        scope[symbols] = dict(enumerate(schema["symbols"]))
        names[schema["name"]] = schema
        names[_full_name(schema)] = schema
        return [*_LONG_LINES, f"v = {symbols}.get(v)", "if v is None:", "    return None"]
    raise _UnsupportedError(f"{kind} ({logical})")


def _full_name(schema: Mapping[str, Any]) -> str:
    name = str(schema["name"])
    space = schema.get("namespace")
    return name if "." in name or not space else f"{space}.{name}"


def _check_lines(
    names: list[str], prefix: str, specs: Mapping[str, _Spec], scope: dict[str, Any]
) -> list[str]:
    lines = []
    for name in names:
        lines.append(f"v = {prefix}{name}")
        lines.extend(_field_lines(specs[name], scope))
        lines.append(f"{prefix}{name} = v")
    return lines


def event_reader(schema: Mapping[str, Any]) -> Reader | None:
    """The one-pass reader of records written with ``schema`` (its raw JSON form), or None
    when the schema has a shape it does not read (its records then all take the exact path)."""
    try:
        return _generate(schema)
    except _UnsupportedError:
        return None


def _generate(schema: Mapping[str, Any]) -> Reader:
    if schema.get("type") != "record":
        raise _UnsupportedError("not a record")
    fields = [(str(item["name"]), item["type"]) for item in schema["fields"]]
    if {name for name, _ in fields} != _ENVELOPE_KEYS or fields[-1][0] != "payload":
        raise _UnsupportedError("not the hub's envelope, payload last")
    branches = fields[-1][1]
    if not isinstance(branches, list) or not all(
        isinstance(b, dict) and b.get("type") == "record" for b in branches
    ):
        raise _UnsupportedError("the payload is not a union of records")
    scope: dict[str, Any] = {
        "datetime": datetime,
        "date": date,
        "UTC": UTC,
        "_read_long": _read_long,
        "_read_length": _read_length,
        "_EPOCH": _EPOCH,
        "_DAYS_SHIFT": _DAYS_SHIFT,
        "_timedelta": timedelta,
        "_fromordinal": date.fromordinal,
        "_is_nfc": _is_nfc,
        "_FLOOR_INSTANT": _FLOOR_INSTANT,
        "_FLOOR_DATE": TIMESTAMP_FLOOR,
        "_CHANNEL_SYMBOLS": _CHANNEL_SYMBOLS,
        "_PROCEDURE": PROCEDURE_CODE_RE.fullmatch,
        "_valid_yymmdd": _valid_yymmdd,
        "_local": VN_TZ,
        "_CANONICAL": _CANONICAL_UUID.fullmatch,
    }
    names: dict[str, Any] = {}
    lines = ["def read(data, latest, lookup, recorded_default):", "  pos = 5", "  try:"]
    body: list[str] = []
    for name, kind in fields[:-1]:
        body.extend(_read_lines(kind, names, scope))
        body.append(f"e_{name} = v")
    body += [
        "v = e_event_id",
        "if type(v) is not str or _CANONICAL(v) is None:",
        "    return None",
    ]
    body += _check_lines([n for n, _ in _ENVELOPE_SPECS], "e_", dict(_ENVELOPE_SPECS), scope)
    body += [
        # the dossier code's date part must be a real yymmdd date
        "if not _valid_yymmdd(e_dossier_code.split('-')[1]):",
        "    return None",
        "if e_recorded_at is None:",
        "    e_recorded_at = recorded_default",  # what ``Processor._boundary_check`` fills in
        "elif type(e_recorded_at) is not datetime:",
        "    return None",
        "if e_schema_version is None:",
        "    e_schema_version = 1",  # the event's default
        "elif not e_schema_version:",  # 0 is fixed to 1 by the exact path
        "    return None",
        "k = data[pos]",
        "pos += 1",
    ]
    for index, branch in enumerate(branches):
        body.append(f"if k == {index * 2}:")
        body.extend("    " + line for line in _branch_lines(branch, names, scope))
    body.append("return None")
    lines.extend("    " + line for line in body)
    lines += ["  except Exception:", "    return None"]
    namespace: dict[str, Any] = {}
    code = compile("\n".join(lines), f"<event reader {_full_name(schema)}>", "exec")
    # The source is built above from this module's tables and the schema's names, types and
    # symbols, never from record data; a name that is not an identifier is not read here.
    exec(code, scope, namespace)
    read: Reader = namespace["read"]
    return read


def _branch_lines(
    branch: Mapping[str, Any], names: dict[str, Any], scope: dict[str, Any]
) -> list[str]:
    """The block reading and checking one payload branch, returning its event or None."""
    event_type = str(branch["name"]).rsplit(".", 1)[-1]
    if event_type not in FIELDS:
        return ["return None"]  # an event type this version does not know: the exact path says
    specs = dict(FIELDS[event_type])
    fields = [(str(item["name"]), item["type"]) for item in branch["fields"]]
    if {name for name, _ in fields} != set(specs):
        return ["return None"]  # a field added or missing: the exact path decides
    cls, _ = _PAYLOADS[event_type]
    scope[f"cls_{event_type}"] = cls
    lines: list[str] = []
    for name, kind in fields:
        lines.extend(_read_lines(kind, names, scope))
        lines.append(f"f_{name} = v")
    lines += [
        "if pos != len(data):",  # bytes left over
        "    return None",
        f"if e_event_type != {event_type!r}:",
        "    return None",
    ]
    lines += _check_lines([n for n, _ in FIELDS[event_type]], "f_", specs, scope)
    if any(spec[0] == "procedure" for spec in specs.values()):
        lines += [
            "if effective_from is not None and (",
            "    e_occurred_at.astimezone(_local).date() < effective_from",
            "    or f_submitted_at.astimezone(_local).date() < effective_from",
            "):",
            "    return None",
        ]
    arguments = [
        "event_id=e_event_id",
        *(f"{name}=e_{name}" for name, _ in _ENVELOPE_SPECS),
        "recorded_at=e_recorded_at",
        "schema_version=e_schema_version",
        *(f"{name}=f_{name}" for name, _ in FIELDS[event_type]),
    ]
    lines.append(f"return cls_{event_type}({', '.join(arguments)})")
    return lines
