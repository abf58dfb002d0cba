"""Sending dead letters: the original bytes to ``<source topic>.dlq``, acknowledged first.

The source offset of a failed record may be committed only once its dead letter is safe on
the broker, so every path here waits for the acknowledgement (``acks=all``) before it returns:

- connectors and other threads use :class:`DeadLetterPublisher` (kafka-python, idempotent);
- faust agents use :func:`publish_async` with the app's own producer
  (``await publish_async(app.producer.send_and_wait, letter, key, value)``), or build the
  record with :func:`dead_letter_record` and send it however they like, then call
  :func:`count_dead_letter`.

Every acknowledged dead letter increments ``hub_dead_letters_total{source_topic, reason,
processor}``; dossier codes and agencies never become labels.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple, Self

from kafka import KafkaProducer
from kafka.errors import KafkaError
from prometheus_client import Counter

from hub.dlq.headers import DeadLetter, DeadLetterError, passthrough_headers
from hub.security.environment import env_client_kwargs

__all__ = [
    "DEAD_LETTERS",
    "DeadLetterPublishError",
    "DeadLetterPublisher",
    "DeadLetterRecord",
    "count_dead_letter",
    "dead_letter_record",
    "publish_async",
]

DEAD_LETTERS = Counter(
    "hub_dead_letters_total",
    "Records sent to a dead-letter topic, by source topic, reason code and processor.",
    ["source_topic", "reason", "processor"],
)


class DeadLetterPublishError(DeadLetterError):
    """The broker did not acknowledge a dead letter; do not commit the source offset."""


class DeadLetterRecord(NamedTuple):
    """One record for the dead-letter topic, ready for any producer."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter_record(
    letter: DeadLetter,
    key: bytes | None,
    value: bytes | None,
    original_headers: Iterable[tuple[str, bytes | None]] = (),
) -> DeadLetterRecord:
    """The dead-letter record of ``letter``: key and value untouched, the record's own headers
    (trace context…) kept, and the ``hub.errors.*`` headers of this failure added."""
    return DeadLetterRecord(
        topic=letter.dlq_topic,
        key=key,
        value=value,
        headers=[*passthrough_headers(original_headers), *letter.to_headers()],
    )


def count_dead_letter(letter: DeadLetter) -> None:
    """Count an acknowledged dead letter in ``hub_dead_letters_total``."""
    DEAD_LETTERS.labels(
        source_topic=letter.source_topic, reason=letter.reason, processor=letter.processor
    ).inc()


async def publish_async(
    send_and_wait: Callable[..., Awaitable[Any]],
    letter: DeadLetter,
    key: bytes | None,
    value: bytes | None,
    original_headers: Iterable[tuple[str, bytes | None]] = (),
) -> Any:
    """Send a dead letter with an asyncio producer and wait for its acknowledgement.

    ``send_and_wait`` is called as faust's ``Producer.send_and_wait(topic, key, value,
    partition, timestamp, headers)``: pass ``app.producer.send_and_wait``. For a bare
    aiokafka producer pass ``lambda t, k, v, p, ts, h: producer.send_and_wait(t, v, k, p,
    None, h)``. Returns whatever the producer returns (its record metadata).
    """
    record = dead_letter_record(letter, key, value, original_headers)
    try:
        result = await send_and_wait(
            record.topic, record.key, record.value, None, None, record.headers
        )
    except Exception as exc:
        raise DeadLetterPublishError(
            f"dead letter for {letter.source_topic}[{letter.source_partition}]@"
            f"{letter.source_offset} not acknowledged: {exc}"
        ) from exc
    count_dead_letter(letter)
    return result


class DeadLetterPublisher:
    """Publishes dead letters with a kafka-python producer, one acknowledged send at a time.

    ``acks="all"`` and idempotence (kafka-python enables it when the broker supports it), so
    a retried send is not written twice. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] | None = None,
        *,
        producer: KafkaProducer | None = None,
        client_id: str = "hub-dlq",
        timeout_s: float = 30.0,
        **producer_config: Any,
    ) -> None:
        self._owned = producer is None
        if producer is None:
            if bootstrap_servers is None:
                raise ValueError("give bootstrap_servers or a producer")
            try:
                producer = KafkaProducer(
                    bootstrap_servers=bootstrap_servers,
                    **env_client_kwargs(),
                    client_id=client_id,
                    acks="all",
                    enable_idempotence=True,
                    **producer_config,
                )
            except KafkaError as exc:
                raise DeadLetterPublishError(
                    f"cannot reach Kafka at {bootstrap_servers}: {exc}"
                ) from exc
        self._producer = producer
        self.timeout_s = timeout_s

    def publish(
        self,
        letter: DeadLetter,
        key: bytes | None,
        value: bytes | None,
        original_headers: Iterable[tuple[str, bytes | None]] = (),
    ) -> None:
        """Send and block until the broker acknowledges; raises DeadLetterPublishError."""
        record = dead_letter_record(letter, key, value, original_headers)
        try:
            future = self._producer.send(
                record.topic, key=record.key, value=record.value, headers=record.headers
            )
            future.get(timeout=self.timeout_s)
        except KafkaError as exc:
            raise DeadLetterPublishError(
                f"dead letter for {letter.source_topic}[{letter.source_partition}]@"
                f"{letter.source_offset} not acknowledged by {record.topic}: {exc}"
            ) from exc
        count_dead_letter(letter)

    def close(self, timeout_s: float | None = None) -> None:
        """Close the producer if this publisher created it."""
        if self._owned:
            self._producer.close(timeout=self.timeout_s if timeout_s is None else timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
