"""The connector contract for the HTTP ingress (a push source: no offsets to resume from)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

from connectors.ingress import HttpIngress, hash_api_key
from connectors.sdk import Connector
from connectors.sdk.runtime import ConnectorRuntime
from tests.contract.connector_contract import AGENCY, SourceContract, invalid_event

API_KEY = "contract-key-0123456789abcdef"


def post(port: int, body: Any, key: str = API_KEY) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/dossier-events",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Api-Key": key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class TestHttpIngressContract(SourceContract):
    connector_class: ClassVar[type[Connector]] = HttpIngress
    bad_settings_path = "settings.max_batch"
    keeps_offsets = False

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        credentials = tmp_path / "credentials.json"
        credentials.write_text(
            json.dumps(
                {
                    "credentials": [
                        {
                            "agency_code": AGENCY,
                            "key_id": "contract",
                            "api_key_sha256": hash_api_key(API_KEY),
                        }
                    ]
                }
            ),
            encoding="utf-8",
        )
        return {"port": 0, "credentials_file": str(credentials)}

    def bad_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"port": 0, "max_batch": 0}

    def emit(
        self, runtime: ConnectorRuntime | None, tmp_path: Path, events: list[dict[str, Any]]
    ) -> None:
        assert runtime is not None and isinstance(runtime.connector, HttpIngress)
        assert runtime.connector.port is not None
        status, body = post(runtime.connector.port, events)
        assert status == 202, body

    def emit_raw_invalid(self, runtime: ConnectorRuntime | None, tmp_path: Path) -> bool:
        assert runtime is not None and isinstance(runtime.connector, HttpIngress)
        assert runtime.connector.port is not None
        status, body = post(runtime.connector.port, invalid_event())
        assert status == 422, body
        return False
