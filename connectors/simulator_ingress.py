"""The simulator's agencies as real agency systems: every event POSTed to the HTTP ingress.

:class:`IngressPublisher` implements :class:`connectors.simulator.Publisher`. Each event is
sent as the JSON the agency's system would send, to ``/v1/dossier-events`` or
``/v1/feedback-events``, with the credentials of the agency named in its ``agency_code``:
that is the agency holding the dossier when the event happens, so after a transfer
(liên thông) the receiving agency writes the later events, as the ingress's agency scope
(:mod:`connectors.ingress.scope`) demands.

Answers:

* 202: acknowledged (Kafka has the event);
* 429: the ingress is saturated; wait ``Retry-After`` and send again;
* 503 (also 502/504, a refused or dropped connection): retry with capped exponential backoff;
  retrying is safe, the hub drops a repeated ``event_id``;
* any other status: rejected. The rule and field problems are kept and the event is counted
  as a send error in the simulator's report, never dropped silently. A dossier whose event
  was rejected or given up keeps going: the ingress judges each event, and the hub's
  dead-letter topic shows the consequences, as it would for a real agency.

Order: a dossier's events are sent strictly one after the other (the next only once the
previous was answered), on one of ``workers`` lanes chosen by the dossier code; different
dossiers go in parallel on different lanes. A dossier's feedback follows its own events on the
same lane, so it is sent only once they were acknowledged.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from connectors.ingress.credentials import sign
from connectors.ingress.scope import AgencyScope
from connectors.sdk.runtime import validate_event
from hub.access.keys import CredentialEntry, parse_credentials
from hub.contract.inbound import FieldProblem, InboundDossierEvent, InboundFeedbackEvent
from hub.reference import AgencyDirectory

__all__ = ["IngressPublisher", "IngressRejectedError", "SignedCredentials", "load_signing"]

Event = InboundDossierEvent | InboundFeedbackEvent
_RETRYABLE = frozenset({502, 503, 504})


class IngressRejectedError(Exception):
    """The ingress refused an event (or it could not be delivered in time); the message says
    which event, the status, the rule and the field problems."""

    def __init__(self, event: Event, status: int, detail: str) -> None:
        self.event_id = str(event.event_id)
        self.dossier_code = event.dossier_code
        self.status = status
        self.detail = detail
        super().__init__(f"{event.dossier_code} {event.event_type}: {status} {detail}")


class SignedCredentials:
    """The credentials the simulator presents: per agency, one entry usable by a client (an
    ``api_key`` or ``hmac_secret`` in clear; a stored SHA-256 cannot be presented)."""

    def __init__(self, entries: list[CredentialEntry], scope: AgencyScope | None = None) -> None:
        self._by_agency: dict[str, CredentialEntry] = {}
        for entry in entries:
            if entry.api_key is not None or entry.hmac_secret is not None:
                self._by_agency.setdefault(entry.agency_code, entry)
        self._scope = scope
        self._resolved: dict[str, CredentialEntry | None] = {}

    @property
    def agencies(self) -> set[str]:
        return set(self._by_agency)

    def for_agency(self, agency_code: str) -> CredentialEntry | None:
        """The agency's own credential, else one of an agency the ingress lets write for it
        (its predecessor or successor in a merger), else None."""
        if agency_code in self._resolved:
            return self._resolved[agency_code]
        found = self._by_agency.get(agency_code)
        if found is None and self._scope is not None:
            found = next(
                (e for code, e in sorted(self._by_agency.items())
                 if self._scope.may_write(code, agency_code)),
                None,
            )  # fmt: skip
        self._resolved[agency_code] = found
        return found

    def headers(self, entry: CredentialEntry, body: bytes) -> dict[str, str]:
        if entry.api_key is not None:
            return {"X-Api-Key": entry.api_key.get_secret_value()}
        assert entry.hmac_secret is not None
        stamp = str(int(time.time()))
        return {
            "X-Key-Id": entry.key_id,
            "X-Timestamp": stamp,
            "X-Signature": sign(entry.hmac_secret.get_secret_value(), stamp, body),
        }


def load_signing(path: Path, directory: AgencyDirectory | None = None) -> SignedCredentials:
    """Read an ingress credentials file (the ingress's own format); ValueError if it holds no
    credential a client can present."""
    entries = parse_credentials(path.read_text(encoding="utf-8"), str(path))
    found = SignedCredentials(entries, AgencyScope(directory) if directory is not None else None)
    if not found.agencies:
        raise ValueError(
            f"{path}: no api_key or hmac_secret in clear (api_key_sha256 cannot be presented); "
            "make one with: python -m connectors.ingress.credentials generate --out FILE"
        )
    return found


class _Delivery:
    """What ``send_async`` returns: like Kafka's future, ``add_errback`` learns of a failure
    (also one that happened before it was registered)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errbacks: list[Callable[[BaseException], Any]] = []
        self._error: BaseException | None = None
        self._done = False

    def add_errback(self, errback: Callable[[BaseException], Any]) -> _Delivery:
        with self._lock:
            if not self._done:
                self._errbacks.append(errback)
                return self
        if self._error is not None:
            errback(self._error)
        return self

    def _finish(self, error: BaseException | None) -> None:
        with self._lock:
            self._done, self._error = True, error
            errbacks, self._errbacks = self._errbacks, []
        if error is not None:
            for errback in errbacks:
                errback(error)


@dataclass
class IngressStats:
    """What the ingress answered; ``acknowledged`` lists event ids in the order of the 202s."""

    acknowledged: list[str] = field(default_factory=list)
    key_ids: dict[str, str] = field(default_factory=dict)  # event id -> key id presented
    statuses: Counter[int] = field(default_factory=Counter)  # every answer, retries included
    throttled: int = 0  # 429 answers waited out
    retried: int = 0  # 5xx answers and connection failures retried
    rejected: list[IngressRejectedError] = field(default_factory=list)


class IngressPublisher:
    """Sends the simulator's events to the HTTP ingress at ``url`` (see the module doc)."""

    #: each dossier's events are sent in order, each once the previous one was acknowledged
    #: (see :class:`connectors.simulator.Publisher`)
    acknowledges_in_order = True

    def __init__(
        self,
        url: str,
        credentials: SignedCredentials,
        *,
        procedure_effective_from: Callable[[str], date | None] | None = None,
        workers: int = 8,
        timeout_s: float = 30.0,
        backoff_s: float = 0.25,
        max_backoff_s: float = 10.0,
        give_up_after_s: float = 120.0,
        queue_size: int = 256,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.url = url.rstrip("/")
        self._parsed = parsed
        self.credentials = credentials
        self._lookup = procedure_effective_from
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.give_up_after_s = give_up_after_s
        self._sleep = sleep
        self.stats = IngressStats()
        self._stats_lock = threading.Lock()
        # the agency's JSON as the simulator made it, by event id: sent as it is, like an
        # agency system would, rather than the validated model dumped again
        self._raw: dict[str, dict[str, Any]] = {}
        self._closed = False
        self._queues: list[queue.Queue[tuple[Event, _Delivery] | None]] = [
            queue.Queue(queue_size) for _ in range(workers)
        ]
        self._threads = [
            threading.Thread(target=self._lane, args=(q,), name=f"sim-ingress-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        for thread in self._threads:
            thread.start()

    # --- the simulator's Publisher protocol -------------------------------------------------
    def validate(self, data: Any, *, now: datetime | None = None) -> Event | list[FieldProblem]:
        result = validate_event(data, procedure_effective_from=self._lookup, now=now)
        if not isinstance(result, list) and isinstance(data, dict):
            self._raw[str(result.event_id)] = data
        return result

    def send_async(self, event: Event) -> _Delivery:
        if self._closed:
            raise RuntimeError("the ingress publisher is closed")
        delivery = _Delivery()
        # one lane per dossier (a stable hash, not Python's salted one): its events in order
        lane = zlib.crc32(event.dossier_code.encode()) % len(self._queues)
        self._queues[lane].put((event, delivery))  # blocks when the lane is full: back pressure
        return delivery

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every event handed over was answered or given up. Each event's retries
        are bounded by ``give_up_after_s``, so this always returns; ``timeout_s`` is kept for
        the protocol's sake (Kafka's flush raises on it, here a slow event is a send error)."""
        for q in self._queues:
            q.join()

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()

    # --- one lane ---------------------------------------------------------------------------
    def _lane(self, lane: queue.Queue[tuple[Event, _Delivery] | None]) -> None:
        connection: http.client.HTTPConnection | None = None
        while True:
            item = lane.get()
            try:
                if item is None:
                    if connection is not None:
                        connection.close()
                    return
                event, delivery = item
                try:
                    connection, error = self._deliver(connection, event)
                except Exception as exc:  # a bug must not hang flush(): report it as an error
                    error = IngressRejectedError(event, 0, f"{type(exc).__name__}: {exc}")
                if error is not None:
                    with self._stats_lock:
                        self.stats.rejected.append(error)
                delivery._finish(error)
            finally:
                lane.task_done()

    def _connect(self) -> http.client.HTTPConnection:
        p = self._parsed
        cls = http.client.HTTPSConnection if p.scheme == "https" else http.client.HTTPConnection
        return cls(p.hostname or "127.0.0.1", p.port, timeout=self.timeout_s)

    def _deliver(
        self, connection: http.client.HTTPConnection | None, event: Event
    ) -> tuple[http.client.HTTPConnection | None, IngressRejectedError | None]:
        raw = self._raw.pop(str(event.event_id), None)
        body = json.dumps(
            raw if raw is not None else event.model_dump(mode="json"), ensure_ascii=False
        ).encode()
        entry = self.credentials.for_agency(event.agency_code)
        if entry is None:
            return connection, IngressRejectedError(
                event, 0, f"no credentials for agency {event.agency_code} in the credentials file"
            )
        feedback = isinstance(event, InboundFeedbackEvent)
        path = f"{self._parsed.path.rstrip('/')}/v1/{'feedback' if feedback else 'dossier'}-events"
        give_up = time.monotonic() + self.give_up_after_s
        attempt = 0
        while True:
            status, answer, retry_after = 0, b"", None
            try:
                connection = connection or self._connect()
                # signed anew on every attempt: an HMAC timestamp must be fresh
                headers = self.credentials.headers(entry, body)
                headers["Content-Type"] = "application/json"
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                status, answer = response.status, response.read()
                retry_after = response.getheader("Retry-After")
            except (OSError, http.client.HTTPException) as exc:
                # refused, reset or timed out: the event may or may not be in; sending it again
                # is safe (the hub drops a repeated event_id)
                if connection is not None:
                    connection.close()
                connection, answer = None, f"{type(exc).__name__}: {exc}".encode()
            with self._stats_lock:
                if status:
                    self.stats.statuses[status] += 1
                if status == 202:
                    self.stats.acknowledged.append(str(event.event_id))
                    self.stats.key_ids[str(event.event_id)] = entry.key_id
            if status == 202:
                return connection, None
            if status and status != 429 and status not in _RETRYABLE:
                return connection, IngressRejectedError(event, status, _describe(answer))
            attempt += 1
            if status == 429:
                wait = _seconds(retry_after, 1.0)
            else:
                backoff = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                wait = min(self.max_backoff_s, max(backoff, _seconds(retry_after, 0.0)))
            if time.monotonic() + wait > give_up:
                detail = f"still failing after {self.give_up_after_s:g}s: {_describe(answer)}"
                return connection, IngressRejectedError(event, status, detail)
            with self._stats_lock:
                if status == 429:
                    self.stats.throttled += 1
                else:
                    self.stats.retried += 1
            self._sleep(wait)

    def summary(self) -> str:
        s = self.stats
        statuses = ", ".join(f"{k} x{v}" for k, v in sorted(s.statuses.items())) or "none"
        return (
            f"ingress {self.url}: {len(s.acknowledged)} acknowledged (202), "
            f"{len(s.rejected)} rejected or given up, {s.throttled} waits on 429, "
            f"{s.retried} retries; answers: {statuses}"
        )


def _seconds(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header is not None else default
    except ValueError:
        return default  # an HTTP date: not worth parsing for a simulator


def _describe(answer: bytes) -> str:
    """The rule and field problems of an ingress error (it never echoes values)."""
    try:
        data = json.loads(answer)
    except ValueError:
        return answer.decode(errors="replace")[:200]
    if not isinstance(data, dict):
        return str(data)[:200]
    text = f"{data.get('rule', '?')}: {data.get('message', '')}"
    problems = data.get("problems") or []
    if problems:
        text += (
            " ["
            + "; ".join(f"{p.get('path')}: {p.get('rule')} ({p.get('message')})" for p in problems)
            + "]"
        )
    return text
