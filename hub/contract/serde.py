"""Avro in the Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the body.

The same serializer serves connectors and hub workers. Writers register their schema under
the topic's subject (TopicNameStrategy: ``<topic>-value``) once and cache the id; readers
resolve each id once and decode with the writer's schema, projected onto the reader's schema
when one is given (Avro schema resolution), so older and newer producers can share a topic.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from typing import Any

import fastavro
from fastavro.types import Schema

from hub.contract.errors import (
    BadMagicByteError,
    DecodeError,
    EncodeError,
    TruncatedMessageError,
)
from hub.contract.registry import SchemaRegistryClient

__all__ = ["MAGIC_BYTE", "AvroDeserializer", "AvroSerializer", "frame", "split_frame"]

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


class AvroSerializer:
    """Encodes records with one schema for one subject."""

    def __init__(self, registry: SchemaRegistryClient, subject: str, schema: dict[str, Any]):
        self.registry = registry
        self.subject = subject
        self.schema = schema
        self.parsed: Schema = fastavro.parse_schema(schema)
        self._schema_id: int | None = None

    @property
    def schema_id(self) -> int:
        if self._schema_id is None:
            self._schema_id = self.registry.register(self.subject, self.schema)
        return self._schema_id

    def encode_body(self, record: dict[str, Any]) -> bytes:
        """The Avro body alone; ``frame_body`` adds the header. A record going to several
        topics with the same schema is encoded once and framed per topic."""
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(f"record does not fit {self.subject}: {exc}") from exc
        return buf.getvalue()

    def frame_body(self, body: bytes) -> bytes:
        return frame(self.schema_id, body)

    def __call__(self, record: dict[str, Any]) -> bytes:
        return self.frame_body(self.encode_body(record))


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
        except (ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as exc:
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

    def __call__(self, data: bytes) -> Any:
        return self.decode(data)[1]
