"""A faust worker for the round-trip test: reads Avro dossiers with our codec, writes them on.

Started by the test as a real worker process (``python -m tests.integration.roundtrip_app
worker``), configured by environment variables.
"""

from __future__ import annotations

import json
import os
from typing import Any

import faust

from hub.contract.codec import register_codec
from hub.contract.registry import SchemaRegistryClient

SCHEMA: dict[str, Any] = json.loads(os.environ["ROUNDTRIP_SCHEMA"])
SOURCE = os.environ["ROUNDTRIP_SOURCE"]
SINK = os.environ["ROUNDTRIP_SINK"]

registry = SchemaRegistryClient(os.environ["SCHEMA_REGISTRY_URL"])
register_codec("avro-in", registry, f"{SOURCE}-value", SCHEMA)
register_codec("avro-out", registry, f"{SINK}-value", SCHEMA)

app = faust.App(
    os.environ["ROUNDTRIP_APP_ID"],
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
    store="memory://",
    web_enabled=False,
    topic_partitions=1,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(SOURCE, key_serializer="raw", value_serializer="avro-in")
sink = app.topic(SINK, key_serializer="raw", value_serializer="avro-out")


@app.agent(source)
async def forward(stream: Any) -> None:
    async for key, record in stream.items():
        record["status"] = "RECEIVED_BY_FAUST"
        await sink.send(key=key, value=record)


if __name__ == "__main__":
    app.main()
