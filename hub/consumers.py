"""The one place our kafka-python consumers are built: they read committed records only.

The hub worker writes its outputs (``dossier.status``, ``portal.outbox``, ``agency.inbox.*``,
``dossier.alerts``, ``hub.audit`` and the ``*.dlq`` topics) inside Kafka transactions. A
transaction of a worker that was fenced (its partitions moved to another worker during a
rebalance) or that failed midway is aborted, and its records stay in the log. A consumer with
kafka-python's default ``isolation_level='read_uncommitted'`` would still deliver them: a
status the portal never should have seen, a webhook sent twice, an audit entry of a chain
another worker continued. So every consumer of ours is ``read_committed``: it skips aborted
records and reads only up to the last stable offset, and its ``end_offsets`` are that offset
too, so "read to the end" loops stop at committed data. Non-transactional topics read the
same either way.

aiokafka takes the same keyword (:data:`READ_COMMITTED`), and so does confluent-kafka's
``isolation.level`` (its default, but we say it anyway). The sinks' and bridges' group
consumer is confluent-kafka's, built by :func:`hub.consumer_group.manual_commit_consumer`.
"""

from __future__ import annotations

from typing import Any, Final

from kafka import KafkaConsumer

from hub.security.environment import env_client_kwargs

__all__ = ["READ_COMMITTED", "committed_consumer"]

#: the isolation level of every consumer of the hub's outputs (all three clients)
READ_COMMITTED: Final = "read_committed"


def committed_consumer(
    bootstrap: str, *, client_id: str, group_id: str | None = None, **extra: Any
) -> KafkaConsumer:
    """A kafka-python consumer that reads committed records only and authenticates as the
    environment says (``HUB_KAFKA_SECURITY_PROTOCOL`` ...; ``extra`` may override that).

    Group-less (``group_id=None``) unless given a group; never commits on its own. The
    isolation level cannot be overridden: a caller that wants aborted records is a bug."""
    if extra.get("isolation_level", READ_COMMITTED) != READ_COMMITTED:
        raise ValueError("a consumer of the hub's outputs reads committed records only")
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        **env_client_kwargs(),
        "client_id": client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        **extra,
        "isolation_level": READ_COMMITTED,
    }
    return KafkaConsumer(**config)
