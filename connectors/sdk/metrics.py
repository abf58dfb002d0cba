"""Per-connector Prometheus metrics (served by :mod:`connectors.sdk.http_server`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["RECORDS", "RETRIES", "UP"]

RECORDS = Counter(
    "hub_connector_records_total",
    "Records a connector finished, by outcome: published, delivered, dead_lettered, "
    "invalid (refused at the door), failed (stopped the connector).",
    ["connector", "outcome"],
)
UP = Gauge("hub_connector_up", "1 while the connector runs and can reach Kafka.", ["connector"])
RETRIES = Counter(
    "hub_connector_retries_total",
    "Attempts repeated after a retriable failure (receiver or broker down).",
    ["connector"],
)
