"""Agency webhooks (``agency-webhook``): every record on ``<prefix>agency.inbox.<agency>``
POSTed to that agency. Run it with ``hub connector run --config`` (example:
``connectors/examples/agency-webhook.toml``).

When the hub transfers a dossier (liên thông) it writes the dossier's ``DossierStatusChanged``
record to ``<prefix>agency.inbox.<agency code>``. This sink subscribes to all of them by pattern
(:data:`INBOX_REGEX`: ``agency.inbox.`` followed by anything but a ``.dlq`` suffix; new agencies
are picked up within ``metadata.max.age.ms``) unless the config names ``topics`` or
``topics.regex`` itself, and POSTs each record, as JSON, to the webhook URL configured for the
agency (:class:`WebhookEndpoint`).

Each request carries:

* ``Idempotency-Key``: the record's ``event_id`` (deterministic per status change), so
  retries and redeliveries are recognisable as such by the receiver;
* ``X-Hub-Timestamp`` (Unix seconds) and ``X-Hub-Signature-256: sha256=<hex>``, the
  HMAC-SHA256 of ``<timestamp>.<body bytes>`` with the agency's secret (:func:`sign`,
  :func:`verify`), so the receiver can check origin and freshness;
* ``X-Hub-Agency``, ``X-Hub-Topic``: routing facts, no personal data.

The delivery guarantees are the SDK runtime's (:mod:`connectors.sdk.sink`): one lane per
partition delivering in offset order, so a dossier's records (same key, same partition) never
overtake each other; offsets committed only after the receiver acknowledged (2xx) or the record
was dead-lettered; 5xx, 408, timeouts and connection errors retried with capped jittered
backoff, for ever (``errors.retry.timeout = -1``, checked); 429 honours ``Retry-After``. A
circuit breaker and a token-bucket rate limit *per agency* (one agency's dead endpoint does not
stop the others), and every other 4xx dead-letters the record to ``<inbox topic>.dlq`` (reason
``webhook-rejected-<code>``), as does a record for an agency without a configured webhook
(``no-webhook``; replay it with ``hub dlq replay`` once configured).

The endpoints come from the ``endpoints`` setting and/or a JSON file (``endpoints_file``)::

    {"000.00.09.H40": {"url": "https://yte.nghean.gov.vn/hub/inbox",
                       "secret_env": "WEBHOOK_SECRET_SYT"}}

Secrets are read from the named variable (or ``secret_file``), never logged. Bodies are never
logged either: they carry the applicant's name.

Metrics: ``hub_webhook_deliveries_total{outcome}``, ``hub_webhook_retries_total``,
``hub_webhook_circuit_state{agency}``, beside the runtime's ``hub_connector_*``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar, Final

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from connectors.portal.contract import MappingError, idempotency_key
from connectors.sdk.base import SinkConnector, SinkRecord
from connectors.sdk.config import ConnectorConfig, regex_literal
from connectors.sdk.errors import ConfigProblem, PermanentError, RetriableError
from connectors.sdk.http import HttpDelivery, HttpSinkSettings, Verdict, admit, settle
from connectors.sdk.limits import CircuitBreaker, TokenBucket

__all__ = [
    "INBOX_REGEX",
    "AgencyWebhookConnector",
    "AgencyWebhookSettings",
    "WebhookEndpoint",
    "inbox_pattern",
    "load_endpoints",
    "sign",
    "to_json",
    "verify",
]

INBOX: Final = "agency.inbox."
#: every agency inbox, none of their ``.dlq``. librdkafka's regex engine has no lookahead, so
#: "not ending in ``.dlq``" is spelled out: the name after ``agency.inbox.`` ends in anything
#: but ``q``, or in a ``q`` not after ``l``, an ``lq`` not after ``d``, or a ``dlq`` not after
#: ``.``. Python's ``re`` reads it the same way.
INBOX_REGEX: Final = r"agency\.inbox\.(.*[^q]|(.*[^l])?q|(.*[^d])?lq|(.*[^.])?dlq)"
SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
TIMESTAMP_HEADER: Final = "X-Hub-Timestamp"

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


def load_endpoints(
    endpoints: Mapping[str, WebhookEndpoint], endpoints_file: Path | None
) -> dict[str, WebhookEndpoint]:
    """``endpoints`` and, overriding them per agency, those of ``endpoints_file``."""
    found = dict(endpoints)
    if endpoints_file is not None:
        try:
            data = json.loads(endpoints_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {endpoints_file}: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{endpoints_file}: expected an object of agencies")
        for agency, entry in data.items():
            try:
                found[str(agency)] = WebhookEndpoint.model_validate(entry)
            except ValidationError as exc:
                fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
                raise ValueError(
                    f"{endpoints_file}: agency {agency}: bad {', '.join(fields)}"
                ) from None
    return found


def inbox_pattern(topic_prefix: str) -> str:
    """The whole subscription regex under ``topic_prefix``, as the runtime anchors it."""
    return f"^{regex_literal(topic_prefix)}({INBOX_REGEX})$"


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


class AgencyWebhookSettings(HttpSinkSettings):
    """``settings`` of an agency-webhook sink connector: the endpoints inline and/or in a
    JSON file (``endpoints_file``, same shape; it wins per agency). The rate limit and the
    circuit breaker apply per agency; an agency's server is smaller than the portal's."""

    endpoints: dict[str, WebhookEndpoint] = Field(default_factory=dict)
    endpoints_file: Path | None = None
    rate_limit_rps: float = Field(20.0, gt=0)
    rate_burst: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _some_endpoint(self) -> AgencyWebhookSettings:
        if not self.endpoints and self.endpoints_file is None:
            raise ValueError("give endpoints or endpoints_file")
        return self


class AgencyWebhookConnector(SinkConnector):
    """Agency webhooks: each agency.inbox.<agency> record POSTed, signed, to the agency.

    Reads every inbox by pattern unless ``topics``/``topics.regex`` say otherwise; the agency
    is the inbox topic's suffix, or for any other topic the record's ``agency_code_handling``.
    One attempt per ``put`` (see the module docstring). Use ``errors.retry.timeout = -1``
    (checked) so that an outage never dead-letters a record, and ``errors.tolerance = all`` so
    that a 4xx does not stop the connector."""

    Settings: ClassVar[type[BaseModel]] = AgencyWebhookSettings
    settings: AgencyWebhookSettings
    default_topics_regex: ClassVar[str | None] = INBOX_REGEX

    def __init__(self, config: ConnectorConfig, settings: BaseModel | None = None) -> None:
        super().__init__(config, settings)
        self.http: HttpDelivery | None = None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._per_agency = threading.Lock()  # lanes of different inboxes ask at once
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
        self.endpoints = load_endpoints(s.endpoints, s.endpoints_file)
        self._stop.clear()
        self.http = s.delivery()

    def stop(self) -> None:
        self._stop.set()
        if self.http is not None:
            self.http.close()
            self.http = None

    def agency_of(self, topic: str, value: Mapping[str, Any]) -> str:
        """The inbox topic's agency; for another topic the record's agency_code_handling."""
        if topic.startswith(self.inbox_prefix):
            return topic[len(self.inbox_prefix) :]
        found = value.get("agency_code_handling")
        return found if isinstance(found, str) else ""

    def _limits(self, agency: str) -> tuple[CircuitBreaker, TokenBucket]:
        s = self.settings
        with self._per_agency:
            if agency not in self._breakers:
                gauge = CIRCUIT_STATE.labels(agency)
                self._breakers[agency] = s.breaker(
                    f"agency {agency}", lambda state: gauge.set(int(state))
                )
                self._buckets[agency] = s.bucket()
            return self._breakers[agency], self._buckets[agency]

    def dead_lettered(self, topic: str, reason: str) -> None:
        DELIVERIES.labels("dead_lettered").inc()

    def put(self, record: SinkRecord) -> None:
        if self.http is None:
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
        breaker, bucket = self._limits(agency)
        admit(breaker, bucket, self._stop)
        body = json.dumps(to_json(record.value), ensure_ascii=False, separators=(",", ":"))
        data = body.encode()
        stamp = str(int(time.time()))
        headers = {TIMESTAMP_HEADER: stamp, "X-Hub-Agency": agency, "X-Hub-Topic": record.topic}
        try:
            secret = endpoint.signing_key()
        except OSError as exc:
            breaker.failure()
            raise RetriableError(
                f"agency {agency}: secret unreadable ({type(exc).__name__})"
            ) from None
        if secret is not None:
            headers[SIGNATURE_HEADER] = sign(secret, stamp, data)
        answer = self.http.post(endpoint.url, data, key, headers)
        if answer.verdict in (Verdict.THROTTLED, Verdict.FAILED):
            RETRIES.inc()
        settle(answer, breaker, rejected="webhook-rejected")
        DELIVERIES.labels("duplicate" if answer.verdict is Verdict.DUPLICATE else "delivered").inc()
