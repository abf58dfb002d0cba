"""Dead letters: nothing the hub or a connector cannot process is dropped silently.

A record that cannot be decoded, validated or applied goes to ``<source topic>.dlq`` with its
original key and value bytes and ``hub.errors.*`` headers saying why (:mod:`hub.dlq.headers`);
:mod:`hub.dlq.publisher` sends it and waits for the acknowledgement; ``hub dlq list | replay``
(:mod:`hub.dlq.commands`) shows dead letters and puts them back on their source topic.
"""

from hub.dlq.headers import (
    HEADER_REPLAY_OF,
    DeadLetter,
    DeadLetterError,
    DeadLetterHeaderError,
    attempt_of,
    detail_from_problems,
    dlq_topic,
)
from hub.dlq.publisher import (
    DeadLetterPublisher,
    DeadLetterPublishError,
    DeadLetterRecord,
    count_dead_letter,
    dead_letter_record,
    publish_async,
)

__all__ = [
    "HEADER_REPLAY_OF",
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterHeaderError",
    "DeadLetterPublishError",
    "DeadLetterPublisher",
    "DeadLetterRecord",
    "attempt_of",
    "count_dead_letter",
    "dead_letter_record",
    "detail_from_problems",
    "dlq_topic",
    "publish_async",
]
