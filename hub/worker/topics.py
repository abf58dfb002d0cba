"""The worker's own topics: inputs, outputs and the inputs' dead-letter topics (created with
:class:`hub.topic_admin.TopicCreator`)."""

from __future__ import annotations

from hub.dlq.headers import dlq_topic
from hub.worker.processor import Topics

__all__ = ["hub_topics"]


def hub_topics(topics: Topics) -> list[str]:
    inputs = [topics.dossier_events, topics.feedback_events]
    outputs = [topics.status, topics.portal_outbox, topics.alerts]
    return inputs + outputs + [dlq_topic(t) for t in inputs]
