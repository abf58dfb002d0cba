"""Creating Kafka topics up front, with the partition count, replicas and min ISR the hub
expects: the one place every part of the hub (worker, connectors, bridge) creates topics.

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

__all__ = ["TopicCreator"]


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
                                topic_configs={
                                    "min.insync.replicas": str(self.min_insync_replicas),
                                    **({"cleanup.policy": "compact"} if compact else {}),
                                },
                            )
                            for n in to_create
                        ]
                    )
        finally:
            admin.close()
        self.known.update(missing)
