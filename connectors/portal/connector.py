"""The national-portal sink (``portal-sink``): every status on ``<prefix>portal.outbox``
POSTed to the portal. Run it with ``hub connector run --config`` (example:
``connectors/examples/portal-sink.toml``).

Delivery guarantee: at-least-once to the portal, exactly-once in effect. Each status is sent
with the idempotency key = its ``event_id`` (deterministic per status change, see
``docs/events.md``), so a retry, a redelivery after a crash or a rebalance is recognised by the
portal as a duplicate. The SDK runtime (:mod:`connectors.sdk.sink`) commits an offset only once
the status was acknowledged (2xx, a duplicate included) or dead-lettered, delivers each
partition in offset order on its own lane (a dossier's statuses share its key, hence its
partition, so they never overtake each other) and holds a partition whose status keeps
failing rather than skip it.

One attempt per :meth:`PortalConnector.put` (:mod:`connectors.sdk.http`):

* 2xx: delivered (``duplicate`` when the portal had the key already);
* 5xx, 408, 401 (a token problem is not the record's fault), timeouts, connection errors and
  an open circuit: :class:`RetriableError`, retried with the runtime's capped jittered backoff;
  429 waits the ``Retry-After`` the portal asked for. ``errors.retry.timeout = -1`` is
  required (checked): a portal outage must never dead-letter a status;
* any other 4xx: :class:`PermanentError` ``portal-rejected-<code>`` (the fields the portal
  named, by portal name, in the detail); a record the mapping cannot use: ``unmappable``.
  With ``errors.tolerance = "all"`` both go to ``<prefix>portal.outbox.dlq``.

A circuit breaker shared by all lanes opens after ``breaker_failures`` consecutive failures
and lets one probe through after ``breaker_cooldown_s``; a token bucket caps the request rate
(``rate_limit_rps``, bursts of ``rate_burst``).

Metrics: ``hub_portal_circuit_state`` (0 closed, 1 half-open, 2 open),
``hub_portal_deliveries_total{outcome}`` (delivered, duplicate, dead_lettered),
``hub_portal_retries_total``, ``hub_portal_delivery_latency_seconds`` (status occurred_at to
the portal's acknowledgement), beside the runtime's ``hub_connector_*``.

Personal data: bodies are never logged (they carry the applicant's name); logs name the
dossier code, key and HTTP status only.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final

from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, Field, SecretStr

from connectors.portal.contract import (
    ContractFileError,
    MappingError,
    PortalContract,
    idempotency_key,
    load_contract,
    to_portal_payload,
)
from connectors.sdk.base import SinkConnector, SinkRecord
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import ConfigProblem, PermanentError, RetriableError
from connectors.sdk.http import HttpDelivery, HttpSinkSettings, Verdict, admit, settle
from connectors.sdk.limits import BreakerState, CircuitBreaker, TokenBucket

__all__ = ["PortalConnector", "PortalConnectorSettings"]

CIRCUIT_STATE = Gauge(
    "hub_portal_circuit_state", "Portal circuit breaker: 0 closed, 1 half-open, 2 open."
)
DELIVERIES = Counter(
    "hub_portal_deliveries_total",
    "Statuses finished by the portal sink: delivered, duplicate (the portal had it already) "
    "or dead_lettered.",
    ["outcome"],
)
RETRIES = Counter("hub_portal_retries_total", "Portal requests repeated after a failure.")
LATENCY = Histogram(
    "hub_portal_delivery_latency_seconds",
    "From a status change's occurred_at to the portal's acknowledgement.",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400),
)

#: 4xx answers that are not the record's fault: 408, and 401 (the token is being renewed)
RETRYABLE_4XX: Final = frozenset({401, 408})


class PortalConnectorSettings(HttpSinkSettings):
    """``settings`` of a portal-sink connector. The portal's contract (endpoint, field names,
    token source) comes from ``contract_file`` and ``HUB_PORTAL_*``
    (:mod:`connectors.portal.contract`); ``token`` / ``token_env`` here override its token
    (use ``${env:NAME}``)."""

    portal_url: str = Field(pattern=r"^https?://")
    contract_file: Path | None = None
    token: SecretStr | None = None
    token_env: str | None = None


class PortalConnector(SinkConnector):
    """National portal: each portal.outbox status POSTed with its idempotency key.

    One attempt per ``put``; the runtime retries :class:`RetriableError` and dead-letters
    :class:`PermanentError` (see the module docstring). Needs ``errors.retry.timeout = -1``."""

    Settings: ClassVar[type[BaseModel]] = PortalConnectorSettings
    settings: PortalConnectorSettings

    def __init__(self, config: ConnectorConfig, settings: BaseModel | None = None) -> None:
        super().__init__(config, settings)
        self.contract: PortalContract | None = None
        self.http: HttpDelivery | None = None
        self.breaker: CircuitBreaker | None = None
        self.bucket: TokenBucket | None = None
        self._known_fields: set[str] = set()
        self._url = ""
        self._stop = threading.Event()

    @classmethod
    def check_config(cls, config: ConnectorConfig) -> list[ConfigProblem]:
        problems = super().check_config(config)
        if config.errors_retry_timeout_ms != -1:
            problems.append(
                ConfigProblem(
                    "errors.retry.timeout",
                    "retry_forever",
                    "must be -1: a portal outage must never dead-letter a status",
                )
            )
        return problems

    def _contract(self) -> PortalContract:
        s = self.settings
        try:
            contract = load_contract(s.contract_file)
        except ContractFileError as exc:
            raise RuntimeError(f"connector {self.name}: {exc}") from None
        if s.token is not None or s.token_env is not None:
            auth = contract.auth.model_copy(
                update={"token": s.token, "token_file": None, "token_env": s.token_env}
            )
            contract = contract.model_copy(update={"auth": auth})
        return contract

    def start(self) -> None:
        s = self.settings
        self._stop.clear()
        self.contract = self._contract()
        self._url = s.portal_url.rstrip("/") + self.contract.endpoint_path
        # field names the portal may name in a rejection: only these reach a dead letter
        self._known_fields = set(self.contract.required_fields) | {
            v for v in self.contract.fields.model_dump().values() if isinstance(v, str)
        }
        self.http = s.delivery(
            idempotency_header=self.contract.idempotency_header, retryable_4xx=RETRYABLE_4XX
        )
        self.breaker = s.breaker("portal", lambda state: CIRCUIT_STATE.set(int(state)))
        self.bucket = s.bucket()

    def stop(self) -> None:
        self._stop.set()
        if self.http is not None:
            self.http.close()
            self.http = None

    def health(self) -> dict[str, Any]:
        state = self.breaker.state if self.breaker is not None else BreakerState.CLOSED
        return {"status": "up", "circuit": state.name.lower().replace("_", "-")}

    def dead_lettered(self, topic: str, reason: str) -> None:
        DELIVERIES.labels("dead_lettered").inc()

    def put(self, record: SinkRecord) -> None:
        http, contract, breaker, bucket = self.http, self.contract, self.breaker, self.bucket
        if http is None or contract is None or breaker is None or bucket is None:
            raise RetriableError("put before start")
        if not isinstance(record.value, dict):
            raise PermanentError("not-a-record", "the value is not a decoded record")
        try:
            payload = to_portal_payload(record.value, contract)
            key = idempotency_key(record.value)
        except MappingError as exc:
            raise PermanentError("unmappable", str(exc)) from None
        admit(breaker, bucket, self._stop)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        answer = http.post(self._url, body, key, contract.auth.header())
        if answer.verdict in (Verdict.THROTTLED, Verdict.FAILED):
            RETRIES.inc()
        detail = None
        if answer.verdict is Verdict.REJECTED:
            named = answer.body.get("fields") if isinstance(answer.body, dict) else None
            fields = [f for f in (named if isinstance(named, list) else [])
                      if f in self._known_fields]  # fmt: skip
            detail = f"the portal answered HTTP {answer.status}"
            if fields:
                detail += f" about {', '.join(fields)}"
        settle(answer, breaker, rejected="portal-rejected", detail=detail)
        DELIVERIES.labels("duplicate" if answer.verdict is Verdict.DUPLICATE else "delivered").inc()
        occurred = record.value.get("occurred_at")
        if isinstance(occurred, datetime):
            LATENCY.observe(max(0.0, (datetime.now(UTC) - occurred).total_seconds()))
