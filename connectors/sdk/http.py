"""HTTP delivery for sink connectors: JSON POSTed with an idempotency key, the answer sorted
into what the runtime should do with the record.

* 2xx: delivered (``DUPLICATE`` when the receiver says it had the key already: an
  ``Idempotent-Replayed: true`` header or a JSON body ``{"result": "duplicate"}``);
* 429: throttled, wait its ``Retry-After``;
* 5xx, 408 (and the codes a connector adds, e.g. 401 for a token being renewed), timeouts and
  connection errors: failed, retry;
* any other 4xx: rejected, the record's fault: dead-letter it.

:func:`settle` turns an :class:`Answer` into the SDK's outcome (return, or raise
:class:`~connectors.sdk.errors.RetriableError` / :class:`~connectors.sdk.errors.PermanentError`)
and keeps the receiver's circuit breaker informed; :func:`admit` asks the breaker and the rate
limit before a request. Bodies are never logged: they may carry personal data.
"""

from __future__ import annotations

import contextlib
import enum
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import requests
from pydantic import BaseModel, ConfigDict, Field

from connectors.sdk.errors import PermanentError, RetriableError
from connectors.sdk.limits import BreakerState, CircuitBreaker, TokenBucket
from connectors.sdk.retry import retry_after_seconds

__all__ = ["Answer", "HttpDelivery", "HttpSinkSettings", "Verdict", "admit", "settle"]

#: 4xx answers that are not the record's fault: retried like 5xx (429 is throttling)
RETRYABLE_4XX: Final = frozenset({408})


class HttpSinkSettings(BaseModel):
    """The knobs every HTTP sink has; a connector's ``Settings`` extends this model (and may
    change a default, e.g. a lower rate for an agency's small server)."""

    model_config = ConfigDict(extra="forbid")

    connect_timeout_s: float = Field(3.0, gt=0)
    request_timeout_s: float = Field(10.0, gt=0)
    #: requests a second to one receiver, and how many may go at once after a quiet spell
    rate_limit_rps: float = Field(50.0, gt=0)
    rate_burst: int = Field(10, ge=1)
    #: consecutive failures that open the receiver's circuit, and how long it stays open
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(5.0, gt=0)

    def delivery(
        self,
        *,
        idempotency_header: str = "Idempotency-Key",
        retryable_4xx: frozenset[int] = RETRYABLE_4XX,
    ) -> HttpDelivery:
        return HttpDelivery(
            connect_timeout_s=self.connect_timeout_s,
            request_timeout_s=self.request_timeout_s,
            idempotency_header=idempotency_header,
            retryable_4xx=retryable_4xx,
        )

    def breaker(self, name: str, on_change: Callable[[BreakerState], None]) -> CircuitBreaker:
        return CircuitBreaker(
            self.breaker_failures, self.breaker_cooldown_s, name=name, on_change=on_change
        )

    def bucket(self) -> TokenBucket:
        return TokenBucket(self.rate_limit_rps, self.rate_burst)


class Verdict(enum.Enum):
    ACKNOWLEDGED = "acknowledged"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"  # a 4xx that is the record's fault: dead-letter it
    THROTTLED = "throttled"  # 429
    FAILED = "failed"  # 5xx, 408, timeout, connection error: retry


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    status: int | None = None  # HTTP status, None when there was no answer
    retry_after_s: float | None = None
    body: Any = None  # the answer's JSON, when it had some
    error: str | None = None  # exception class for failures without an answer

    @property
    def what(self) -> str:
        """``HTTP 503`` or the exception class: for messages and logs."""
        return f"HTTP {self.status}" if self.status is not None else str(self.error)


class HttpDelivery:
    """POSTs with one ``requests.Session`` per thread (a sink's lanes deliver in parallel and
    sessions are not shared across threads)."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 3.0,
        request_timeout_s: float = 10.0,
        idempotency_header: str = "Idempotency-Key",
        retryable_4xx: frozenset[int] = RETRYABLE_4XX,
    ) -> None:
        self.timeout = (connect_timeout_s, request_timeout_s)
        self.idempotency_header = idempotency_header
        self.retryable_4xx = retryable_4xx
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(session)
        return session

    def post(
        self, url: str, body: bytes, key: str, headers: Mapping[str, str] | None = None
    ) -> Answer:
        sent = {
            "Content-Type": "application/json; charset=utf-8",
            self.idempotency_header: key,
            **(headers or {}),
        }
        try:
            resp = self._session().post(url, data=body, headers=sent, timeout=self.timeout)
        except requests.RequestException as exc:
            return Answer(Verdict.FAILED, error=type(exc).__name__)
        status = resp.status_code
        answer: Any = None
        with contextlib.suppress(ValueError):
            answer = resp.json()
        if 200 <= status < 300:
            duplicate = resp.headers.get("Idempotent-Replayed", "").lower() == "true" or (
                isinstance(answer, dict) and answer.get("result") == "duplicate"
            )
            return Answer(Verdict.DUPLICATE if duplicate else Verdict.ACKNOWLEDGED, status)
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
        if status == 429:
            return Answer(Verdict.THROTTLED, status, retry_after, answer)
        if status >= 500 or status in self.retryable_4xx:
            return Answer(Verdict.FAILED, status, retry_after, answer)
        return Answer(Verdict.REJECTED, status, None, answer)

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


def admit(breaker: CircuitBreaker, bucket: TokenBucket, stop: threading.Event) -> None:
    """Before a request: raise :class:`RetriableError` while the circuit is open (waiting its
    cooldown) or when stopping; else take a rate-limit token (waiting for one)."""
    wait = breaker.wait_s()
    if wait > 0:
        raise RetriableError(f"{breaker.name} circuit open", retry_after_s=wait)
    if not bucket.acquire(stop):
        raise RetriableError("stopping")


def settle(
    answer: Answer, breaker: CircuitBreaker, *, rejected: str, detail: str | None = None
) -> Answer:
    """Return an acknowledged answer; raise for the others. ``rejected`` prefixes a
    rejection's dead-letter reason (``<rejected>-<status>``), ``detail`` replaces its text."""
    if answer.verdict in (Verdict.ACKNOWLEDGED, Verdict.DUPLICATE):
        breaker.success()
        return answer
    if answer.verdict is Verdict.REJECTED:
        breaker.success()  # the receiver answered: it is up
        raise PermanentError(
            f"{rejected}-{answer.status}", detail or f"{breaker.name} answered {answer.what}"
        )
    if answer.verdict is Verdict.THROTTLED:
        breaker.success()  # up, only busy
        raise RetriableError(
            f"{breaker.name} throttled (HTTP 429)", retry_after_s=answer.retry_after_s
        )
    breaker.failure()
    raise RetriableError(f"{breaker.name}: {answer.what}", retry_after_s=answer.retry_after_s)
