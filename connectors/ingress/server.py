"""The HTTP ingress: agency systems push JSON events; 202 only once Kafka has them.

``POST /v1/dossier-events`` and ``POST /v1/feedback-events`` take one event (a JSON object
of ``hub.contract.inbound``) or a batch (a JSON array of up to ``max_batch``). A request is
judged in this order, and the first failing check answers:

====  =========================================================================================
429   ``max_in_flight`` requests are already being handled (``Retry-After``): back pressure
      that keeps memory and Kafka's buffer bounded instead of queueing without limit
413   the body is larger than ``max_body_bytes``
401   no credentials, an unknown API key, or a bad/stale HMAC signature (rule says which)
422   not JSON, an empty or too large batch, or field-level problems (``index``, ``path``,
      ``rule``, ``message``; messages never quote values), or an event on the wrong endpoint
403   an event's ``agency_code`` is neither the caller's agency nor its predecessor or
      successor in the reference mergers (rule ``agency_scope``; nothing else is echoed)
503   Kafka (or the schema registry) cannot be reached or did not acknowledge within
      ``ack_timeout_s`` (``Retry-After``). Some events may have been written: retrying is
      safe, the hub deduplicates on ``event_id``
202   every event of the request was acknowledged by Kafka (``acks=all``)
====  =========================================================================================

A request is all or nothing at the door: one invalid event refuses the whole batch and
nothing is written. ``GET /openapi.json`` describes exactly this; ``/health`` answers 200
while Kafka is reachable (503 otherwise), ``/metrics`` serves Prometheus metrics.

The ingress runs no server of its own: its routes are mounted on the connector process's one
HTTP server (:mod:`connectors.sdk.http_server`, which answers ``/health`` and ``/metrics``),
listening on ``settings.host``/``settings.port`` with ``max_body_bytes`` and
``shutdown_timeout_s``; the config's ``health.port``, if given, must be that same port. The
handlers run on that server's event loop; publishing runs on a thread pool of
``max_in_flight`` threads, so a slow broker never blocks the loop. On stop the server stops
accepting and lets requests in flight finish (up to ``shutdown_timeout_s``) before ``stop()``
shuts the pool.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field

from connectors.ingress.credentials import Caller, CredentialStore
from connectors.ingress.openapi import PATHS, openapi_document
from connectors.ingress.scope import AgencyScope
from connectors.sdk.base import HttpBinding, PushSourceConnector
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import BrokerUnavailableError, ConfigProblem, PermanentError
from hub.contract.inbound import FieldProblem, InboundFeedbackEvent

__all__ = ["HttpIngress", "IngressSettings"]

REQUESTS = Counter(
    "hub_ingress_requests_total",
    "HTTP ingress requests by endpoint and status code.",
    ["connector", "endpoint", "status"],
)
IN_FLIGHT = Gauge("hub_ingress_in_flight", "Event requests being handled.", ["connector"])
LATENCY = Histogram(
    "hub_ingress_request_seconds",
    "From receiving an event request to answering it (202 includes Kafka's ack).",
    ["connector"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class IngressSettings(BaseModel):
    """The ``settings`` table of an ``http-ingress`` connector."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    #: where the connector process's one HTTP server listens (events, /openapi.json, /health,
    #: /metrics); 0 picks a free port (tests), the bound one is ``HttpIngress.port``
    host: str = "127.0.0.1"
    port: int = Field(8088, ge=0, le=65535)
    credentials_file: Path | None = None
    #: environment variable holding a credentials document (read once at start)
    credentials_env: str | None = "HUB_INGRESS_CREDENTIALS"
    reload_interval_s: float = Field(1.0, ge=0)
    signature_tolerance_s: float = Field(300.0, gt=0)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_batch: int = Field(500, ge=1)
    max_in_flight: int = Field(16, ge=1)
    retry_after_s: int = Field(1, ge=1)
    broker_retry_after_s: int = Field(5, ge=1)
    ack_timeout_s: float = Field(10.0, gt=0)
    shutdown_timeout_s: float = Field(20.0, gt=0)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
        headers=headers,
    )


def _error(status: int, error: str, rule: str, message: str, **extra: Any) -> web.Response:
    headers = extra.pop("headers", None)
    return _json(status, {"error": error, "rule": rule, "message": message, **extra}, headers)


class _RefusedError(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


class HttpIngress(PushSourceConnector):
    """HTTP ingress: agency systems push JSON events (API key or HMAC), 202 after Kafka's ack."""

    Settings: ClassVar[type[BaseModel]] = IngressSettings
    settings: IngressSettings

    def __init__(self, config: ConnectorConfig, settings: BaseModel | None = None) -> None:
        super().__init__(config, settings)
        self.credentials: CredentialStore | None = None
        self._scope: AgencyScope | None = None
        self._in_flight = 0
        self._pool: ThreadPoolExecutor | None = None
        self._openapi: bytes = b""

    @classmethod
    def check_config(cls, config: ConnectorConfig) -> list[ConfigProblem]:
        problems = super().check_config(config)
        settings = config.settings
        if not settings.get("credentials_file") and settings.get("credentials_env", 1) is None:
            problems.append(
                ConfigProblem(
                    "settings.credentials_file",
                    "missing",
                    "give credentials_file or credentials_env: without them every request is 401",
                )
            )
        return problems

    @classmethod
    def http_binding(cls, settings: BaseModel) -> HttpBinding:
        assert isinstance(settings, IngressSettings)
        return HttpBinding(
            settings.host,
            settings.port,
            client_max_size=settings.max_body_bytes,
            shutdown_timeout_s=settings.shutdown_timeout_s,
        )

    @property
    def port(self) -> int | None:
        """The port the ingress is served on; None while it is not."""
        return self.context.http_port() if hasattr(self, "context") else None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        from hub.reference import load_reference

        s = self.settings
        self.credentials = CredentialStore(
            s.credentials_file,
            env_var=s.credentials_env,
            reload_interval_s=s.reload_interval_s,
            signature_tolerance_s=s.signature_tolerance_s,
        )
        if self.credentials.size == 0:
            self.log.warning("ingress %s has no credentials: every request is 401", self.name)
        self._scope = AgencyScope(load_reference().agencies)
        self._openapi = json.dumps(
            openapi_document(
                max_batch=s.max_batch,
                max_body_bytes=s.max_body_bytes,
                tolerance_s=s.signature_tolerance_s,
            ),
            ensure_ascii=False,
        ).encode()
        self._pool = ThreadPoolExecutor(s.max_in_flight, thread_name_prefix=f"ingress-{self.name}")

    def routes(self) -> Sequence[web.RouteDef]:
        return [
            *(web.post(path, functools.partial(self._events, path)) for path in PATHS),
            web.get("/openapi.json", self._openapi_view),
        ]

    def stop(self) -> None:
        # the runtime's server has stopped accepting and finished the requests in flight:
        # nothing uses the pool any more (wait=True covers a request past shutdown_timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def health(self) -> dict[str, Any]:
        kafka = self.context.available() if hasattr(self, "context") else False
        out: dict[str, Any] = {
            "status": "up" if kafka and self.port else "down",
            "kafka": kafka,
            "in_flight": self._in_flight,
            "credentials": self.credentials.size if self.credentials else 0,
        }
        if self.credentials and self.credentials.last_error:
            out["credentials_error"] = self.credentials.last_error
        return out

    # --- views -----------------------------------------------------------------------------

    async def _openapi_view(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    async def _events(self, path: str, request: web.Request) -> web.Response:
        started = time.monotonic()
        s = self.settings
        if self._in_flight >= s.max_in_flight:
            response = _error(
                429,
                "too_many_requests",
                "max_in_flight",
                f"{s.max_in_flight} requests are being handled; retry after {s.retry_after_s} s",
                headers={"Retry-After": str(s.retry_after_s)},
            )
            self.context.count("throttled")
            REQUESTS.labels(self.name, path, "429").inc()
            return response
        self._in_flight += 1
        IN_FLIGHT.labels(self.name).set(self._in_flight)
        try:
            try:
                response = await self._handle(path, request)
            except _RefusedError as refusal:
                response = refusal.response
        finally:
            self._in_flight -= 1
            IN_FLIGHT.labels(self.name).set(self._in_flight)
        REQUESTS.labels(self.name, path, str(response.status)).inc()
        LATENCY.labels(self.name).observe(time.monotonic() - started)
        return response

    async def _read(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        too_large = _RefusedError(
            _error(413, "too_large", "max_body_bytes", f"the body exceeds {limit} bytes")
        )
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _authenticate(self, request: web.Request, body: bytes) -> Caller:
        assert self.credentials is not None
        headers = request.headers

        def refuse(rule: str, message: str) -> _RefusedError:
            self.context.count("unauthorized")
            return _RefusedError(
                _error(
                    401,
                    "unauthorized",
                    rule,
                    message,
                    headers={"WWW-Authenticate": 'ApiKey header="X-Api-Key"'},
                )
            )

        signature = headers.get("X-Signature")
        if signature is not None:
            key_id, stamp = headers.get("X-Key-Id"), headers.get("X-Timestamp")
            if not key_id or not stamp:
                raise refuse("missing_credentials", "a signature needs X-Key-Id and X-Timestamp")
            found = self.credentials.by_signature(key_id, stamp, signature, body)
            if isinstance(found, str):
                messages = {
                    "bad_timestamp": "X-Timestamp is not Unix seconds",
                    "stale_timestamp": "X-Timestamp is more than "
                    f"{self.settings.signature_tolerance_s:g} s from the hub's clock",
                    "bad_signature": "the signature does not match the body for this key",
                }
                raise refuse(found, messages[found])
            return found
        key = headers.get("X-Api-Key")
        if not key:
            raise refuse("missing_credentials", "send X-Api-Key, or sign the body (X-Signature)")
        caller = self.credentials.by_api_key(key)
        if caller is None:
            raise refuse("bad_api_key", "the API key is not known")
        return caller

    async def _handle(self, path: str, request: web.Request) -> web.Response:
        s = self.settings
        body = await self._read(request)
        caller = self._authenticate(request, body)

        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            where = (
                f" at line {exc.lineno} column {exc.colno}"
                if isinstance(exc, json.JSONDecodeError)
                else ""
            )
            self.context.count("invalid")
            return _error(422, "invalid", "json", f"the body is not JSON{where}")
        items = data if isinstance(data, list) else [data]
        if not items:
            self.context.count("invalid")
            return _error(422, "invalid", "min_items", "the batch is empty")
        if len(items) > s.max_batch:
            self.context.count("invalid", len(items))
            return _error(
                422, "invalid", "max_items", f"a batch holds at most {s.max_batch} events"
            )

        want_feedback = PATHS[path][0] == "feedback"
        problems: list[dict[str, Any]] = []
        events = []
        for index, item in enumerate(items):
            result = self.context.validate(item)
            if isinstance(result, list):
                problems.extend(_problem(index, p) for p in result)
                continue
            if isinstance(result, InboundFeedbackEvent) != want_feedback:
                right = "/v1/feedback-events" if not want_feedback else "/v1/dossier-events"
                problems.append(
                    _problem(
                        index,
                        FieldProblem(
                            "event_type", "wrong_endpoint", f"send {result.event_type} to {right}"
                        ),
                    )
                )
                continue
            events.append(result)
        if problems:
            self.context.count("invalid", len(items))
            return _error(
                422,
                "invalid",
                "validation",
                f"{len(problems)} problem(s); nothing was written",
                problems=problems,
            )

        assert self._scope is not None
        for index, event in enumerate(events):
            if not self._scope.may_write(caller.agency_code, event.agency_code):
                self.context.count("forbidden", len(events))
                return _error(
                    403,
                    "forbidden",
                    "agency_scope",
                    "agency_code must be the calling agency's, or its predecessor's or "
                    "successor's; nothing was written",
                    index=index,
                    path="agency_code",
                )

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._pool,
                functools.partial(self.context.publish, events, timeout_s=s.ack_timeout_s),
            )
        except BrokerUnavailableError:
            self.context.count("unavailable", len(events))
            return _error(
                503,
                "unavailable",
                "broker_unavailable",
                "Kafka did not acknowledge the events; retry (the hub drops repeated event_ids)",
                headers={"Retry-After": str(s.broker_retry_after_s)},
            )
        except PermanentError as exc:
            self.log.error("ingress %s: valid events not encodable: %s", self.name, exc.reason)
            return _error(500, "internal", exc.reason, "the hub could not encode the events")
        return _json(202, {"accepted": len(events), "event_ids": [str(e.event_id) for e in events]})


def _problem(index: int, problem: FieldProblem) -> dict[str, Any]:
    return {"index": index, "path": problem.path, "rule": problem.rule, "message": problem.message}
