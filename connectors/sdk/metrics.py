"""Per-connector Prometheus metrics (served by :mod:`connectors.sdk.http_server`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["PAUSED", "RECORDS", "RETRIES", "UP"]

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
PAUSED = Gauge(
    "hub_connector_paused_partitions",
    "Partitions a sink stopped fetching: their lane has a full backlog (a record failing).",
    ["connector"],
)
