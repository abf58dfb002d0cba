"""The national-portal sink as an SDK sink connector (``portal-sink``): ``hub connector run``.

The same machinery as :mod:`connectors.portal.sink` (the portal contract and its mapping,
:class:`~connectors.portal.sink.PortalClient`, the circuit breaker and the token bucket), one
attempt per :meth:`PortalConnector.put`; the SDK runtime does the rest, in offset order per
partition, committing only after ``put`` returned or the record was dead-lettered:

* 2xx (a duplicate included: the idempotency key is the status change's ``event_id``):
  delivered;
* 5xx, 408, 401, 429 (waiting its ``Retry-After``), timeouts, connection errors and an open
  circuit: :class:`RetriableError`, retried with the runtime's capped jittered backoff. Use
  ``errors.retry.timeout = -1`` (checked): a portal outage must never dead-letter a status;
* any other 4xx: :class:`PermanentError` ``portal-rejected-<code>`` (the fields the portal
  named, by portal name, in the detail); a record the mapping cannot use: ``unmappable``.
  With ``errors.tolerance = "all"`` both go to ``<prefix>portal.outbox.dlq``.

``topics`` is normally ``portal.outbox`` with ``value.converter = "avro"``. Bodies are never
logged (they carry the applicant's name).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.portal.contract import (
    ContractFileError,
    MappingError,
    PortalContract,
    idempotency_key,
    load_contract,
    to_portal_payload,
)
from connectors.portal.sink import (
    DELIVERIES,
    RETRIES,
    CircuitBreaker,
    PortalClient,
    TokenBucket,
    Verdict,
)
from connectors.sdk.base import SinkConnector, SinkRecord
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import ConfigProblem, PermanentError, RetriableError

__all__ = ["PortalConnector", "PortalConnectorSettings"]

#: longest a put waits on a 429's Retry-After before handing the retry to the runtime
_MAX_THROTTLE_WAIT_S = 30.0


class PortalConnectorSettings(BaseModel):
    """``settings`` of a portal-sink connector. The portal's contract (endpoint, field names,
    token source) comes from ``contract_file`` and ``HUB_PORTAL_*`` as for the standalone
    sink; ``token`` / ``token_env`` here override its token (use ``${env:NAME}``)."""

    model_config = ConfigDict(extra="forbid")

    portal_url: str = Field(pattern=r"^https?://")
    contract_file: Path | None = None
    token: SecretStr | None = None
    token_env: str | None = None
    connect_timeout_s: float = Field(3.0, gt=0)
    request_timeout_s: float = Field(10.0, gt=0)
    rate_limit_rps: float = Field(50.0, gt=0)
    rate_burst: int = Field(10, ge=1)
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(5.0, gt=0)


class PortalConnector(SinkConnector):
    """National portal: each portal.outbox status POSTed with its idempotency key.

    One attempt per ``put``; the runtime retries :class:`RetriableError` and dead-letters
    :class:`PermanentError` (see the module docstring). Needs ``errors.retry.timeout = -1``."""

    Settings: ClassVar[type[BaseModel]] = PortalConnectorSettings
    settings: PortalConnectorSettings

    def __init__(self, config: ConnectorConfig, settings: BaseModel | None = None) -> None:
        super().__init__(config, settings)
        self.contract: PortalContract | None = None
        self.client: PortalClient | None = None
        self.breaker: CircuitBreaker | None = None
        self.bucket: TokenBucket | None = None
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
        self.client = PortalClient(
            s.portal_url,
            self.contract,
            connect_timeout_s=s.connect_timeout_s,
            request_timeout_s=s.request_timeout_s,
        )
        self.breaker = CircuitBreaker(s.breaker_failures, s.breaker_cooldown_s)
        self.bucket = TokenBucket(s.rate_limit_rps, s.rate_burst)

    def stop(self) -> None:
        self._stop.set()
        if self.client is not None:
            self.client.close()
            self.client = None

    def health(self) -> dict[str, Any]:
        breaker = self.breaker
        state = breaker.state.name.lower().replace("_", "-") if breaker else "closed"
        return {"status": "up", "circuit": state}

    def put(self, record: SinkRecord) -> None:
        client, contract, breaker, bucket = self.client, self.contract, self.breaker, self.bucket
        if client is None or contract is None or breaker is None or bucket is None:
            raise RetriableError("put before start")
        if not isinstance(record.value, dict):
            raise PermanentError("not-a-record", "the value is not a decoded record")
        try:
            payload = to_portal_payload(record.value, contract)
            key = idempotency_key(record.value)
        except MappingError as exc:
            raise PermanentError("unmappable", str(exc)) from None
        wait = breaker.wait_s()
        if wait > 0:
            raise RetriableError(f"portal circuit open ({wait:.1f}s left)")
        if not bucket.acquire(self._stop):
            raise RetriableError("stopping")
        attempt = client.post(payload, key)
        if attempt.verdict in (Verdict.ACKNOWLEDGED, Verdict.DUPLICATE):
            breaker.success()
            duplicate = attempt.verdict is Verdict.DUPLICATE
            DELIVERIES.labels("duplicate" if duplicate else "delivered").inc()
            return
        if attempt.verdict is Verdict.REJECTED:
            breaker.success()  # the portal answered: it is up
            detail = f"the portal answered HTTP {attempt.status}"
            if attempt.fields:
                detail += f" about {', '.join(attempt.fields)}"
            raise PermanentError(f"portal-rejected-{attempt.status}", detail)
        RETRIES.inc()
        if attempt.verdict is Verdict.THROTTLED:
            breaker.success()  # up, only busy
            if attempt.retry_after_s:
                self._stop.wait(min(attempt.retry_after_s, _MAX_THROTTLE_WAIT_S))
            raise RetriableError("portal throttled (HTTP 429)")
        breaker.failure()
        raise RetriableError(f"portal: {attempt.status or attempt.error}")
