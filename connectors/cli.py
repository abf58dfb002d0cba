"""Command-line options every connector shares: where Kafka, the registry and the topics are."""

from __future__ import annotations

import argparse

from hub.settings import HubSettings

__all__ = ["add_kafka_arguments"]


def add_kafka_arguments(parser: argparse.ArgumentParser, settings: HubSettings) -> None:
    """``--bootstrap-server``, ``--registry-url`` and ``--topic-prefix``, defaulting to the
    hub's settings (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, HUB_TOPIC_PREFIX)."""
    parser.add_argument(
        "--bootstrap-server",
        default=settings.kafka_bootstrap_servers,
        help="Kafka bootstrap servers (default %(default)s)",
    )
    parser.add_argument(
        "--registry-url",
        default=settings.schema_registry_url,
        help="Confluent-compatible schema registry URL (default %(default)s)",
    )
    parser.add_argument(
        "--topic-prefix",
        default=settings.topic_prefix,
        help="prefix of every topic, as the hub's HUB_TOPIC_PREFIX (default %(default)r)",
    )
