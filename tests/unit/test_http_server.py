"""A connector process's one HTTP server, without Kafka: /health and /metrics, port 0, a clean
close that drains requests in flight, a push source's routes on it, and which port wins."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from connectors.ingress import HttpIngress, IngressSettings, hash_api_key
from connectors.sdk import (
    ConnectorConfig,
    ConnectorConfigError,
    ConnectorError,
    ConnectorFailedError,
    PushSourceConnector,
    parse_config,
)
from connectors.sdk.http_server import ConnectorHttpServer
from connectors.sdk.metrics import RECORDS
from connectors.sdk.runtime import ConnectorRuntime
from hub.stack.tools import free_port
from tests.contract.connector_contract import AGENCY, make_event

KEY = "http-server-test-key-0123456789"


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


# --- which port wins: the ingress's settings.port, health.port may only repeat it -------------


def ingress_config(tmp_path: Path, **top: Any) -> dict[str, Any]:
    credentials = tmp_path / "credentials.json"
    credentials.write_text(
        json.dumps(
            {
                "credentials": [
                    {"agency_code": AGENCY, "key_id": "k", "api_key_sha256": hash_api_key(KEY)}
                ]
            }
        )
    )
    closed = f"127.0.0.1:{free_port()}"  # nothing listens: Kafka is unreachable
    return {
        "name": f"ingress-{uuid.uuid4().hex[:6]}",
        "connector.class": "http-ingress",
        "bootstrap.servers": closed,
        "schema.registry.url": f"http://{closed}",
        **top,
        "settings": {"port": 8088, "credentials_file": str(credentials), "ack_timeout_s": 3},
    }


def test_health_port_other_than_the_ingress_port_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectorConfigError) as caught:
        parse_config(ingress_config(tmp_path, **{"health.port": 9100}), "ingress.json")
    assert [(p.path, p.rule) for p in caught.value.problems] == [("health.port", "conflict")]
    message = str(caught.value)
    assert "settings.port" in message and "9100" not in message and "8088" not in message
    with pytest.raises(ConnectorConfigError) as caught:
        parse_config(ingress_config(tmp_path, **{"health.host": "0.0.0.0"}), "ingress.json")
    assert [(p.path, p.rule) for p in caught.value.problems] == [("health.host", "conflict")]
    # repeating the ingress's own port and host is one server, one port: accepted
    same = {"health.port": 8088, "health.host": "127.0.0.1"}
    assert parse_config(ingress_config(tmp_path, **same)).health_port == 8088
    assert parse_config(ingress_config(tmp_path)).health_port is None


def test_the_runtime_refuses_the_conflict_for_a_connector_built_in_code(tmp_path: Path) -> None:
    config = parse_config(ingress_config(tmp_path, **{"health.port": 8088}))
    connector = HttpIngress(config, IngressSettings(port=free_port(), credentials_file=None))
    runtime = ConnectorRuntime(config, connector=connector)
    with pytest.raises(ConnectorFailedError, match=r"health\.port: conflict"):
        runtime.run()


def test_the_ingress_is_served_on_the_one_server_and_drains_on_stop(tmp_path: Path) -> None:
    raw = ingress_config(tmp_path)
    raw["settings"]["port"] = 0
    runtime = ConnectorRuntime(parse_config(raw))
    runtime.start_thread()
    try:
        wait_for(lambda: runtime.state == "running" or runtime.error is not None, 30, "start")
        assert runtime.error is None
        connector = runtime.connector
        assert isinstance(connector, HttpIngress)
        port = connector.port
        assert port is not None and port == runtime.health_port

        # one port: the ingress's routes, its health (503: Kafka unreachable), the metrics
        status, body, _ = get(port, "/health")
        health = json.loads(body)
        assert (status, health["status"], health["kafka"], health["kind"]) == (
            503,
            "down",
            False,
            "push-source",
        )
        assert get(port, "/openapi.json")[0] == 200
        assert "hub_connector_up" in get(port, "/metrics")[1].decode()
        status, body, _ = get(port, "/v1/dossier-events", b"{}", **{"X-Api-Key": "unknown-key-x"})
        assert (status, json.loads(body)["rule"]) == (401, "bad_api_key")

        # a request waiting for Kafka when the stop comes is answered before the runtime ends
        answers: list[tuple[int, bytes, Any]] = []
        event = json.dumps(make_event()).encode()
        headers = {"X-Api-Key": KEY, "Content-Type": "application/json"}
        client = threading.Thread(
            target=lambda: answers.append(get(port, "/v1/dossier-events", event, **headers))
        )
        client.start()
        wait_for(lambda: connector._in_flight == 1, 10, "the request to be in flight")
        runtime.request_stop()
        wait_for(lambda: refuses(port), 5, "the ingress to stop accepting")
        assert not answers  # still in flight: the stop waits for it
        runtime.join(30)
        client.join(10)
        status, body, got = answers[0]
        assert (status, json.loads(body)["rule"], got["Retry-After"]) == (
            503,
            "broker_unavailable",
            "5",
        )
        assert runtime.state == "stopped" and connector.port is None
    finally:
        runtime.request_stop()
        runtime.join(30)


class Echo(PushSourceConnector):
    """A push source of HTTP routes that leaves the binding to health.port."""

    def routes(self) -> Sequence[web.RouteDef]:
        async def echo(request: web.Request) -> web.Response:
            return web.Response(text=request.query.get("say", ""))

        return [web.get("/echo", echo)]


def echo_config(tmp_path: Path, **top: Any) -> ConnectorConfig:
    closed = f"127.0.0.1:{free_port()}"
    raw = {"name": "echo", "connector.class": "echo", "bootstrap.servers": closed, **top}
    return parse_config(raw, connector_cls=Echo)


def test_a_push_source_without_a_binding_is_served_on_health_port(tmp_path: Path) -> None:
    runtime = ConnectorRuntime(echo_config(tmp_path, **{"health.port": 0}))
    runtime.start_thread()
    try:
        wait_for(lambda: runtime.state == "running" or runtime.error is not None, 30, "start")
        assert runtime.error is None and runtime.health_port is not None
        assert get(runtime.health_port, "/echo?say=hi")[:2] == (200, b"hi")
        status, body, _ = get(runtime.health_port, "/health")
        assert (status, json.loads(body)["connector"]) == (200, "echo")
    finally:
        runtime.request_stop()
        runtime.join(30)
    assert runtime.health_port is None


def test_routes_without_any_port_is_a_config_error(tmp_path: Path) -> None:
    runtime = ConnectorRuntime(echo_config(tmp_path))
    with pytest.raises(ConnectorFailedError, match=r"health\.port: missing"):
        runtime.run()
