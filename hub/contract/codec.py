"""A faust codec for Confluent-framed Avro, so agents receive decoded records.

Use it where a bad record may stop the stream (outputs the hub itself wrote). For outside
input the hub's agents read raw bytes and decode with ``AvroDeserializer`` themselves, because a
codec error inside faust would only be logged, and the guide forbids dropping a record
silently: there, undecodable bytes must reach the dead-letter topic.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer, AvroSerializer

__all__ = ["ConfluentAvroCodec", "register_codec"]


class ConfluentAvroCodec(codecs.Codec):
    def __init__(
        self, registry: SchemaRegistryClient, subject: str, schema: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._serializer = AvroSerializer(registry, subject, schema)
        self._deserializer = AvroDeserializer(registry, schema)

    def _dumps(self, obj: Any) -> bytes:
        return self._serializer(obj)

    def _loads(self, s: bytes) -> Any:
        return self._deserializer(s)


def register_codec(
    name: str, registry: SchemaRegistryClient, subject: str, schema: dict[str, Any]
) -> ConfluentAvroCodec:
    """Make ``value_serializer=name`` available to faust topics."""
    codec = ConfluentAvroCodec(registry, subject, schema)
    codecs.register(name, codec)
    return codec
