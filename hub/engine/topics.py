"""Topics the engine creates on first use (agency inboxes, the audit topic, its changelog),
with librdkafka's admin client and bounded waits; their settings are
:func:`hub.topic_admin.topic_config`'s, as every hub topic's.

The engine's thread must never hang on a broker that went away: kafka-python's admin client
can wait minutes to bootstrap, while here every call ends within ``timeout_s`` and raises
:class:`TopicsUnavailable`, which the loop treats as any failed checkpoint (abort, read
again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from hub.topic_admin import topic_config

__all__ = ["EngineTopics", "TopicsUnavailable"]


class TopicsUnavailable(KafkaException):
    """The topics could not be created or confirmed in time."""


class EngineTopics:
    def __init__(
        self,
        config: Mapping[str, str | int | float | bool],
        partitions: int,
        replication_factor: int,
        timeout_s: float,
        min_insync_replicas: int = 1,
    ) -> None:
        self._config = dict(config)
        self._client: AdminClient | None = None  # connected on first use
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.min_insync_replicas = min_insync_replicas
        self.timeout_s = timeout_s
        self.known: set[str] = set()

    @property
    def _admin(self) -> AdminClient:
        if self._client is None:
            self._client = AdminClient(self._config)
        return self._client

    def ensure(
        self,
        names: Iterable[str],
        *,
        compact: bool = False,
        partitions: int = 0,
        keep_forever: bool = False,
    ) -> None:
        """Create the topics of ``names`` not known to exist (``compact``: compacted;
        ``keep_forever``: no time or size retention, as the audit chains need)."""
        missing = [n for n in dict.fromkeys(names) if n not in self.known]
        if not missing:
            return
        config = topic_config(self.min_insync_replicas, compact=compact, keep_forever=keep_forever)
        futures = self._admin.create_topics(
            [
                NewTopic(n, partitions or self.partitions, self.replication_factor, config=config)
                for n in missing
            ],
            request_timeout=self.timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=self.timeout_s)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    raise TopicsUnavailable(
                        KafkaError(KafkaError._TIMED_OUT, f"topic {name} not created: {exc}")
                    ) from exc
            except Exception as exc:  # the future timed out
                raise TopicsUnavailable(
                    KafkaError(KafkaError._TIMED_OUT, f"topic {name} not created: {exc!r}")
                ) from exc
            self.known.add(name)
