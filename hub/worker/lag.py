"""Consumer lag of the hub's input topics, sampled from Kafka and exported to Prometheus.

``hub_consumer_lag_messages{topic}``: records on the input topics (dossier events, feedback
events) not yet committed by the hub's consumer group, summed over partitions so the labels
stay bounded. The figure is the group's, not one worker's: every worker samples the same
group, so the rules and the dashboard take ``max by (topic)`` over workers, never ``sum``.

:func:`lag_by_topic` is the arithmetic (pure); :class:`LagSampler` asks the broker
(kafka-python, blocking: run :meth:`LagSampler.sample` in a thread, as :func:`refresh` does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Gauge

from hub.security.environment import env_client_kwargs

__all__ = ["CONSUMER_LAG", "LagSampler", "export_lag", "lag_by_topic", "refresh"]

log = logging.getLogger("hub.worker.lag")

#: (topic, partition)
Partition = tuple[str, int]

CONSUMER_LAG = Gauge(
    "hub_consumer_lag_messages",
    "Records of an input topic not yet committed by the hub's consumer group, summed over "
    "partitions (the group's figure: every worker reports the same, take max over workers)",
    ["topic"],
)


def lag_by_topic(
    topics: Iterable[str],
    end: Mapping[Partition, int],
    committed: Mapping[Partition, int | None],
    beginning: Mapping[Partition, int] | None = None,
) -> dict[str, int]:
    """Lag per topic: the sum over its partitions of end offset minus committed offset.

    A partition without a committed offset (group never committed there) counts from its
    beginning offset (or 0 when unknown); a committed offset below the beginning (records
    deleted by retention) also counts from the beginning. A partition never goes below 0.
    Every topic in ``topics`` gets a figure, 0 included; partitions of other topics are
    ignored."""
    wanted = list(dict.fromkeys(topics))
    lags = dict.fromkeys(wanted, 0)
    starts = beginning or {}
    for (topic, partition), end_offset in end.items():
        if topic not in lags:
            continue
        start = starts.get((topic, partition), 0)
        position = committed.get((topic, partition))
        done = start if position is None or position < start else position
        lags[topic] += max(0, end_offset - done)
    return lags


def export_lag(lags: Mapping[str, int]) -> None:
    for topic, lag in lags.items():
        CONSUMER_LAG.labels(topic).set(lag)


class LagSampler:
    """Reads the group's committed offsets and the topics' end offsets from the broker.

    Blocking (kafka-python); the clients are made on first use and kept."""

    def __init__(self, bootstrap_servers: str, group_id: str, topics: Iterable[str]) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.topics = list(topics)
        self._admin: Any = None
        self._consumer: Any = None

    def _clients(self) -> tuple[Any, Any]:
        from kafka import KafkaAdminClient

        from hub.consumers import committed_consumer

        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers,
                client_id="hub-lag",
                **env_client_kwargs(),
            )
        if self._consumer is None:  # no group: only reads offsets, never joins or commits
            # end offsets as a read_committed member sees them (the last stable offset)
            self._consumer = committed_consumer(self.bootstrap_servers, client_id="hub-lag")
        return self._admin, self._consumer

    def sample(self) -> dict[str, int]:
        from kafka import TopicPartition

        admin, consumer = self._clients()
        partitions = [
            TopicPartition(topic, partition)
            for topic in self.topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return dict.fromkeys(self.topics, 0)
        end = consumer.end_offsets(partitions)
        beginning = consumer.beginning_offsets(partitions)
        offsets = admin.list_group_offsets({self.group_id: None}).get(self.group_id, {})
        return lag_by_topic(
            self.topics,
            end={(tp.topic, tp.partition): int(o) for tp, o in end.items()},
            committed={
                (tp.topic, tp.partition): (None if meta.offset < 0 else int(meta.offset))
                for tp, meta in offsets.items()
            },
            beginning={(tp.topic, tp.partition): int(o) for tp, o in beginning.items()},
        )

    def close(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                try:
                    client.close()
                except Exception:  # closing on the way out: nothing more to do
                    log.debug("closing a lag client failed", exc_info=True)
        self._admin = self._consumer = None


async def refresh(sampler: LagSampler) -> None:
    """Samples in a thread (the event loop is not blocked) and exports; a failure is logged
    and the clients are made again next time, the gauge keeps its last values."""
    try:
        lags = await asyncio.to_thread(sampler.sample)
    except Exception as exc:  # a monitoring probe must not stop the worker
        log.warning("consumer lag not sampled: %s", exc)
        await asyncio.to_thread(sampler.close)
        return
    export_lag(lags)
