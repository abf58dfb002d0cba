"""Per-connector Prometheus metrics and the small health/metrics HTTP endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

__all__ = ["PAUSED", "RECORDS", "RETRIES", "UP", "HealthServer"]

RECORDS = Counter(
    "hub_connector_records_total",
    "Records a connector finished, by outcome: published, delivered, dead_lettered, "
    "invalid (refused at the door), failed (stopped the connector).",
    ["connector", "outcome"],
)
UP = Gauge("hub_connector_up", "1 while the connector runs and can reach Kafka.", ["connector"])
RETRIES = Counter(
    "hub_connector_retries_total",
    "Attempts repeated after a retriable failure (receiver or broker down).",
    ["connector"],
)
PAUSED = Gauge(
    "hub_connector_paused_partitions",
    "Partitions a sink stopped fetching: their lane has a full backlog (a record failing).",
    ["connector"],
)


class HealthServer:
    """``GET /health`` (JSON; 200 when ``status`` is ``up``, else 503) and ``GET /metrics``
    on a daemon thread."""

    def __init__(self, host: str, port: int, health: Callable[[], dict[str, Any]]) -> None:
        probe = health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    body, status, ctype = generate_latest(), 200, CONTENT_TYPE_LATEST
                elif self.path.split("?")[0] == "/health":
                    state = probe()
                    body = json.dumps(state).encode()
                    status = 200 if state.get("status") == "up" else 503
                    ctype = "application/json"
                else:
                    body, status, ctype = b'{"error": "not found"}', 404, "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="connector-health", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
