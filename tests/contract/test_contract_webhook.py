"""The connector contract for agency webhooks, against a real local HTTP receiver that
answers 400 to records of an agency it does not serve."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from connectors.sdk import Connector
from connectors.webhook import AgencyWebhookConnector, verify
from tests.contract.connector_contract import SinkContract

AGENCY = "000.00.12.H40"
SECRET = "contract-secret"


class _Receiver:
    def __init__(self) -> None:
        self.accepted: list[str] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signed = verify(
                    SECRET.encode(),
                    self.headers.get("X-Hub-Timestamp", ""),
                    body,
                    self.headers.get("X-Hub-Signature-256", ""),
                )
                record = json.loads(body)
                ok = signed and self.headers.get("Idempotency-Key") == record.get("event_id")
                status = 200 if ok and not record.get("refuse") else 400
                if status == 200:
                    state.accepted.append(record["event_id"])
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/inbox"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TestWebhookContract(SinkContract):
    connector_class: ClassVar[type[Connector]] = AgencyWebhookConnector
    bad_settings_path = "settings.rate_burst"
    receivers: ClassVar[dict[Path, _Receiver]] = {}

    @pytest.fixture(autouse=True)
    def _close_receivers(self) -> Iterator[None]:
        yield
        for receiver in self.receivers.values():
            receiver.close()
        self.receivers.clear()

    def receiver(self, tmp_path: Path) -> _Receiver:
        if tmp_path not in self.receivers:
            self.receivers[tmp_path] = _Receiver()
        return self.receivers[tmp_path]

    def extra_config(self) -> dict[str, Any]:
        return {**super().extra_config(), "errors.retry.timeout": -1}

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        endpoints = tmp_path / "endpoints.json"
        endpoints.write_text(
            json.dumps({AGENCY: {"url": self.receiver(tmp_path).url, "secret": SECRET}}),
            encoding="utf-8",
        )
        return {"endpoints_file": str(endpoints), "breaker_cooldown_s": 0.5}

    def bad_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"endpoints_file": str(tmp_path / "e.json"), "rate_burst": 0}

    def delivered(self, tmp_path: Path) -> list[str]:
        return list(self.receiver(tmp_path).accepted)

    def good_value(self, record_id: str) -> bytes:
        return json.dumps({"event_id": record_id, "agency_code_handling": AGENCY}).encode()

    def bad_value(self) -> bytes:
        return json.dumps(
            {"event_id": "refused", "agency_code_handling": AGENCY, "refuse": True}
        ).encode()

    def test_an_outage_is_never_dead_lettered(self, tmp_path: Path) -> None:
        from connectors.sdk import ConnectorConfigError, parse_config

        raw = self.raw_config(tmp_path)
        raw["errors.retry.timeout"] = 5000
        with pytest.raises(ConnectorConfigError, match=r"errors\.retry\.timeout: retry_forever"):
            parse_config(raw, "test")
