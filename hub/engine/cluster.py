"""Can the cluster keep what the settings promise? Checked once at the worker's start.

``HUB_REPLICATION_FACTOR`` replicas of every topic the hub creates, ``HUB_MIN_INSYNC_REPLICAS``
of them holding each acknowledged write. A worker that starts on a cluster that cannot
satisfy them would fail later, record by record (``NOT_ENOUGH_REPLICAS``), or worse, run
with weaker durability than the operators believe: so it refuses to start, with one line
that says what is wrong and what to change.
"""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

__all__ = ["ClusterError", "check_cluster", "replication_problems"]


class ClusterError(RuntimeError):
    """The cluster cannot satisfy the replication settings (the message says why)."""


def replication_problems(
    *,
    brokers: int,
    replication_factor: int,
    min_insync_replicas: int,
    topic_replicas: Mapping[str, int],
) -> list[str]:
    """What stops ``brokers`` brokers from keeping the settings (pure): too few brokers, a
    minimum no write could reach, or a hub topic made earlier with fewer replicas."""
    problems = []
    if min_insync_replicas < 1 or replication_factor < 1:
        problems.append("HUB_REPLICATION_FACTOR and HUB_MIN_INSYNC_REPLICAS must be at least 1")
    if min_insync_replicas > replication_factor:
        problems.append(
            f"HUB_MIN_INSYNC_REPLICAS={min_insync_replicas} is more than "
            f"HUB_REPLICATION_FACTOR={replication_factor}: no write could ever be acknowledged"
        )
    if replication_factor > brokers:
        problems.append(
            f"HUB_REPLICATION_FACTOR={replication_factor} needs {replication_factor} brokers; "
            f"the cluster has {brokers} (start more, or lower the setting)"
        )
    fewer = sorted(
        name for name, replicas in topic_replicas.items() if replicas < replication_factor
    )
    if fewer:
        shown = ", ".join(f"{n} ({topic_replicas[n]})" for n in fewer[:3])
        more = f" and {len(fewer) - 3} more" if len(fewer) > 3 else ""
        problems.append(
            f"topics made with fewer replicas than HUB_REPLICATION_FACTOR={replication_factor}: "
            f"{shown}{more} (reassign their partitions, or lower the setting)"
        )
    return problems


def check_cluster(
    config: Mapping[str, str | int | float | bool],
    topics: list[str],
    *,
    replication_factor: int,
    min_insync_replicas: int,
    timeout_s: float = 30.0,
) -> None:
    """Raise :class:`ClusterError` unless the cluster at ``config`` can keep the settings for
    the hub's ``topics`` (those that exist already are checked for their replicas)."""
    admin = AdminClient(dict(config))
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ClusterError(f"cannot read the cluster's metadata: {exc}") from exc
    replicas = {}
    for name in topics:
        found = metadata.topics.get(name)
        if found is not None and found.error is None and found.partitions:
            replicas[name] = min(len(p.replicas) for p in found.partitions.values())
    problems = replication_problems(
        brokers=len(metadata.brokers),
        replication_factor=replication_factor,
        min_insync_replicas=min_insync_replicas,
        topic_replicas=replicas,
    )
    if problems:
        raise ClusterError("; ".join(problems))
