"""The one HTTP server of a connector process: ``/health``, ``/metrics`` and a push source's
own routes, on one aiohttp application and one port.

Before, a process could run three servers (the runtime's health endpoint, prometheus'
``start_http_server``, the ingress's own aiohttp server), each with its own port to open in a
firewall and scrape. Now the runtime owns one :class:`ConnectorHttpServer`:

* ``GET /health``: the runtime's health dict as JSON, 200 when ``status`` is ``up``, else 503;
* ``GET /metrics``: every Prometheus metric of the process;
* the routes of a push source (:meth:`~connectors.sdk.base.PushSourceConnector.routes`),
  mounted before the server starts.

It runs its own asyncio loop on a daemon thread, so the runtime's thread and the
connector's blocking code never share a loop with it. :meth:`~ConnectorHttpServer.close`
stops accepting, lets the requests in flight finish (up to ``shutdown_timeout_s``), then
returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connectors.sdk.errors import ConnectorError

__all__ = ["RESERVED_PATHS", "ConnectorHttpServer"]

#: paths the server answers itself; a connector's routes may not take them
RESERVED_PATHS: Final = frozenset({"/health", "/metrics"})


class ConnectorHttpServer:
    """``/health`` and ``/metrics`` (and any routes added before :meth:`start`) on
    ``host:port``; port 0 picks a free one, read back from :attr:`port`."""

    def __init__(
        self,
        host: str,
        port: int,
        health: Callable[[], Mapping[str, Any]],
        *,
        client_max_size: int = 1024 * 1024,
        shutdown_timeout_s: float = 5.0,
        name: str = "connector",
    ) -> None:
        self.host = host
        self.requested_port = port
        self.client_max_size = client_max_size
        self.shutdown_timeout_s = shutdown_timeout_s
        self.name = name
        self._probe = health
        self._routes: list[web.RouteDef] = []
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        self._lock = threading.Lock()
        # a connector's health() may do I/O and generate_latest() walks every series: off the
        # loop, so neither delays a push source's requests; two threads, so a probe that hangs
        # does not also hold /metrics up
        self._probes = ThreadPoolExecutor(2, thread_name_prefix=f"http-{name}-probe")

    @property
    def port(self) -> int | None:
        """The port it listens on; None before :meth:`start` returned and after :meth:`close`."""
        return self._port

    def add_routes(self, routes: Iterable[web.RouteDef]) -> None:
        """Mount ``routes`` beside ``/health`` and ``/metrics``; only before :meth:`start`
        (aiohttp freezes the router once it serves)."""
        routes = list(routes)
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("routes must be added before the server starts")
            taken = sorted({r.path for r in routes} & RESERVED_PATHS)
            if taken:
                # aiohttp would accept a second resource for the path and never route to it
                raise ValueError(f"{', '.join(taken)} belong(s) to the connector's HTTP server")
            self._routes.extend(routes)

    def start(self, timeout_s: float = 30.0) -> None:
        """Listen; returns once the port is bound. Raises :class:`ConnectorError` when it
        cannot be (port taken, unknown host)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the server was already started")
            self._thread = threading.Thread(
                target=self._main, name=f"http-{self.name}", daemon=True
            )
            self._thread.start()
        if not self._ready.wait(timeout_s):
            self.close()
            raise ConnectorError(
                f"{self.name}: HTTP server on {self.host}:{self.requested_port} did not start "
                f"within {timeout_s:g} s"
            )
        if self._error is not None:
            self._thread.join()
            self._probes.shutdown(wait=False)
            raise ConnectorError(
                f"{self.name}: cannot listen on {self.host}:{self.requested_port}: {self._error}"
            ) from self._error

    def close(self) -> None:
        """Stop accepting, let requests in flight finish (``shutdown_timeout_s``), then
        return. Idempotent; harmless before :meth:`start`."""
        with self._lock:
            self._closed = True
            loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None and thread is not threading.current_thread():
            # the drain is bounded by shutdown_timeout_s; the margin covers closing idle
            # keep-alive connections and the loop's own teardown
            thread.join(self.shutdown_timeout_s + 10)
        self._probes.shutdown(wait=False, cancel_futures=True)

    # --- the server's thread -------------------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); nothing else waits on this thread
            self._error = exc
        finally:
            self._port = None
            self._ready.set()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=self.client_max_size)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_routes(self._routes)
        # shutdown_timeout: how long cleanup() waits for the handlers still running
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.shutdown_timeout_s)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.requested_port)
            await site.start()
            stopping = asyncio.Event()
            with self._lock:
                self._loop, self._stopping = asyncio.get_running_loop(), stopping
                if self._closed:  # close() came while the site was starting
                    stopping.set()
            addresses = runner.addresses  # what was bound (port 0: the one the OS chose)
            self._port = int(addresses[0][1]) if addresses else self.requested_port
            self._ready.set()
            await stopping.wait()
        finally:
            # stops listening first, then waits for the requests in flight
            await runner.cleanup()
            with self._lock:
                self._loop = self._stopping = None

    # --- views ---------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        try:
            state = dict(await loop.run_in_executor(self._probes, self._probe))
        except Exception as exc:  # a probe that fails says "down", never 500
            state = {"status": "down", "error": type(exc).__name__}
        return web.Response(
            status=200 if state.get("status") == "up" else 503,
            body=json.dumps(state, ensure_ascii=False, default=str).encode(),
            content_type="application/json",
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.get_running_loop().run_in_executor(self._probes, generate_latest)
        # CONTENT_TYPE_LATEST carries a version parameter, which content_type= refuses
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
