"""Agency webhooks: every record on ``<prefix>agency.inbox.<agency>`` POSTed to that agency.

When the hub transfers a dossier (liên thông) it writes the dossier's ``DossierStatusChanged``
record to ``<prefix>agency.inbox.<agency code>``. This sink subscribes to all of them by pattern
(``^<prefix>agency\\.inbox\\.`` followed by anything but a ``.dlq`` suffix; new agencies are
picked up within ``metadata_max_age_s``) and POSTs each record, as JSON, to the webhook URL
configured for the agency (:class:`WebhookEndpoint`).

Each request carries:

* ``Idempotency-Key``: the record's ``event_id`` (deterministic per status change), so
  retries and redeliveries are recognisable as such by the receiver;
* ``X-Hub-Timestamp`` (Unix seconds) and ``X-Hub-Signature-256: sha256=<hex>``, the
  HMAC-SHA256 of ``<timestamp>.<body bytes>`` with the agency's secret (:func:`sign`,
  :func:`verify`), so the receiver can check origin and freshness;
* ``X-Hub-Agency``, ``X-Hub-Topic``: routing facts, no personal data.

The guarantees are the national portal sink's (:mod:`connectors.portal.sink`), whose machinery
this class reuses by subclassing :class:`~connectors.portal.sink.PortalSink`: one lane
(thread) per partition delivering in offset order, so a dossier's records (same key, same
partition) never overtake each other; offsets committed only after the receiver acknowledged
(2xx) or the record was dead-lettered; 5xx, 408, timeouts and connection errors retried with
capped jittered backoff (:class:`~connectors.portal.sink.Deliverer`), the partition paused
after ``retry_timeout_s`` and retried again (never skipped); 429 honours ``Retry-After``.
What differs: a circuit breaker and a token-bucket rate limit *per agency* (one agency's dead
endpoint does not stop the others), and every other 4xx dead-letters the record to
``<inbox topic>.dlq`` (reason ``webhook-rejected-<code>``, processor ``agency-webhook``), as
does a record for an agency without a configured webhook (``no-webhook``; replay it with
``hub dlq replay`` once configured).

Configuration: ``HUB_WEBHOOK_SINK_*`` variables (the portal sink's retry/rate/breaker knobs,
same names) and the endpoints, from ``HUB_WEBHOOK_SINK_ENDPOINTS`` (JSON) or a JSON file
(``--endpoints``)::

    {"000.00.09.H40": {"url": "https://yte.nghean.gov.vn/hub/inbox",
                       "secret_env": "WEBHOOK_SECRET_SYT"}}

Secrets are read from the named variable (or ``secret_file``), never logged. Bodies are never
logged either: they carry the applicant's name.

Metrics: ``hub_webhook_deliveries_total{outcome}``, ``hub_webhook_retries_total``,
``hub_webhook_circuit_state{agency}``. (The inherited poll loop also sets the portal sink's
``hub_portal_paused_partitions`` gauge; run the two sinks as separate processes.)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, cast

import requests
from kafka.errors import KafkaError
from prometheus_client import Counter, Gauge, start_http_server
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import SettingsConfigDict

from connectors.portal.contract import MappingError, idempotency_key
from connectors.portal.sink import (
    Attempt,
    CircuitBreaker,
    Deliverer,
    Lane,
    PortalClient,
    PortalSink,
    RebalanceListener,
    SinkSettings,
    TokenBucket,
    Totals,
    Verdict,
    retry_after_seconds,
)
from connectors.sdk.base import SinkConnector, SinkRecord
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import ConfigProblem, PermanentError, RetriableError
from hub.consumer_group import ConsumerError, Partition, manual_commit_consumer
from hub.contract.errors import ContractError
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from hub.dlq import (
    DeadLetterError,
    DeadLetterPublisher,
    dlq_topic,
)
from hub.settings import HubSettings
from hub.topic_admin import TopicCreator

__all__ = [
    "PROCESSOR",
    "AgencyWebhookConnector",
    "AgencyWebhookSettings",
    "WebhookClient",
    "WebhookEndpoint",
    "WebhookSettings",
    "WebhookSink",
    "inbox_pattern",
    "load_endpoints",
    "main",
    "sign",
    "to_json",
    "verify",
]

log = logging.getLogger("connectors.webhook")

PROCESSOR: Final = "agency-webhook"
INBOX: Final = "agency.inbox."
SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
TIMESTAMP_HEADER: Final = "X-Hub-Timestamp"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
#: 4xx answers that are not the record's fault: retried like 5xx (429 waits Retry-After)
RETRYABLE_4XX: Final = frozenset({408})
#: characters a topic prefix must escape in the subscription regex (names use [A-Za-z0-9._-])
_REGEX_SPECIAL: Final = frozenset(".^$*+?()[]{}|\\")

CIRCUIT_STATE = Gauge(
    "hub_webhook_circuit_state",
    "Agency webhook circuit breaker per agency: 0 closed, 1 half-open, 2 open.",
    ["agency"],
)
DELIVERIES = Counter(
    "hub_webhook_deliveries_total",
    "Inbox records finished by the webhook sink: delivered, duplicate or dead_lettered.",
    ["outcome"],
)
RETRIES = Counter("hub_webhook_retries_total", "Webhook requests repeated after a failure.")


class WebhookEndpoint(BaseModel):
    """One agency's webhook: its URL and where the signing secret comes from (``secret``
    itself, else ``secret_file``, else the variable ``secret_env``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    secret: SecretStr | None = None
    secret_file: Path | None = None
    secret_env: str | None = None

    def signing_key(self) -> bytes | None:
        if self.secret is not None and self.secret.get_secret_value():
            return self.secret.get_secret_value().encode()
        if self.secret_file is not None:
            text = self.secret_file.read_text(encoding="utf-8").strip()
            return text.encode() if text else None
        if self.secret_env:
            value = os.environ.get(self.secret_env, "")
            return value.encode() if value else None
        return None


class WebhookSettings(SinkSettings):
    """``HUB_WEBHOOK_SINK_*`` variables; Kafka, registry and prefix come from HubSettings.
    The retry, rate and breaker knobs mean what they mean for the portal sink, except that
    the rate limit and the breaker apply per agency."""

    model_config = SettingsConfigDict(env_prefix="HUB_WEBHOOK_SINK_", extra="ignore")

    group_id: str | None = None  # default <prefix>agency-webhook
    endpoints: dict[str, WebhookEndpoint] = Field(default_factory=dict)
    endpoints_file: Path | None = None
    #: how soon a new agency.inbox.* topic is noticed
    metadata_max_age_s: float = Field(30.0, gt=0)
    #: receivers should refuse signatures older than this (informative; sent nowhere)
    signature_tolerance_s: int = Field(300, gt=0)


def load_endpoints(settings: WebhookSettings) -> dict[str, WebhookEndpoint]:
    """The endpoints from the settings and, overriding them per agency, the file."""
    found = dict(settings.endpoints)
    if settings.endpoints_file is not None:
        try:
            data = json.loads(settings.endpoints_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {settings.endpoints_file}: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{settings.endpoints_file}: expected an object of agencies")
        for agency, entry in data.items():
            try:
                found[str(agency)] = WebhookEndpoint.model_validate(entry)
            except ValidationError as exc:
                fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
                raise ValueError(
                    f"{settings.endpoints_file}: agency {agency}: bad {', '.join(fields)}"
                ) from None
    return found


def inbox_pattern(topic_prefix: str) -> str:
    """The subscription regex: every agency inbox under the prefix, none of their .dlq.

    librdkafka's regex engine has no lookahead, so "not ending in ``.dlq``" is spelled out:
    the name after ``agency.inbox.`` ends in anything but ``q``, or in a ``q`` not after
    ``l``, an ``lq`` not after ``d``, or a ``dlq`` not after ``.``. Python's ``re`` reads it
    the same way."""
    prefix = "".join(f"\\{c}" if c in _REGEX_SPECIAL else c for c in topic_prefix)
    return rf"^{prefix}agency\.inbox\.(.*[^q]|(.*[^l])?q|(.*[^d])?lq|(.*[^.])?dlq)$"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``<timestamp>.<body>``)."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: float | None = 300,
    now: float | None = None,
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is fresh."""
    if tolerance_s is not None:
        try:
            age = abs((time.time() if now is None else now) - int(timestamp))
        except ValueError:
            return False
        if age > tolerance_s:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def to_json(value: Any) -> Any:
    """A decoded Avro record as JSON-able data: times in ISO-8601, dates ``YYYY-MM-DD``, UUIDs
    as text, bytes as base64, a named union branch ``(name, fields)`` as its fields."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return to_json(value[1])
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


class WebhookClient(PortalClient):
    """One HTTP session (one per lane); :meth:`bind` chooses the agency before each record.

    A :class:`PortalClient` only in shape (what :class:`Deliverer` drives): it signs instead
    of carrying a portal token and has no portal contract."""

    def __init__(self, *, connect_timeout_s: float = 3.0, request_timeout_s: float = 10.0) -> None:
        self.timeout = (connect_timeout_s, request_timeout_s)
        self._session = requests.Session()
        self.agency = ""
        self.topic = ""
        self.endpoint: WebhookEndpoint | None = None
        self.url = ""

    def bind(self, agency: str, topic: str, endpoint: WebhookEndpoint) -> None:
        self.agency, self.topic, self.endpoint, self.url = agency, topic, endpoint, endpoint.url

    def post(self, payload: dict[str, Any], key: str) -> Attempt:
        if self.endpoint is None:
            raise RuntimeError("WebhookClient.post before bind")
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            IDEMPOTENCY_HEADER: key,
            TIMESTAMP_HEADER: stamp,
            "X-Hub-Agency": self.agency,
            "X-Hub-Topic": self.topic,
        }
        try:
            secret = self.endpoint.signing_key()
        except OSError as exc:
            return Attempt(Verdict.FAILED, error=f"secret unreadable: {type(exc).__name__}")
        if secret is not None:
            headers[SIGNATURE_HEADER] = sign(secret, stamp, body)
        try:
            resp = self._session.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            return Attempt(Verdict.FAILED, error=type(exc).__name__)
        status = resp.status_code
        if 200 <= status < 300:
            replayed = resp.headers.get("Idempotent-Replayed", "").lower() == "true"
            return Attempt(Verdict.DUPLICATE if replayed else Verdict.ACKNOWLEDGED, status)
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
        if status == 429:
            return Attempt(Verdict.THROTTLED, status, retry_after)
        if status >= 500 or status in RETRYABLE_4XX:
            return Attempt(Verdict.FAILED, status, retry_after)
        return Attempt(Verdict.REJECTED, status)


class _WebhookRejectedError(Exception):
    """An agency refused a record with a 4xx that retrying cannot fix."""


class WebhookSink(PortalSink):
    """Consumes every agency inbox and delivers to the agencies' webhooks (see the module
    docstring). Built on :class:`PortalSink`'s lanes, commits and rebalance handling."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        bootstrap: str,
        registry_url: str,
        topic_prefix: str = "",
        endpoints: Mapping[str, WebhookEndpoint] | None = None,
        partitions: int | None = None,
        replication_factor: int = 1,
        rng: random.Random | None = None,
    ) -> None:
        # PortalSink.__init__ is not called: it binds the portal contract and topic.
        self.settings = settings
        self.webhook_settings = settings
        self.endpoints = dict(endpoints) if endpoints is not None else load_endpoints(settings)
        self.topic_prefix = topic_prefix
        self.inbox_prefix = f"{topic_prefix}{INBOX}"
        self.pattern = inbox_pattern(topic_prefix)
        self.topic = self.pattern
        self.group_id = settings.group_id or f"{topic_prefix}{PROCESSOR}"
        self.rng = rng or random.Random()
        self.breaker = CircuitBreaker(
            settings.breaker_failures, settings.breaker_cooldown_s, gauge=None
        )  # fmt: skip  (unused: breakers are per agency)
        self.bucket = TokenBucket(settings.rate_limit_rps, settings.rate_burst)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._per_agency_lock = threading.Lock()
        self.totals = Totals()
        self._totals_lock = threading.Lock()
        self._lanes: dict[Partition, Lane] = {}
        self._last_commit = 0.0
        self._topics = (
            TopicCreator(bootstrap, partitions, replication_factor) if partitions else None
        )
        self.registry = SchemaRegistryClient(registry_url)
        self.decoder = AvroDeserializer(self.registry)
        self.dead_letters = DeadLetterPublisher(bootstrap, client_id=PROCESSOR)
        try:
            self.consumer = manual_commit_consumer(
                bootstrap, self.group_id, PROCESSOR,
                metadata_refresh_ms=int(settings.metadata_max_age_s * 1000),
            )  # fmt: skip
        except Exception:
            self.dead_letters.close()
            raise
        self.consumer.subscribe(pattern=self.pattern, listener=RebalanceListener(self))

    # --- per agency -------------------------------------------------------------------------

    def agency_of(self, topic: str) -> str:
        return topic[len(self.inbox_prefix) :] if topic.startswith(self.inbox_prefix) else ""

    def breaker_for(self, agency: str) -> CircuitBreaker:
        with self._per_agency_lock:
            found = self._breakers.get(agency)
            if found is None:
                s = self.settings
                found = self._breakers[agency] = CircuitBreaker(
                    s.breaker_failures, s.breaker_cooldown_s, gauge=CIRCUIT_STATE.labels(agency)
                )
            return found

    def bucket_for(self, agency: str) -> TokenBucket:
        with self._per_agency_lock:
            found = self._buckets.get(agency)
            if found is None:
                s = self.settings
                found = self._buckets[agency] = TokenBucket(s.rate_limit_rps, s.rate_burst)
            return found

    def new_deliverer(self) -> Deliverer:
        s = self.settings
        client = WebhookClient(
            connect_timeout_s=s.connect_timeout_s, request_timeout_s=s.request_timeout_s
        )
        return Deliverer(
            client, s, self.breaker, self.bucket, random.Random(self.rng.random()), RETRIES
        )

    # --- one record (in a lane's thread) ------------------------------------------------------

    def handle(self, record: Any, lane: Lane) -> bool:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        agency = self.agency_of(record.topic)
        if record.value is None:
            return self._dead(record, lane, "empty-value", "record has no value", None)
        decoded = self._decode(record, lane)
        if decoded is None:
            return False
        if isinstance(decoded, ContractError):
            return self._dead(record, lane, decoded.reason, str(decoded), None, decoded)
        endpoint = self.endpoints.get(agency)
        if endpoint is None:
            return self._dead(
                record, lane, "no-webhook", f"no webhook configured for agency {agency}", decoded
            )
        try:
            key = idempotency_key(decoded)
        except MappingError as exc:
            return self._dead(record, lane, "unmappable", str(exc), decoded, exc)
        client = cast(WebhookClient, lane.deliverer.client)
        client.bind(agency, record.topic, endpoint)
        deliverer = Deliverer(
            client, self.settings, self.breaker_for(agency), self.bucket_for(agency),
            lane.deliverer.rng, RETRIES,
        )  # fmt: skip
        label = f"{decoded.get('dossier_code')} key={key} ({where})"
        outcome = deliverer.deliver(to_json(decoded), key, lane.stop, lane._set_stuck, label)
        if outcome is None:
            return False
        if outcome.verdict is Verdict.REJECTED:
            return self._dead(
                record, lane, f"webhook-rejected-{outcome.status}",
                f"agency {agency} answered HTTP {outcome.status}", decoded,
                _WebhookRejectedError(f"HTTP {outcome.status}"),
            )  # fmt: skip
        self.count_outcome("duplicate" if outcome.verdict is Verdict.DUPLICATE else "delivered")
        log.debug("delivered %s: HTTP %s after %d attempt(s)", label, outcome.status,
                  outcome.attempts)  # fmt: skip
        return True

    # --- the portal sink's hooks -------------------------------------------------------------

    processor = PROCESSOR
    deliveries = DELIVERIES

    def dead_letter_agency(self, record: Any, decoded: dict[str, Any] | None) -> str | None:
        """The agency whose inbox the record was in."""
        return self.agency_of(record.topic) or None

    def prepare_dead_letter_topic(self, source_topic: str) -> None:
        """Each inbox has its own ``.dlq``, created on first use."""
        if self._topics is not None:
            self._topics.ensure([dlq_topic(source_topic)])

    def committed(self) -> dict[int, int | None]:
        """Committed offsets of this group per assigned partition (checks and tests)."""
        return {tp.partition: self.consumer.committed(tp) for tp in self.consumer.assignment()}

    def committed_by_topic(self) -> dict[tuple[str, int], int | None]:
        return {(tp.topic, tp.partition): self.consumer.committed(tp)
                for tp in self.consumer.assignment()}  # fmt: skip


# --- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    hub = HubSettings()
    s = WebhookSettings()
    parser = argparse.ArgumentParser(
        prog="python -m connectors.webhook",
        description="Deliver every record on <prefix>agency.inbox.<agency> to the agency's "
        "webhook: signed POST with Idempotency-Key = event_id, in order per dossier, retried "
        "with capped jittered backoff, rate-limited and behind a circuit breaker per agency; "
        "4xx rejections go to <inbox topic>.dlq.",
    )
    parser.add_argument("--bootstrap-server", default=hub.kafka_bootstrap_servers)
    parser.add_argument("--registry-url", default=hub.schema_registry_url)
    parser.add_argument("--topic-prefix", default=hub.topic_prefix)
    parser.add_argument(
        "--endpoints",
        type=Path,
        default=s.endpoints_file,
        help="JSON file of agency code -> {url, secret_env | secret_file}",
    )
    parser.add_argument("--group-id", default=s.group_id)
    parser.add_argument("--metrics-port", type=int, default=s.metrics_port)
    parser.add_argument("--partitions", type=int, default=hub.partitions,
                        help="partitions of .dlq topics the sink creates")  # fmt: skip
    parser.add_argument("-l", "--log-level", default="info")
    return parser


def main(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = WebhookSettings().model_copy(
        update={"endpoints_file": args.endpoints, "group_id": args.group_id,
                "metrics_port": args.metrics_port}
    )  # fmt: skip
    try:
        sink = WebhookSink(
            settings, bootstrap=args.bootstrap_server, registry_url=args.registry_url,
            topic_prefix=args.topic_prefix, partitions=args.partitions,
        )  # fmt: skip
    except (KafkaError, ConsumerError, DeadLetterError, ValueError) as exc:
        print(f"agency-webhook: cannot start: {exc}", file=sys.stderr)
        return 1
    if settings.metrics_port is not None:
        start_http_server(settings.metrics_port)
    log.info("agency webhooks: %s (%d agencies configured)", sink.pattern, len(sink.endpoints))
    stopping = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
    try:
        sink.run(stopping)
    except (KafkaError, ConsumerError, RuntimeError) as exc:
        print(f"agency-webhook: stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(KafkaError, ConsumerError):
            sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --- as an SDK connector ------------------------------------------------------------------------


class AgencyWebhookSettings(BaseModel):
    """``settings`` of an agency-webhook sink connector: the endpoints inline and/or in a
    JSON file (``endpoints_file``, same shape; it wins per agency)."""

    model_config = ConfigDict(extra="forbid")

    endpoints: dict[str, WebhookEndpoint] = Field(default_factory=dict)
    endpoints_file: Path | None = None
    connect_timeout_s: float = Field(3.0, gt=0)
    request_timeout_s: float = Field(10.0, gt=0)
    rate_limit_rps: float = Field(20.0, gt=0)
    rate_burst: int = Field(5, ge=1)
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _some_endpoint(self) -> AgencyWebhookSettings:
        if not self.endpoints and self.endpoints_file is None:
            raise ValueError("give endpoints or endpoints_file")
        return self


class AgencyWebhookConnector(SinkConnector):
    """Agency webhooks: each agency.inbox.<agency> record POSTed, signed, to the agency.

    ``topics`` lists the inboxes to deliver (``agency.inbox.<code>``; the SDK runtime has no
    pattern subscription, the standalone :class:`WebhookSink` has); the agency is the inbox
    topic's suffix, or for any other topic the record's ``agency_code_handling``. One attempt
    per ``put``:
    the runtime retries :class:`RetriableError` (5xx, 408, 429, timeouts, an open circuit)
    with its capped jittered backoff, in offset order, and dead-letters
    :class:`PermanentError` (other 4xx: ``webhook-rejected-<code>``; ``no-webhook``). Use
    ``errors.retry.timeout = -1`` (checked) so that an outage never dead-letters a record, and
    ``errors.tolerance = all`` so that a 4xx does not stop the connector."""

    Settings: ClassVar[type[BaseModel]] = AgencyWebhookSettings
    settings: AgencyWebhookSettings

    def __init__(self, config: ConnectorConfig, settings: BaseModel | None = None) -> None:
        super().__init__(config, settings)
        self.client: WebhookClient | None = None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._stop = threading.Event()
        self.inbox_prefix = config.full(INBOX)
        self.endpoints: dict[str, WebhookEndpoint] = {}

    @classmethod
    def check_config(cls, config: ConnectorConfig) -> list[ConfigProblem]:
        problems = super().check_config(config)
        if config.errors_retry_timeout_ms != -1:
            problems.append(
                ConfigProblem(
                    "errors.retry.timeout", "retry_forever",
                    "must be -1: a receiver's outage must never dead-letter a record",
                )
            )  # fmt: skip
        return problems

    def start(self) -> None:
        s = self.settings
        self.endpoints = load_endpoints(
            WebhookSettings(endpoints=s.endpoints, endpoints_file=s.endpoints_file)
        )
        self._stop.clear()
        self.client = WebhookClient(
            connect_timeout_s=s.connect_timeout_s, request_timeout_s=s.request_timeout_s
        )

    def stop(self) -> None:
        self._stop.set()
        if self.client is not None:
            self.client.close()
            self.client = None

    def agency_of(self, topic: str, value: Mapping[str, Any]) -> str:
        """The inbox topic's agency; for another topic the record's agency_code_handling."""
        if topic.startswith(self.inbox_prefix):
            return topic[len(self.inbox_prefix) :]
        found = value.get("agency_code_handling")
        return found if isinstance(found, str) else ""

    def _breaker(self, agency: str) -> CircuitBreaker:
        if agency not in self._breakers:
            s = self.settings
            self._breakers[agency] = CircuitBreaker(
                s.breaker_failures, s.breaker_cooldown_s, gauge=CIRCUIT_STATE.labels(agency)
            )
        return self._breakers[agency]

    def _bucket(self, agency: str) -> TokenBucket:
        if agency not in self._buckets:
            self._buckets[agency] = TokenBucket(
                self.settings.rate_limit_rps, self.settings.rate_burst
            )
        return self._buckets[agency]

    def put(self, record: SinkRecord) -> None:
        if self.client is None:
            raise RetriableError("put before start")
        if not isinstance(record.value, dict):
            raise PermanentError("not-a-record", "the value is not a decoded record")
        agency = self.agency_of(record.topic, record.value)
        endpoint = self.endpoints.get(agency)
        if endpoint is None:
            raise PermanentError("no-webhook", f"no webhook configured for agency {agency}")
        try:
            key = idempotency_key(record.value)
        except MappingError as exc:
            raise PermanentError("unmappable", str(exc)) from None
        breaker = self._breaker(agency)
        wait = breaker.wait_s()
        if wait > 0:
            raise RetriableError(f"circuit open for agency {agency} ({wait:.1f}s left)")
        if not self._bucket(agency).acquire(self._stop):
            raise RetriableError("stopping")
        self.client.bind(agency, record.topic, endpoint)
        attempt = self.client.post(to_json(record.value), key)
        if attempt.verdict in (Verdict.ACKNOWLEDGED, Verdict.DUPLICATE):
            breaker.success()
            DELIVERIES.labels(
                "duplicate" if attempt.verdict is Verdict.DUPLICATE else "delivered"
            ).inc()
            return
        if attempt.verdict is Verdict.REJECTED:
            breaker.success()  # the agency answered: it is up
            raise PermanentError(
                f"webhook-rejected-{attempt.status}",
                f"agency {agency} answered HTTP {attempt.status}",
            )
        if attempt.verdict is Verdict.THROTTLED:
            breaker.success()
            if attempt.retry_after_s:
                self._stop.wait(min(attempt.retry_after_s, 30.0))
            raise RetriableError(f"agency {agency} throttled (HTTP 429)")
        breaker.failure()
        RETRIES.inc()
        raise RetriableError(f"agency {agency}: {attempt.status or attempt.error}")
