"""JSON on Kafka in, validated Avro out: the ``json-bridge`` sink connector.

Some agency systems can produce to Kafka but have no Avro serializer or schema registry
client. They write the JSON of ``hub.contract.inbound`` (the same JSON the HTTP ingress takes)
to two topics, keyed by dossier code:

* ``<prefix>dossier.events.json``  → validated, Avro-encoded, written to ``<prefix>dossier.events``
* ``<prefix>feedback.events.json`` → validated, Avro-encoded, written to ``<prefix>feedback.events``

It runs like every connector: ``hub connector run --config connectors/examples/json-bridge.toml``
(``topics`` names the two JSON topics, ``value.converter = "bytes"`` because the rules need
each record's original bytes, ``errors.tolerance = "all"``).

A record the bridge cannot use raises :class:`PermanentError`; the runtime dead-letters it to
``<json topic>.dlq`` with its original key, value and headers plus the ``hub.errors.*``
headers (processor ``connector:<name>``), so ``hub dlq replay`` puts a corrected record back
on the JSON topic and through the bridge again. The reasons:

* ``undecodable``: the value is not UTF-8 (a leading UTF-8 BOM is tolerated) or not JSON;
* ``empty-value``: a tombstone (no value at all);
* ``validation``: the JSON is not a valid event; the detail lists ``path: rule (message)``
  from :func:`hub.dlq.detail_from_problems`, never a submitted value. The bridge adds two
  rules of its own: ``key: key_mismatch`` (the Kafka key is not the dossier code, so the
  record may have been partitioned apart from its dossier's other events) and
  ``event_type: wrong_topic`` (a feedback event on the dossier topic or the reverse);
* ``unencodable``: valid JSON the Avro schema still refuses (a contract bug, not the sender's).

Delivery is the SDK sink's: :meth:`JsonBridgeConnector.put` returns only once Kafka
acknowledged the Avro record, and the runtime commits an offset only after ``put`` returned
or the dead letter was acknowledged. A crash re-delivers what was not committed; the hub
deduplicates on ``event_id``, so nothing acknowledged is lost and nothing is counted twice. A
broker or registry that does not answer raises :class:`RetriableError` (retried, never
dead-lettered: it is not the record's fault).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any, ClassVar, Final

from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field

from connectors.publisher import EventPublisher
from connectors.sdk.base import SinkConnector, SinkRecord
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import (
    BrokerUnavailableError,
    ConfigProblem,
    PermanentError,
    RetriableError,
)
from connectors.sdk.runtime import procedure_lookup, validate_event
from hub.contract.errors import ContractError, EncodeError
from hub.contract.inbound import FieldProblem, InboundDossierEvent, InboundFeedbackEvent
from hub.dlq import detail_from_problems
from hub.settings import HubSettings
from hub.topic_admin import TopicCreator

__all__ = ["DOSSIER_JSON", "FEEDBACK_JSON", "JsonBridgeConnector", "JsonBridgeSettings"]

DOSSIER_JSON: Final = "dossier.events.json"
FEEDBACK_JSON: Final = "feedback.events.json"

Event = InboundDossierEvent | InboundFeedbackEvent


def _parse(value: bytes) -> object:
    """The JSON document of ``value``; raises ``PermanentError("undecodable")`` saying where
    it broke, never what it contained."""
    try:
        text = value.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PermanentError(
            "undecodable",
            f"value is not UTF-8 (invalid byte at position {exc.start} of {len(value)})",
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg is the parser's complaint ("Expecting value"), never the document itself
        raise PermanentError(
            "undecodable",
            f"value is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
        ) from None


def _kind(data: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(data), "a number")


def _invalid(problems: list[FieldProblem]) -> PermanentError:
    return PermanentError("validation", detail_from_problems(problems))


class JsonBridgeSettings(BaseModel):
    """``settings`` of a json-bridge connector."""

    model_config = ConfigDict(extra="forbid")

    #: the input topic (without prefix) that carries feedback events; every other one
    #: carries dossier events
    feedback_topic: str = Field(FEEDBACK_JSON, min_length=1)
    #: how long to wait for Kafka's acknowledgement of one published event
    ack_timeout_s: float = Field(30.0, gt=0)
    #: check procedure codes' effective dates against the reference data
    check_procedure_dates: bool = True


class JsonBridgeConnector(SinkConnector):
    """JSON bridge: JSON events on Kafka validated and republished as Avro.

    Use ``value.converter = "bytes"`` (checked) and ``errors.tolerance = "all"`` so that an
    invalid record is dead-lettered to ``<json topic>.dlq`` instead of stopping the bridge."""

    Settings: ClassVar[type[BaseModel]] = JsonBridgeSettings
    settings: JsonBridgeSettings

    def __init__(self, config: ConnectorConfig, settings: BaseModel | None = None) -> None:
        super().__init__(config, settings)
        self.feedback_topic = config.full(self.settings.feedback_topic)
        self.dossier_topic = next(
            (t for t in config.input_topics if t != self.feedback_topic), config.full(DOSSIER_JSON)
        )
        self.publisher: EventPublisher | None = None
        self.published = 0
        # loaded here, not in start(), so that check() applies every rule without Kafka too
        self._lookup: Callable[[str], date | None] | None = (
            procedure_lookup() if self.settings.check_procedure_dates else None
        )

    @classmethod
    def check_config(cls, config: ConnectorConfig) -> list[ConfigProblem]:
        problems = super().check_config(config)
        if config.value_converter != "bytes":
            problems.append(
                ConfigProblem(
                    "value.converter",
                    "must_be_bytes",
                    "the bridge reads each record's original bytes; set it to bytes",
                )
            )
        return problems

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        c = self.config
        try:
            # The agency systems only produce to the JSON topics; the bridge declares them and
            # their dead-letter topics with the hub's partitions, replicas and min ISR rather
            # than leave them to the broker's auto-creation defaults.
            TopicCreator.for_settings(HubSettings(), c.bootstrap_servers).ensure(
                [*c.input_topics, *(c.dlq_topic(t) for t in c.input_topics)]
            )
            self.publisher = EventPublisher(
                c.bootstrap_servers,
                c.schema_registry_url,
                topic_prefix=c.topic_prefix,
                procedure_effective_from=self._lookup,
                client_id=f"connect-{c.name}",
            )
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot reach Kafka: {exc}") from exc

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None

    def health(self) -> dict[str, Any]:
        return {"status": "up", "published": self.published}

    # --- one record ---------------------------------------------------------------------------

    def check(self, record: SinkRecord) -> Event:
        """The valid event of a consumed record; raises :class:`PermanentError` with the
        reason and detail of its dead letter otherwise. Needs no Kafka."""
        if record.raw_value is None:
            raise PermanentError("empty-value", "record has no value")
        data = _parse(record.raw_value)
        if not isinstance(data, dict):
            # never hand a JSON string to validation: it would parse it as a second document
            raise _invalid([FieldProblem("", "type", f"expected a JSON object, got {_kind(data)}")])
        result = validate_event(data, procedure_effective_from=self._lookup)
        if isinstance(result, list):
            raise _invalid(result)
        problems = self._routing_problems(record, result)
        if problems:
            raise _invalid(problems)
        return result

    def _routing_problems(self, record: SinkRecord, event: Event) -> list[FieldProblem]:
        problems = []
        want_feedback = record.topic == self.feedback_topic
        if isinstance(event, InboundFeedbackEvent) != want_feedback:
            right = self.feedback_topic if not want_feedback else self.dossier_topic
            problems.append(
                FieldProblem(
                    "event_type",
                    "wrong_topic",
                    f"a {event.event_type.value} event belongs on {right}",
                )
            )
        key = record.key.decode("utf-8", errors="replace") if record.key is not None else None
        if key != event.dossier_code:
            problems.append(
                FieldProblem(
                    "key",
                    "key_mismatch",
                    "the Kafka key must be the dossier code"
                    + (" (the record has no key)" if key is None else ""),
                )
            )
        return problems

    def put(self, record: SinkRecord) -> None:
        if self.publisher is None:
            raise RetriableError("put before start")
        event = self.check(record)
        try:
            future = self.publisher.send_async(event)
        except EncodeError:
            raise PermanentError("unencodable", self.publisher.unencodable_detail(event)) from None
        except ContractError as exc:  # the registry did not answer: not the record's fault
            raise RetriableError(f"schema registry: {exc}") from exc
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot publish: {exc}") from exc
        try:
            # put must return only once this record is acknowledged, so there is nothing to
            # batch it with: send it now rather than after the producer's linger (5 ms, a
            # floor on every put otherwise). flush() returns when the send completed, well
            # or not; get() then says which.
            self.publisher.flush(timeout_s=self.settings.ack_timeout_s)
            future.get(timeout=self.settings.ack_timeout_s)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"not acknowledged: {exc}") from exc
        self.published += 1
