"""Creating the hub's topics up front, with the partition count the worker expects.

Relying on the broker's auto-creation would give output topics whatever ``num.partitions``
the cluster has and races the first send; declaring them keeps the layout deliberate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from hub.dlq.headers import dlq_topic
from hub.security.client import env_client_kwargs
from hub.worker.processor import Topics

__all__ = ["TopicCreator", "hub_topics"]


def hub_topics(topics: Topics) -> list[str]:
    inputs = [topics.dossier_events, topics.feedback_events]
    outputs = [topics.status, topics.portal_outbox, topics.alerts]
    return inputs + outputs + [dlq_topic(t) for t in inputs]


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
