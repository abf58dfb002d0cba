"""``hub connector run`` in its own process: serves, then SIGTERM drains and exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from connectors.ingress import hash_api_key
from hub.stack.tools import free_port
from tests.contract.connector_contract import AGENCY, make_event
from tests.fixtures.stack import Broker

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
KEY = "cli-test-key-0123456789abcdef"


def test_hub_connector_run_serves_and_stops_on_sigterm(broker: Broker, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.json"
    credentials.write_text(
        json.dumps(
            {
                "credentials": [
                    {"agency_code": AGENCY, "key_id": "cli", "api_key_sha256": hash_api_key(KEY)}
                ]
            }
        )
    )
    # one HTTP server per connector process: health.port may only repeat the ingress's port
    port = free_port()
    config = tmp_path / "ingress.toml"
    config.write_text(
        f'name = "cli-ingress"\nconnector.class = "http-ingress"\n'
        f'bootstrap.servers = "{broker.bootstrap}"\n'
        f'schema.registry.url = "{broker.registry_url}"\n'
        f'topic.prefix = "cli{os.getpid()}."\nhealth.port = {port}\n'
        f'[settings]\nport = {port}\ncredentials_file = "{credentials}"\n'
    )
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "connector", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    status = r.status
            except (urllib.error.URLError, OSError):
                status = 0
            if status == 200:
                break
            time.sleep(0.3)
        assert status == 200, (tmp_path / "run.log").read_text()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/dossier-events",
            data=json.dumps(make_event()).encode(),
            headers={"X-Api-Key": KEY, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert 'hub_connector_up{connector="cli-ingress"} 1.0' in r.read().decode()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, (tmp_path / "run.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
