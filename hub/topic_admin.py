"""Creating Kafka topics up front, with the partition count, replicas and min ISR the hub
expects: what every part of the hub (worker, connectors, bridge) creates topics with, and the
one place the settings of a hub topic are decided (``topic_config``; the engine's own
creator, ``hub.engine.topics``, which must never block its thread for long, uses it too).

Relying on the broker's auto-creation would give output topics whatever ``num.partitions``
the cluster has, one replica, and races the first send; declaring them keeps the layout
deliberate and the cluster's guarantees (``min.insync.replicas``) on every topic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from hub.security.environment import env_client_kwargs

if TYPE_CHECKING:
    from hub.settings import HubSettings

__all__ = ["TopicCreator", "topic_config"]


def topic_config(
    min_insync_replicas: int, *, compact: bool = False, keep_forever: bool = False
) -> dict[str, str]:
    """A hub topic's settings: the cluster's durability rule on every one (acks=all waits
    for ``min_insync_replicas``); ``compact``: keyed by dossier, the latest record kept (a
    changelog); ``keep_forever``: no time or size retention (the audit chains)."""
    config = {"min.insync.replicas": str(min_insync_replicas)}
    if compact:
        config["cleanup.policy"] = "compact"
    if keep_forever:
        config.update({"retention.ms": "-1", "retention.bytes": "-1"})
    return config


class TopicCreator:
    def __init__(
        self,
        bootstrap: str,
        partitions: int,
        replication_factor: int,
        min_insync_replicas: int = 1,
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.min_insync_replicas = min_insync_replicas
        self.known: set[str] = set()

    @classmethod
    def for_settings(cls, settings: HubSettings, bootstrap: str | None = None) -> TopicCreator:
        """The hub's partitions, replication factor and min ISR from ``settings``."""
        return cls(
            bootstrap or settings.kafka_bootstrap_servers,
            settings.partitions,
            settings.replication_factor,
            settings.min_insync_replicas,
        )

    def ensure(self, names: Iterable[str], *, compact: bool = False, partitions: int = 0) -> None:
        """Create the topics of ``names`` that do not exist yet (``compact``: compacted, as a
        changelog must be; ``partitions``: this many instead of the hub's count)."""
        missing = [n for n in names if n not in self.known]
        if not missing:
            return
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap, client_id="hub-topics", **env_client_kwargs()
        )
        try:
            existing = set(admin.list_topics())
            to_create = [n for n in missing if n not in existing]
            if to_create:
                # Another worker may win the race; the topic is there either way.
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(
                        [
                            NewTopic(
                                n,
                                partitions or self.partitions,
                                self.replication_factor,
                                topic_configs=topic_config(
                                    self.min_insync_replicas, compact=compact
                                ),
                            )
                            for n in to_create
                        ]
                    )
        finally:
            admin.close()
        self.known.update(missing)
