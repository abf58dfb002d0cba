"""Validated JSON in, Avro on Kafka out: the write path every source connector shares.

``publish`` validates an agency's JSON with the inbound models (field-level problems come
back, nothing is written), converts it to the Avro record, frames it in the Confluent wire
format and writes it keyed by dossier code. It returns only once Kafka acknowledged the write,
so a caller may acknowledge its own source (HTTP 202, outbox row, file) after it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from kafka import KafkaProducer

from hub.contract.event_types import FEEDBACK_EVENT_TYPES
from hub.contract.inbound import (
    FieldProblem,
    InboundDossierEvent,
    InboundFeedbackEvent,
    to_avro_record,
    validate_dossier_event,
    validate_feedback_event,
)
from hub.contract.registry import SchemaRegistryClient
from hub.contract.schemas import SchemaKind, load_schema, versions
from hub.contract.serde import AvroSerializer
from hub.security.environment import env_client_kwargs

__all__ = ["EventPublisher"]


class EventPublisher:
    def __init__(
        self,
        bootstrap: str,
        registry_url: str,
        *,
        topic_prefix: str = "",
        procedure_effective_from: Callable[[str], date | None] | None = None,
        client_id: str = "hub-connector",
    ) -> None:
        self.registry = SchemaRegistryClient(registry_url)
        self.dossier_topic = f"{topic_prefix}dossier.events"
        self.feedback_topic = f"{topic_prefix}feedback.events"
        self._dossier = AvroSerializer(
            self.registry, f"{self.dossier_topic}-value", load_schema(SchemaKind.DOSSIER_EVENT)
        )
        self._feedback = AvroSerializer(
            self.registry, f"{self.feedback_topic}-value", load_schema(SchemaKind.FEEDBACK_EVENT)
        )
        self._versions = {
            SchemaKind.DOSSIER_EVENT: max(versions(SchemaKind.DOSSIER_EVENT)),
            SchemaKind.FEEDBACK_EVENT: max(versions(SchemaKind.FEEDBACK_EVENT)),
        }
        self._procedure_effective_from = procedure_effective_from
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            **env_client_kwargs(),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            client_id=client_id,
        )

    def validate(
        self, data: Any, *, now: datetime | None = None
    ) -> InboundDossierEvent | InboundFeedbackEvent | list[FieldProblem]:
        event_type = data.get("event_type") if isinstance(data, dict) else None
        if event_type in FEEDBACK_EVENT_TYPES:
            return validate_feedback_event(data, now=now)
        return validate_dossier_event(
            data, now=now, procedure_effective_from=self._procedure_effective_from
        )

    def publish(
        self, data: Any, *, now: datetime | None = None, timeout_s: float = 30.0
    ) -> list[FieldProblem]:
        """Validate and write one event; [] once Kafka acknowledged it, else the problems."""
        event = self.validate(data, now=now)
        if isinstance(event, list):
            return event
        self.send_valid(event, timeout_s=timeout_s)
        return []

    def send_valid(
        self, event: InboundDossierEvent | InboundFeedbackEvent, *, timeout_s: float = 30.0
    ) -> None:
        self.send_async(event).get(timeout=timeout_s)

    def topic_for(self, event: InboundDossierEvent | InboundFeedbackEvent) -> str:
        """The topic ``event`` goes to: feedback to its own, everything else to dossiers."""
        return (
            self.feedback_topic if isinstance(event, InboundFeedbackEvent) else self.dossier_topic
        )

    def unencodable_detail(self, event: InboundDossierEvent | InboundFeedbackEvent) -> str:
        """The dead-letter detail for a validated event its topic's schema cannot encode."""
        return f"the validated event does not fit the Avro schema of {self.topic_for(event)}-value"

    def send_async(self, event: InboundDossierEvent | InboundFeedbackEvent) -> Any:
        """Write without waiting; the returned future's ``get()`` waits for the ack."""
        topic = self.topic_for(event)
        if isinstance(event, InboundFeedbackEvent):
            serialize, kind = self._feedback, SchemaKind.FEEDBACK_EVENT
        else:
            serialize, kind = self._dossier, SchemaKind.DOSSIER_EVENT
        record = to_avro_record(
            event, recorded_at=datetime.now(UTC), schema_version=self._versions[kind]
        )
        return self.producer.send(
            topic,
            key=event.dossier_code.encode(),
            value=serialize(record),
            headers=[("event-type", str(event.event_type).encode())],
        )

    def flush(self, timeout_s: float = 30.0) -> None:
        self.producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self.producer.close(timeout=10)
        self.registry.close()
