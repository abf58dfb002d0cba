"""The JSON bridge as an SDK sink connector (``json-bridge``): ``hub connector run --config``.

It reads the JSON topics (``topics``, usually ``dossier.events.json`` and
``feedback.events.json``) with ``value.converter = "bytes"`` (the bridge wants the original
bytes: a UTF-8 BOM is tolerated, anything else undecodable is named as such), applies the
bridge's rules (:class:`connectors.json_bridge.JsonChecker`: valid event, Kafka key = dossier
code, feedback events only on ``feedback_topic``) and publishes each valid event as Avro to
``<prefix>dossier.events`` / ``<prefix>feedback.events``, returning from :meth:`put` only once
Kafka acknowledged it. An invalid record raises :class:`PermanentError` with the bridge's
reason (``undecodable``, ``empty-value``, ``validation``, ``unencodable``) and detail, so the
runtime dead-letters it to ``<json topic>.dlq`` with ``errors.tolerance = "all"`` (or stops
with ``none``). A broker or registry that does not answer raises :class:`RetriableError`:
good records are never dead-lettered for it.

The standalone ``python -m connectors.json_bridge`` batches and is faster; this one is the
same rules under the SDK runtime (one acknowledged record at a time, offsets committed by
the runtime after each ``put``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field

from connectors.json_bridge import FEEDBACK_JSON, PROCESSOR, JsonChecker, _procedure_lookup
from connectors.publisher import EventPublisher
from connectors.sdk.base import SinkConnector, SinkRecord
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import (
    BrokerUnavailableError,
    ConfigProblem,
    PermanentError,
    RetriableError,
)
from hub.contract.errors import ContractError, EncodeError
from hub.dlq import DeadLetter

__all__ = ["JsonBridgeConnector", "JsonBridgeSettings"]


class JsonBridgeSettings(BaseModel):
    """``settings`` of a json-bridge connector."""

    model_config = ConfigDict(extra="forbid")

    #: the input topic (without prefix) that carries feedback events; every other one
    #: carries dossier events
    feedback_topic: str = Field(FEEDBACK_JSON, min_length=1)
    #: how long to wait for Kafka's acknowledgement of one published event
    ack_timeout_s: float = Field(30.0, gt=0)
    #: check procedure codes' effective dates against the reference data (as the bridge does)
    check_procedure_dates: bool = True


class JsonBridgeConnector(SinkConnector):
    """JSON bridge: JSON events on Kafka validated and republished as Avro.

    Use ``value.converter = "bytes"`` (checked) and ``errors.tolerance = "all"`` so that an
    invalid record is dead-lettered to ``<json topic>.dlq`` instead of stopping the bridge."""

    Settings: ClassVar[type[BaseModel]] = JsonBridgeSettings
    settings: JsonBridgeSettings

    def __init__(self, config: ConnectorConfig, settings: BaseModel | None = None) -> None:
        super().__init__(config, settings)
        self.publisher: EventPublisher | None = None
        self.checker: JsonChecker | None = None
        self.published = 0

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

    def start(self) -> None:
        c = self.config
        lookup = _procedure_lookup() if self.settings.check_procedure_dates else None
        try:
            self.publisher = EventPublisher(
                c.bootstrap_servers,
                c.schema_registry_url,
                topic_prefix=c.topic_prefix,
                procedure_effective_from=lookup,
                client_id=f"{PROCESSOR}-{c.name}",
            )
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot reach Kafka: {exc}") from exc
        feedback = c.full(self.settings.feedback_topic)
        dossier = next((t for t in c.input_topics if t != feedback), c.full("dossier.events.json"))
        self.checker = JsonChecker(dossier, feedback, self.publisher.validate)

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None
        self.checker = None

    def health(self) -> dict[str, Any]:
        return {"status": "up", "published": self.published}

    def put(self, record: SinkRecord) -> None:
        if self.publisher is None or self.checker is None:
            raise RetriableError("put before start")
        consumed = SimpleNamespace(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.raw_value,
            headers=record.headers,
        )
        outcome = self.checker.check(consumed)
        if isinstance(outcome, DeadLetter):
            raise PermanentError(outcome.reason, outcome.detail)
        try:
            future = self.publisher.send_async(outcome)
        except EncodeError:
            raise PermanentError(
                "unencodable", self.publisher.unencodable_detail(outcome)
            ) from None
        except ContractError as exc:  # the registry did not answer: not the record's fault
            raise RetriableError(f"schema registry: {exc}") from exc
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot publish: {exc}") from exc
        try:
            future.get(timeout=self.settings.ack_timeout_s)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"not acknowledged: {exc}") from exc
        self.published += 1
