"""Avro in the Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the body.

The same serializer serves connectors and hub workers. Writers register their schema under
the topic's subject (TopicNameStrategy: ``<topic>-value``) once and cache the id; readers
resolve each id once and decode with the writer's schema, projected onto the reader's schema
when one is given (Avro schema resolution), so older and newer producers can share a topic.
"""

from __future__ import annotations

import functools
import io
import json
import keyword
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import fastavro
from fastavro.types import Schema

from hub.contract.errors import (
    BadMagicByteError,
    DecodeError,
    EncodeError,
    TruncatedMessageError,
)
from hub.contract.registry import SchemaRegistryClient

__all__ = [
    "MAGIC_BYTE",
    "AvroDeserializer",
    "AvroSerializer",
    "UnsupportedSchemaError",
    "compile_writer",
    "frame",
    "split_frame",
]

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")


def frame(schema_id: int, body: bytes) -> bytes:
    return _HEADER.pack(MAGIC_BYTE, schema_id) + body


def split_frame(data: bytes) -> tuple[int, memoryview]:
    """The schema id and Avro body of a framed message, or a DecodeError saying what is wrong."""
    if len(data) < _HEADER.size:
        raise TruncatedMessageError(
            f"message of {len(data)} bytes is shorter than the 5-byte Confluent header"
        )
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise BadMagicByteError(f"first byte is {magic & 0xFF}, not the magic byte 0")
    return schema_id, memoryview(data)[_HEADER.size :]


# --- a writer compiled from the schema ------------------------------------------------------
#
# fastavro's writer walks the schema for every record and tries union branches in turn; for
# the hub's output records (a dozen nullable fields) that is most of an event's cost. The
# writers below are built once per schema: a small closure per type, and one generated function
# per record (``_generate_record``) with its common fields inline, writing the Avro
# binary encoding (zig-zag varints, length-prefixed UTF-8, union branch indexes) the way
# fastavro does, byte for byte (tests/unit/test_avro_writer.py compares them on records
# taking every union branch and enum symbol). Schemas using what is not needed here (maps,
# fixed, unions other than null-or-one-type) are left to fastavro.


class UnsupportedSchemaError(ValueError):
    """The schema uses a construct ``compile_writer`` leaves to fastavro."""


_Write = Callable[[bytearray, Any], None]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MILLI = timedelta(milliseconds=1)
_MICRO = timedelta(microseconds=1)
_EPOCH_DAYS = date(1970, 1, 1).toordinal()
_FLOAT = struct.Struct("<f").pack
_DOUBLE = struct.Struct("<d").pack


def _write_long(buf: bytearray, value: int) -> None:
    n = (value << 1) ^ (value >> 63)
    while n > 0x7F:
        buf.append((n & 0x7F) | 0x80)
        n >>= 7
    buf.append(n)


def _write_string(buf: bytearray, value: str) -> None:
    data = value.encode()
    _write_long(buf, len(data))
    buf += data


def _write_bytes(buf: bytearray, value: bytes) -> None:
    _write_long(buf, len(value))
    buf += value


def _write_boolean(buf: bytearray, value: bool) -> None:
    buf.append(1 if value else 0)


def _write_null(buf: bytearray, value: None) -> None:
    if value is not None:
        raise ValueError("null field given a value")


def _since(value: datetime, unit: timedelta) -> int:
    return (value - (_EPOCH if value.tzinfo is not None else _EPOCH_NAIVE)) // unit


def _write_ts_millis(buf: bytearray, value: datetime | int) -> None:
    _write_long(buf, value if isinstance(value, int) else _since(value, _MILLI))


def _write_ts_micros(buf: bytearray, value: datetime | int) -> None:
    _write_long(buf, value if isinstance(value, int) else _since(value, _MICRO))


def _write_date(buf: bytearray, value: date | int) -> None:
    _write_long(buf, value if isinstance(value, int) else value.toordinal() - _EPOCH_DAYS)


def _write_uuid(buf: bytearray, value: UUID | str) -> None:
    _write_string(buf, str(value) if isinstance(value, UUID) else value)


_PRIMITIVE_WRITERS: dict[str, _Write] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": _write_long,
    "long": _write_long,
    "float": lambda buf, value: buf.extend(_FLOAT(value)),
    "double": lambda buf, value: buf.extend(_DOUBLE(value)),
    "bytes": _write_bytes,
    "string": _write_string,
}
_LOGICAL_WRITERS: dict[tuple[str, str], _Write] = {
    ("long", "timestamp-millis"): _write_ts_millis,
    ("long", "timestamp-micros"): _write_ts_micros,
    ("int", "date"): _write_date,
    ("string", "uuid"): _write_uuid,
}


class _Compiler:
    def __init__(self, *, attributes: bool = False) -> None:
        #: records are read as objects (``value.name``) rather than dicts (``value.get``)
        self.attributes = attributes
        self.named: dict[str, _Write] = {}
        #: each enum's writer -> its symbols' encodings, for generated records to write inline
        self.enum_codes: dict[_Write, dict[str, bytes]] = {}
        #: each record's writer, as it is (a union's record branch calls it directly)
        self.records: set[_Write] = set()

    def compile(self, schema: Any, namespace: str) -> _Write:
        if isinstance(schema, str):
            if schema in _PRIMITIVE_WRITERS:
                return _PRIMITIVE_WRITERS[schema]
            name = schema if "." in schema or not namespace else f"{namespace}.{schema}"
            if name in self.named:
                return self.named[name]
            if schema in self.named:
                return self.named[schema]
            raise UnsupportedSchemaError(f"unknown named type {schema}")
        if isinstance(schema, list):
            return self._union(schema, namespace)
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None:
            if (kind, logical) not in _LOGICAL_WRITERS:  # decimal, local timestamps, ...
                raise UnsupportedSchemaError(f"logical type {logical} is left to fastavro")
            return _LOGICAL_WRITERS[(kind, logical)]
        if kind in _PRIMITIVE_WRITERS:
            return _PRIMITIVE_WRITERS[kind]
        if kind in ("record", "error"):
            return self._record(schema, namespace)
        if kind == "enum":
            return self._enum(schema, namespace)
        if kind == "array":
            return self._array(schema, namespace)
        raise UnsupportedSchemaError(f"{kind} is left to fastavro")

    def _full_name(self, schema: dict[str, Any], namespace: str) -> tuple[str, str]:
        name = schema["name"]
        space = schema.get("namespace", namespace)
        if "." in name:
            return name, name.rsplit(".", 1)[0]
        return (f"{space}.{name}" if space else name), space

    def _record(self, schema: dict[str, Any], namespace: str) -> _Write:
        full, space = self._full_name(schema, namespace)
        generated: list[_Write] = []

        def write_reference(buf: bytearray, value: Any) -> None:
            generated[0](buf, value)  # a record referring to itself, written once compiled

        self.named[full] = write_reference  # before the fields: a record may refer to itself
        write = _generate_record(
            full,
            [(item, self.compile(item["type"], space)) for item in schema["fields"]],
            lambda branch: self.compile(branch, space),
            self,
        )
        generated.append(write)
        self.named[full] = write
        self.records.add(write)
        return write

    def _enum(self, schema: dict[str, Any], namespace: str) -> _Write:
        full, _ = self._full_name(schema, namespace)
        codes: dict[str, bytes] = {}
        for index, symbol in enumerate(schema["symbols"]):
            out = bytearray()
            _write_long(out, index)
            codes[symbol] = bytes(out)

        def write_enum(buf: bytearray, value: str) -> None:
            buf += codes[value]

        self.named[full] = write_enum
        self.enum_codes[write_enum] = codes
        return write_enum

    def _array(self, schema: dict[str, Any], namespace: str) -> _Write:
        write_item = self.compile(schema["items"], namespace)

        def write_array(buf: bytearray, value: Any) -> None:
            if value:
                _write_long(buf, len(value))
                for item in value:
                    write_item(buf, item)
            buf.append(0)

        return write_array

    def _union(self, branches: list[Any], namespace: str) -> _Write:
        if len(branches) != 2 or "null" not in branches:
            raise UnsupportedSchemaError("only unions of null and one type are compiled")
        null_index = branches.index("null")
        other = branches[1 - null_index]
        write_plain = self.compile(other, namespace)
        write_other: _Write = write_plain
        if isinstance(other, dict) and other.get("type") in ("record", "error"):

            def write_named(buf: bytearray, value: Any) -> None:
                # fastavro accepts ``(name, fields)`` for a record branch, and so do we
                write_plain(buf, value[1] if isinstance(value, tuple) else value)

            write_other = write_named
        null_tag = bytes((null_index * 2,))
        other_tag = bytes(((1 - null_index) * 2,))

        def write_union(buf: bytearray, value: Any) -> None:
            if value is None:
                buf += null_tag
            else:
                buf += other_tag
                write_other(buf, value)

        return write_union


# A record's writer is generated as the source of one function, one block per field, so a
# record costs one Python call instead of two or three per field (the record loop, the union,
# the value). Strings, ints and null-or-either of those are written inline; every other field
# calls the writer compiled for its type. The generated code does what those writers do, so
# the bytes and the exceptions (ValueError, TypeError, AttributeError, KeyError) are the same.
_STRING_LINES = [
    "b = v.encode()",
    "n = len(b)",
    "if n < 64:",
    "    buf.append(n << 1)",  # a one-byte zig-zag varint, the common case
    "else:",
    "    _write_long(buf, n)",
    "buf += b",
]
_INLINE: dict[Any, list[str]] = {
    _write_string: _STRING_LINES,
    _write_long: [
        "if 0 <= v < 64:",
        "    buf.append(v << 1)",
        "else:",
        "    _write_long(buf, v)",
    ],
    # a few of these an output record: ``_write_ts_millis`` with the varint loop inlined
    _write_ts_millis: [
        "if isinstance(v, int):",
        "    n = v",
        "else:",
        "    n = (v - (_EPOCH if v.tzinfo is not None else _EPOCH_NAIVE)) // _MILLI",
        "n = (n << 1) ^ (n >> 63)",
        "while n > 0x7F:",
        "    buf.append((n & 0x7F) | 0x80)",
        "    n >>= 7",
        "buf.append(n)",
    ],
    # a UUID object or its text (36 bytes: the one-byte length of a string)
    _write_uuid: ["if isinstance(v, UUID):", "    v = str(v)", *_STRING_LINES],
    _write_date: [
        "if not isinstance(v, int):",
        "    v = v.toordinal() - _EPOCH_DAYS",
        "_write_long(buf, v)",
    ],
}


def _null_union(field_type: Any) -> tuple[int, Any] | None:
    """(branch index of null, the other branch) for a ``["null", T]`` union, else None."""
    if isinstance(field_type, list) and len(field_type) == 2 and "null" in field_type:
        null_index = field_type.index("null")
        return null_index, field_type[1 - null_index]
    return None


def _inline(write: _Write, i: int, compiler: _Compiler, scope: dict[str, Any]) -> list[str] | None:
    """The lines writing ``v`` as ``write`` does, or None: call ``write``. An enum's symbols
    come from ``c{i}``, a record is written by calling its generated writer ``r{i}``."""
    if write in _INLINE:
        return _INLINE[write]
    codes = compiler.enum_codes.get(write)
    if codes is not None:
        scope[f"c{i}"] = codes
        return [f"buf += c{i}[v]"]
    return None


def _generate_record(
    full_name: str,
    fields: list[tuple[dict[str, Any], _Write]],
    compile_branch: Callable[[Any], _Write],
    compiler: _Compiler,
) -> _Write:
    scope: dict[str, Any] = {
        "_write_long": _write_long,
        "_EPOCH": _EPOCH,
        "_EPOCH_NAIVE": _EPOCH_NAIVE,
        "_EPOCH_DAYS": _EPOCH_DAYS,
        "_MILLI": _MILLI,
        "UUID": UUID,
    }
    lines = ["def write_record(buf, value):"]
    if not compiler.attributes:
        lines.append("    get = value.get")
    for i, (item, write) in enumerate(fields):
        scope[f"w{i}"] = write
        name = item["name"]
        if not compiler.attributes:
            # A missing field takes its default, as with fastavro (None when there is none).
            scope[f"d{i}"] = item.get("default")
            lines.append(f"    v = get({name!r}, d{i})")
        elif name.isidentifier() and not keyword.iskeyword(name):
            lines.append(f"    v = value.{name}")  # an Avro name: letters, digits, underscores
        else:
            lines.append(f"    v = getattr(value, {name!r})")
        body = _inline(write, i, compiler, scope) or [f"w{i}(buf, v)"]
        union = _null_union(item["type"])
        if union is not None:
            null_index, other = union
            branch = compile_branch(other)
            inline = _inline(branch, i, compiler, scope)
            if inline is None and branch in compiler.records:
                # fastavro accepts ``(name, fields)`` for a record branch, and so do we
                scope[f"r{i}"] = branch
                inline = [f"r{i}(buf, v[1] if type(v) is tuple else v)"]
            if inline is not None:
                body = [
                    "if v is None:",
                    f"    buf.append({null_index * 2})",
                    "else:",
                    f"    buf.append({(1 - null_index) * 2})",
                    *("    " + line for line in inline),
                ]
        lines.extend("    " + line for line in body)
    namespace: dict[str, Any] = {}
    code = compile("\n".join(lines), f"<avro writer {full_name}>", "exec")
    # The source is built above from the schema's field names (as literals) alone.
    exec(code, scope, namespace)
    write_record: _Write = namespace["write_record"]
    return write_record


def compile_writer(schema: dict[str, Any], *, attributes: bool = False) -> Callable[[Any], bytes]:
    """A function writing records of ``schema`` (raw JSON form) as Avro binary, like
    ``fastavro.schemaless_writer``; ``UnsupportedSchemaError`` for what it leaves to fastavro.
    With ``attributes``, a record is any object with its fields as attributes (a Struct,
    for one), every field present, nested records too."""
    write = _Compiler(attributes=attributes).compile(schema, schema.get("namespace", ""))

    def encode(record: Any) -> bytes:
        buf = bytearray()
        write(buf, record)
        return bytes(buf)

    return encode


@functools.lru_cache(maxsize=64)
def _writers(schema_json: str) -> tuple[Schema, Callable[[dict[str, Any]], bytes] | None]:
    """fastavro's parsed schema and the compiled writer (None: left to fastavro)."""
    schema = json.loads(schema_json)
    parsed: Schema = fastavro.parse_schema(schema)
    try:
        return parsed, compile_writer(schema)
    except UnsupportedSchemaError:
        return parsed, None


@functools.lru_cache(maxsize=64)
def _attribute_writer(schema_json: str) -> Callable[[Any], bytes] | None:
    try:
        return compile_writer(json.loads(schema_json), attributes=True)
    except UnsupportedSchemaError:
        return None


class AvroSerializer:
    """Encodes records with one schema for one subject."""

    def __init__(self, registry: SchemaRegistryClient, subject: str, schema: dict[str, Any]):
        self.registry = registry
        self.subject = subject
        self.schema = schema
        self._schema_id: int | None = None
        self._header: bytes | None = None  # the framing, once the id is known
        # one parse and one compiled writer per schema, shared by every topic using it (a
        # worker writes each agency's inbox with the status schema)
        self.parsed, self._compiled = _writers(json.dumps(schema, sort_keys=True))
        self._attribute_writer: Callable[[Any], bytes] | None = None  # made when first asked

    @property
    def schema_id(self) -> int:
        if self._schema_id is None:
            self._schema_id = self.registry.register(self.subject, self.schema)
        return self._schema_id

    def encode_body(self, record: dict[str, Any]) -> bytes:
        """The Avro body alone; ``frame_body`` adds the header. A record going to several
        topics with the same schema is encoded once and framed per topic."""
        try:
            if self._compiled is not None:
                return self._compiled(record)
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, self.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            raise EncodeError(f"record does not fit {self.subject}: {exc}") from exc
        return buf.getvalue()

    def encode_attributes(self, record: Any) -> bytes:
        """``encode_body`` of an object with the schema's fields as attributes (a Struct built
        for it): no dict is built, and a field is one attribute read."""
        write = self._attribute_writer
        if write is None:
            write = self._attribute_writer = _attribute_writer(
                json.dumps(self.schema, sort_keys=True)
            )
        if write is None:
            raise EncodeError(f"{self.subject}: this schema is written from dicts only")
        try:
            return write(record)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            raise EncodeError(f"record does not fit {self.subject}: {exc}") from exc

    def frame_body(self, body: bytes) -> bytes:
        header = self._header
        if header is None:
            header = self._header = _HEADER.pack(MAGIC_BYTE, self.schema_id)
        return header + body

    def __call__(self, record: dict[str, Any]) -> bytes:
        return self.frame_body(self.encode_body(record))


# --- a leaner read for the worker -----------------------------------------------------------
#
# fastavro applies a record's logical types while it reads, through a Python-level call per
# value: for the hub's event records (an event id, three timestamps) that is a third of the
# read. ``AvroDeserializer.decode_event`` reads with the logical types taken out of the schema
# (the binary encoding is the same) and applies them afterwards, with fastavro's own formulas,
# to the fields that have them, at the top level and in the record branches of a top-level
# union (where the hub's payloads are); a schema with logical types anywhere else is read the
# ordinary way. The one difference in the result: an event id already in the canonical
# spelling stays a ``str`` (``str(UUID(s)) == s``) rather than becoming a ``UUID`` that the
# worker would turn back into that string.

_Convert = Callable[[Any], Any]
_FASTAVRO_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAYS_SHIFT = date(1970, 1, 1).toordinal()
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _read_ts_millis(value: int) -> datetime:
    # timedelta(days, seconds, microseconds, milliseconds): positional, a third cheaper than
    # the keyword, and exact for an int as fastavro's microseconds=value * 1000 is
    return _FASTAVRO_EPOCH + timedelta(0, 0, 0, value)


def _read_ts_micros(value: int) -> datetime:
    return _FASTAVRO_EPOCH + timedelta(microseconds=value)


def _read_date(value: int) -> date:
    return date.fromordinal(value + _DAYS_SHIFT)


def _read_uuid(value: str) -> str | UUID:
    return value if _CANONICAL_UUID.fullmatch(value) else UUID(value)


_LOGICAL_READERS: dict[tuple[str, str], _Convert] = {
    ("long", "timestamp-millis"): _read_ts_millis,
    ("long", "timestamp-micros"): _read_ts_micros,
    ("int", "date"): _read_date,
    ("string", "uuid"): _read_uuid,
}

#: Per field with a logical type: (name, convert); None for a field that may be null.
_Conversions = tuple[tuple[str, _Convert], ...]


def _has_logical(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "logicalType" in schema or any(_has_logical(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_logical(v) for v in schema)
    return False


def _plain_field(schema: Any) -> tuple[Any, _Convert | None] | None:
    """A field's type without its logical type, and the conversion; None: not handled."""
    if isinstance(schema, dict) and "logicalType" in schema:
        convert = _LOGICAL_READERS.get((str(schema.get("type")), str(schema["logicalType"])))
        if convert is None or set(schema) - {"type", "logicalType"}:
            return None
        return schema["type"], convert
    if isinstance(schema, list) and len(schema) == 2 and "null" in schema:
        other = schema[1 - schema.index("null")]
        plain = _plain_field(other) if isinstance(other, dict) else None
        if plain is not None and plain[1] is not None:
            convert = plain[1]
            return [
                plain[0] if b is other else b for b in schema
            ], lambda v: None if v is None else convert(v)
    if _has_logical(schema):
        return None
    return schema, None


def _plain_record(
    schema: dict[str, Any], namespace: str
) -> tuple[dict[str, Any], str, _Conversions] | None:
    """A record with its fields' logical types taken out: (schema, full name, conversions)."""
    name = schema["name"]
    space = schema.get("namespace", namespace)
    full = name if "." in name else (f"{space}.{name}" if space else name)
    fields = []
    conversions = []
    for item in schema["fields"]:
        plain = _plain_field(item["type"])
        if plain is None:
            return None
        fields.append({**item, "type": plain[0]})
        if plain[1] is not None:
            conversions.append((item["name"], plain[1]))
    return {**schema, "fields": fields}, full, tuple(conversions)


@dataclass(frozen=True)
class _LeanPlan:
    schema: Schema  # the writer's schema without the logical types handled here
    top: _Conversions
    unions: tuple[str, ...]  # top-level fields that are unions of records
    branches: dict[str, _Conversions]  # by the full record name fastavro returns


def _lean_plan(schema: Any) -> _LeanPlan | None:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    namespace = str(schema.get("namespace", ""))
    fields = []
    top: list[tuple[str, _Convert]] = []
    unions: list[str] = []
    branches: dict[str, _Conversions] = {}
    for item in schema["fields"]:
        kind = item["type"]
        if isinstance(kind, list) and all(
            isinstance(b, dict) and b.get("type") == "record" for b in kind
        ):
            plain_branches = []
            for branch in kind:
                plain = _plain_record(branch, namespace)
                if plain is None or plain[1] in branches:
                    return None
                plain_branches.append(plain[0])
                if plain[2]:
                    branches[plain[1]] = plain[2]
            fields.append({**item, "type": plain_branches})
            unions.append(item["name"])
            continue
        field = _plain_field(kind)
        if field is None:
            return None
        fields.append({**item, "type": field[0]})
        if field[1] is not None:
            top.append((item["name"], field[1]))
    try:
        parsed = fastavro.parse_schema({**schema, "fields": fields})
    except (ValueError, TypeError, KeyError):
        return None
    return _LeanPlan(parsed, tuple(top), tuple(unions), branches)


class AvroDeserializer:
    """Decodes framed records of any registered schema, optionally into a reader schema."""

    def __init__(
        self,
        registry: SchemaRegistryClient,
        reader_schema: dict[str, Any] | None = None,
        *,
        return_record_name: bool = True,
    ) -> None:
        self.registry = registry
        self.reader: Schema | None = (
            fastavro.parse_schema(reader_schema) if reader_schema is not None else None
        )
        self.return_record_name = return_record_name
        self._writers: dict[int, Schema] = {}
        self._lean: dict[int, _LeanPlan | None] = {}
        self._lock = threading.Lock()

    def writer_schema(self, schema_id: int) -> Schema:
        with self._lock:
            parsed = self._writers.get(schema_id)
        if parsed is None:
            text = self.registry.schema_by_id(schema_id)
            try:
                parsed = fastavro.parse_schema(json.loads(text))
            except (ValueError, TypeError, KeyError) as exc:
                raise DecodeError(f"schema id {schema_id} is not a usable Avro schema") from exc
            with self._lock:
                self._writers[schema_id] = parsed
        return parsed

    def decode(self, data: bytes) -> tuple[int, Any]:
        """(schema id, record); raises a DecodeError subclass naming what is wrong."""
        schema_id, body = split_frame(data)
        writer = self.writer_schema(schema_id)
        stream = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(
                stream,
                writer,
                self.reader,
                return_record_name=self.return_record_name,
            )
        except EOFError as exc:
            raise TruncatedMessageError(f"Avro body ended early for schema id {schema_id}") from exc
        # OverflowError: a timestamp or date beyond what Python's datetime holds (any Kafka
        # client can write one); the record is bad, not the worker
        except (
            ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError, OverflowError
        ) as exc:  # fmt: skip
            raise DecodeError(
                f"Avro body does not match schema id {schema_id}: {type(exc).__name__}"
            ) from exc
        except fastavro.read.SchemaResolutionError as exc:
            raise DecodeError(
                f"schema id {schema_id} cannot be read as the hub's schema: {exc}"
            ) from exc
        if stream.tell() != len(body):
            raise DecodeError(
                f"{len(body) - stream.tell()} bytes left over after the record of schema id "
                f"{schema_id}"
            )
        return schema_id, record

    def _lean_plan(self, schema_id: int) -> _LeanPlan | None:
        plan = self._lean.get(schema_id, False)
        if plan is False:
            self.writer_schema(schema_id)  # a DecodeError for an unusable schema, as decode
            plan = None
            if self.reader is None and self.return_record_name:
                plan = _lean_plan(json.loads(self.registry.schema_by_id(schema_id)))
            self._lean[schema_id] = plan
        return plan  # type: ignore[return-value]

    def decode_event(self, data: bytes) -> tuple[int, Any]:
        """``decode``, faster for the hub's event records (see "a leaner read" above); an
        event id in the canonical spelling comes as that ``str``. Anything going wrong is left
        to ``decode``, so the errors are the same."""
        schema_id, body = split_frame(data)
        plan = self._lean_plan(schema_id)
        if plan is None:
            return self.decode(data)
        stream = io.BytesIO(body)
        try:
            record: Any = fastavro.schemaless_reader(
                stream, plan.schema, None, return_record_name=True
            )
            for name, convert in plan.top:
                record[name] = convert(record[name])
            for name in plan.unions:
                branch, fields = record[name]
                for field, convert in plan.branches.get(branch, ()):
                    fields[field] = convert(fields[field])
        except Exception:
            return self.decode(data)  # raises what fastavro says about this body
        if stream.tell() != len(body):
            return self.decode(data)  # the same bytes: the left-over error
        return schema_id, record

    def __call__(self, data: bytes) -> Any:
        return self.decode(data)[1]
