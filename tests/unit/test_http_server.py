"""A connector process's one HTTP server, without Kafka: /health and /metrics, port 0, routes
beside them, a clean close that drains requests in flight."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from connectors.sdk import ConnectorError
from connectors.sdk.http_server import ConnectorHttpServer
from connectors.sdk.metrics import RECORDS


def get(port: int, path: str, body: bytes | None = None, **headers: str) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        headers=headers,
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def state() -> dict[str, Any]:
    return {"status": "up", "connector": "probe"}


@pytest.fixture
def server(state: dict[str, Any]) -> Iterator[ConnectorHttpServer]:
    served = ConnectorHttpServer("127.0.0.1", 0, lambda: state, name="unit")
    served.start()
    try:
        yield served
    finally:
        served.close()


def test_port_zero_is_bound_and_readable(server: ConnectorHttpServer) -> None:
    assert server.port is not None and server.port > 0
    assert get(server.port, "/nowhere")[0] == 404


def test_health_answers_the_probe_200_up_503_otherwise(
    server: ConnectorHttpServer, state: dict[str, Any]
) -> None:
    assert server.port is not None
    status, body, headers = get(server.port, "/health")
    assert (status, json.loads(body)) == (200, state)
    assert headers["Content-Type"].startswith("application/json")
    state["status"] = "down"
    status, body, _ = get(server.port, "/health")
    assert (status, json.loads(body)["status"]) == (503, "down")


def test_a_probe_that_fails_is_503_not_500() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("no")

    served = ConnectorHttpServer("127.0.0.1", 0, broken)
    served.start()
    try:
        assert served.port is not None
        status, body, _ = get(served.port, "/health")
        assert (status, json.loads(body)) == (503, {"status": "down", "error": "RuntimeError"})
    finally:
        served.close()


def test_metrics_are_prometheus_text(server: ConnectorHttpServer) -> None:
    name = f"unit-{uuid.uuid4().hex[:6]}"
    RECORDS.labels(name, "published").inc(3)
    assert server.port is not None
    status, body, headers = get(server.port, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    line = f'hub_connector_records_total{{connector="{name}",outcome="published"}} 3.0'
    assert line in body.decode()


def test_close_stops_listening_and_is_idempotent() -> None:
    never_started = ConnectorHttpServer("127.0.0.1", 0, dict)
    never_started.close()  # harmless
    served = ConnectorHttpServer("127.0.0.1", 0, dict)
    served.start()
    port = served.port
    assert port is not None and not refuses(port)
    served.close()
    assert served.port is None and refuses(port)
    served.close()


def test_a_taken_port_is_a_connector_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = ConnectorHttpServer("127.0.0.1", port, dict)
        with pytest.raises(ConnectorError, match=f"cannot listen on 127.0.0.1:{port}"):
            served.start()
        served.close()


def test_routes_are_mounted_beside_health_and_metrics_but_cannot_take_them() -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    served = ConnectorHttpServer("127.0.0.1", 0, lambda: {"status": "up"})
    with pytest.raises(ValueError, match="/health"):
        served.add_routes([web.get("/health", hello)])
    served.add_routes([web.get("/hello", hello)])
    served.start()
    try:
        assert served.port is not None
        assert get(served.port, "/hello")[:2] == (200, b"hello")
        assert get(served.port, "/health")[0] == 200
        with pytest.raises(RuntimeError, match="before the server starts"):
            served.add_routes([web.get("/late", hello)])
    finally:
        served.close()


def test_close_refuses_new_connections_and_finishes_requests_in_flight() -> None:
    entered, release = threading.Event(), threading.Event()

    async def slow(request: web.Request) -> web.Response:
        entered.set()
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 20)
        return web.Response(text="finished")

    served = ConnectorHttpServer("127.0.0.1", 0, dict, shutdown_timeout_s=20)
    served.add_routes([web.get("/slow", slow)])
    served.start()
    port = served.port
    assert port is not None
    answers: list[tuple[int, bytes, Any]] = []
    client = threading.Thread(target=lambda: answers.append(get(port, "/slow")))
    client.start()
    assert entered.wait(10)
    closer = threading.Thread(target=served.close)
    closer.start()
    wait_for(lambda: refuses(port), 10, "the listening socket to close")
    assert closer.is_alive() and not answers  # still draining the request in flight
    release.set()
    closer.join(20)
    client.join(20)
    assert not closer.is_alive()
    assert answers[0][:2] == (200, b"finished")
