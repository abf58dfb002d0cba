"""What a connector implements: Kafka Connect's source/sink split, in plain Python.

* :class:`SourceConnector`: the runtime calls :meth:`~SourceConnector.poll` in a loop; each
  :class:`SourceRecord` is one agency JSON event plus where it came from (``source_partition``,
  ``source_offset``, e.g. ``"outbox"`` / ``{"id": 42}``). The runtime validates and publishes
  it with :class:`connectors.publisher.EventPublisher`, waits for Kafka's acknowledgement,
  then stores the offsets (:mod:`connectors.sdk.offsets`) and calls
  :meth:`~SourceConnector.on_committed`. On start ``self.context.offset(partition)`` is the last
  stored offset: resume strictly after it.
* :class:`PushSourceConnector`: for servers (the HTTP ingress). ``self.context``
  (:class:`PushContext`) validates events and publishes them, returning only after Kafka
  acknowledged every one. An HTTP push source does not run a server of its own: it gives
  :meth:`~PushSourceConnector.routes`, which the runtime mounts on the process's one HTTP
  server (:mod:`connectors.sdk.http_server`, also ``/health`` and ``/metrics``), listening
  where :meth:`~PushSourceConnector.http_binding` says.
* :class:`SinkConnector`: the runtime consumes ``topics`` (and the topics matching
  ``topics.regex``) and calls :meth:`~SinkConnector.put` once per record, in offset order per
  partition, partitions in parallel (:mod:`connectors.sdk.sink`); raise
  :class:`RetriableError` (retried per ``errors.retry.*``) or :class:`PermanentError`
  (dead-lettered with ``errors.tolerance=all``). Offsets are committed only after ``put``
  returned or the record was dead-lettered: at-least-once, so make ``put`` idempotent (the
  event id or the record's topic/partition/offset make good idempotency keys).

Every connector has a ``Settings`` pydantic model (the config's ``settings`` table), and
``start()`` / ``stop()`` / ``health()`` hooks. The runtime calls them from one thread, except
``health()``, which the health endpoint may call from another, and a sink's ``put``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from connectors.sdk.errors import ConfigProblem

if TYPE_CHECKING:
    from aiohttp import web

    from connectors.sdk.config import ConnectorConfig
    from hub.contract.inbound import FieldProblem, InboundDossierEvent, InboundFeedbackEvent

__all__ = [
    "Connector",
    "ConnectorKind",
    "HttpBinding",
    "NoSettings",
    "PushContext",
    "PushSourceConnector",
    "SinkConnector",
    "SinkRecord",
    "SourceConnector",
    "SourceContext",
    "SourceRecord",
    "http_binding_problems",
]

ConnectorKind = Literal["source", "push-source", "sink"]
Offset = dict[str, Any]


@dataclass(frozen=True)
class SourceRecord:
    """One event read from an agency system.

    ``value`` is the agency JSON event (``hub.contract.inbound``); ``source_partition`` names
    an independent stream of the source (a table, a directory; no ``|``), ``source_offset``
    where this record sits in it (JSON-serialisable). ``raw`` is the record's original bytes,
    kept in a dead letter (default: ``value`` as JSON).

    ``problems``: what the connector itself found wrong with the record, which the inbound
    models cannot see (an outbox row that is not JSON, or whose ``dossier_code`` column
    differs from its payload's). Such a record is not validated: it is dead-lettered with
    ``reason`` (``errors.tolerance=all``) or stops the connector (``none``), like an invalid
    one."""

    value: dict[str, Any]
    source_partition: str
    source_offset: Offset
    raw: bytes | None = None
    problems: tuple[FieldProblem, ...] = ()
    reason: str = "validation"


@dataclass(frozen=True)
class SinkRecord:
    """One consumed record; ``value`` is decoded per ``value.converter`` (Avro: the record
    dict as ``fastavro`` reads it, payload union as ``(record name, fields)``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: Any
    raw_value: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp_ms: int | None = None

    @property
    def position(self) -> str:
        """``topic[partition]@offset``: unique, a good idempotency key."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


class NoSettings(BaseModel):
    """For connectors without settings: the ``settings`` table must be empty."""

    model_config = ConfigDict(extra="forbid")


class Connector(ABC):
    """Common to every connector. Subclasses set ``Settings`` and narrow ``settings``::

    class FileDrop(SourceConnector):
        class Settings(BaseModel): directory: Path
        settings: FileDrop.Settings
    """

    Settings: ClassVar[type[BaseModel]] = NoSettings
    kind: ClassVar[ConnectorKind]

    def __init__(self, config: ConnectorConfig, settings: BaseModel | None = None) -> None:
        self.config = config
        self.name = config.name
        self.settings = settings if settings is not None else config.connector_settings
        self.log = logging.getLogger(f"connectors.{config.name}")

    @classmethod
    def check_config(cls, config: ConnectorConfig) -> list[ConfigProblem]:
        """Rules across fields, beyond ``Settings``; extend with ``super().check_config``."""
        return []

    @classmethod
    def summary(cls) -> str:
        """One line for ``hub connector list``: the class docstring's first line."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else cls.__qualname__

    def start(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Open connections; called once, before any poll/put/request."""

    def stop(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Release everything; called once, after the last poll/put (also after a failure)."""

    def health(self) -> dict[str, Any]:
        """A small JSON-able status for the health endpoint; ``{"status": "up"}`` by default.
        Return ``"status": "down"`` to make the endpoint answer 503."""
        return {"status": "up"}


def _check_source_topic(config: ConnectorConfig) -> list[ConfigProblem]:
    # EventPublisher routes by event type to <prefix>dossier.events / feedback.events
    if config.topic != "dossier.events":
        return [
            ConfigProblem(
                "topic",
                "unsupported",
                "sources write dossier events to dossier.events and feedback events to "
                "feedback.events; use topic.prefix to move both",
            )
        ]
    return []


class SourceContext:
    """What a source connector may ask the runtime: the offsets stored for it."""

    def __init__(self, offsets: Mapping[str, Offset] | None = None) -> None:
        self._offsets = dict(offsets or {})

    def offset(self, source_partition: str) -> Offset | None:
        """The last acknowledged offset of ``source_partition``, or None (start from scratch)."""
        found = self._offsets.get(source_partition)
        return dict(found) if found is not None else None

    def offsets(self) -> dict[str, Offset]:
        return {k: dict(v) for k, v in self._offsets.items()}

    def _update(self, offsets: Mapping[str, Offset]) -> None:
        self._offsets.update(offsets)


class SourceConnector(Connector):
    """Pulls events from an agency system (DB outbox, exported files, …)."""

    kind: ClassVar[ConnectorKind] = "source"

    def __init__(self, config: ConnectorConfig, settings: BaseModel | None = None) -> None:
        super().__init__(config, settings)
        self.context = SourceContext()

    @classmethod
    def check_config(cls, config: ConnectorConfig) -> list[ConfigProblem]:
        return [*super().check_config(config), *_check_source_topic(config)]

    def initialize(self, context: SourceContext) -> None:
        """Called by the runtime before :meth:`start` with the stored offsets."""
        self.context = context

    @abstractmethod
    def poll(self) -> list[SourceRecord]:
        """The next records after those already returned, oldest first; ``[]`` when there is
        nothing new (the runtime waits ``poll.interval.ms``). Keep batches modest (hundreds):
        they are published, acknowledged and committed as one unit. Do not block for long:
        stop waits for poll to return."""

    def on_committed(self, offsets: Mapping[str, Offset]) -> None:
        """The records up to ``offsets`` (latest per source partition) are in Kafka and their
        offsets stored: mark them done at the source if it wants that (delete outbox rows,
        move files)."""

    def pending(self) -> bool:
        """True while the source holds something it has seen but not handed on yet (a file
        still being written, rows behind an id hole, a file not moved for lack of disk
        space). ``hub connector run --once`` stops at the first empty poll only when this is
        False, so that "nothing to read" does not mean "not ready yet"."""
        return False


class SinkConnector(Connector):
    """Delivers records from Kafka topics to an outside system (portal, agency webhooks)."""

    kind: ClassVar[ConnectorKind] = "sink"
    #: what to read when the config names neither ``topics`` nor ``topics.regex`` (a regex
    #: of the names after the prefix; None: the config must name them)
    default_topics_regex: ClassVar[str | None] = None

    @classmethod
    def check_config(cls, config: ConnectorConfig) -> list[ConfigProblem]:
        problems = super().check_config(config)
        if not config.topics and not config.topics_regex and cls.default_topics_regex is None:
            problems.append(
                ConfigProblem("topics", "missing", "a sink needs topics or topics.regex to read")
            )
        return problems

    @abstractmethod
    def put(self, record: SinkRecord) -> None:
        """Deliver one record; return only when the receiver has it. Raise
        :class:`~connectors.sdk.errors.RetriableError` (try again later, after its
        ``retry_after_s`` if given) or :class:`~connectors.sdk.errors.PermanentError`
        (dead-letter it). Called from one thread per assigned partition (records of a
        partition in offset order, partitions in parallel): keep shared state thread-safe."""

    def dead_lettered(self, topic: str, reason: str) -> None:
        """A record of ``topic`` went to the dead-letter topic (Kafka acknowledged it) for
        ``reason``: count it in the connector's own metrics if it keeps any."""


class PushContext(Protocol):
    """What the runtime gives a push source (see :class:`connectors.sdk.runtime.PushPublisher`)."""

    def validate(
        self, value: object
    ) -> InboundDossierEvent | InboundFeedbackEvent | list[FieldProblem]:
        """The valid event of a parsed JSON value, or its field-level problems."""
        ...

    def publish(
        self,
        events: Sequence[InboundDossierEvent | InboundFeedbackEvent],
        *,
        timeout_s: float | None = None,
    ) -> None:
        """Write every event and return once Kafka acknowledged all of them; raises
        :class:`~connectors.sdk.errors.BrokerUnavailableError` otherwise (some may still
        reach Kafka: the hub deduplicates on ``event_id``, so the sender may retry)."""
        ...

    def count(self, outcome: str, n: int = 1) -> None:
        """Count records in ``hub_connector_records_total{outcome}`` (published ones are
        counted by ``publish``; count rejections here: ``invalid``, ``unauthorized`` …)."""
        ...

    def available(self) -> bool:
        """False while the last attempt to reach Kafka failed."""
        ...

    def http_port(self) -> int | None:
        """The port the process's HTTP server listens on (with :meth:`PushSourceConnector.routes`
        mounted); None before it listens and once it stopped."""
        ...


@dataclass(frozen=True)
class HttpBinding:
    """Where the process's HTTP server listens when a push source decides it, and the
    request limits that come with its routes. ``host_field``/``port_field`` name the config
    fields they come from, for error messages."""

    host: str
    port: int
    #: largest body aiohttp reads for a request (``request.read()``/``post()``)
    client_max_size: int = 1024 * 1024
    #: how long a stop waits for the requests in flight
    shutdown_timeout_s: float = 5.0
    host_field: str = "settings.host"
    port_field: str = "settings.port"


def http_binding_problems(
    config: ConnectorConfig, binding: HttpBinding | None
) -> list[ConfigProblem]:
    """A process has one HTTP server on one port. When the connector binds it
    (``binding``), ``health.port``/``health.host`` may only repeat that binding: two
    different ports would mean two servers, and silently ignoring one would move ``/health``
    and ``/metrics`` away from where a probe or Prometheus looks for them. Like every config
    error, the messages name fields, never their values."""
    if binding is None:
        return []
    given = config.model_fields_set  # field names, whichever alias the file used
    problems = []
    if config.health_port is not None and config.health_port != binding.port:
        problems.append(
            ConfigProblem(
                "health.port",
                "conflict",
                f"this connector serves /health and /metrics on {binding.port_field}, its "
                f"one HTTP port; remove health.port or set it to {binding.port_field}",
            )
        )
    if "health_host" in given and config.health_host != binding.host:
        problems.append(
            ConfigProblem(
                "health.host",
                "conflict",
                f"this connector serves /health and /metrics on {binding.host_field}; remove "
                f"health.host or set it to {binding.host_field}",
            )
        )
    return problems


class PushSourceConnector(Connector):
    """Receives events pushed by agency systems.

    An HTTP push source gives :meth:`routes` and :meth:`http_binding`; the runtime then calls
    ``start()`` (load keys, open pools: nothing listens yet), mounts the routes on the
    process's one HTTP server beside ``/health`` and ``/metrics`` and starts it. On stop the
    runtime's server stops accepting and finishes the requests in flight *before* ``stop()``
    is called, so ``stop()`` only releases what the handlers used.

    A push source serving anything else (no routes) runs it itself: ``start()`` returns once
    it serves, ``stop()`` stops accepting, waits for the requests in flight, then returns.
    The runtime calls :meth:`initialize` before ``start``."""

    kind: ClassVar[ConnectorKind] = "push-source"
    context: PushContext

    @classmethod
    def check_config(cls, config: ConnectorConfig) -> list[ConfigProblem]:
        return [*super().check_config(config), *_check_source_topic(config)]

    @classmethod
    def http_binding(cls, settings: BaseModel) -> HttpBinding | None:
        """Where the process's HTTP server listens, from the connector's validated
        ``settings``; None (the default): at ``health.host``/``health.port`` like any other
        connector. When given, it wins: ``health.port`` may only repeat it
        (:func:`http_binding_problems`). A classmethod so ``hub connector validate`` can check
        it without building the connector."""
        return None

    def routes(self) -> Sequence[web.RouteDef]:
        """Routes to mount on the process's HTTP server (not ``/health`` or ``/metrics``,
        which it answers itself); called once, after ``start()``. Handlers run on the
        server's event loop: hand blocking work (``self.context.publish``) to a thread."""
        return []

    def initialize(self, context: PushContext) -> None:
        self.context = context

    @property
    def publish(self) -> Any:
        """Shorthand for ``self.context.publish``."""
        return self.context.publish
