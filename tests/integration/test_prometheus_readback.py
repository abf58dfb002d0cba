"""A real Prometheus server scrapes a real hub worker, applies the hub's rules, and answers.

Dossiers go through the broker to the worker; Prometheus (Debian's ``prometheus`` package,
installed by scripts/test.sh) scrapes the worker's /metrics every second with the recording
rules of monitoring/rules/hub.rules.yml loaded, and its HTTP API must give back the figures:
what the worker exported, summed by the recording rules, as a dashboard would read them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.publisher import EventPublisher
from connectors.scenarios import VN, dossier_code, dossier_life
from hub.domain.events import local_date
from hub.stack.tools import free_port
from tests.fixtures.stack import Broker
from tests.fixtures.worker import KEYS, Worker

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "rules" / "hub.rules.yml"
JUSTICE = "000.00.03.H40"  # Sở Tư pháp
CRIMINAL_RECORD = "2.000488"  # Cấp Phiếu lý lịch tư pháp


class Prometheus:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of ``promql`` now ([] while Prometheus has nothing yet)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                answer = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return []
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for_value(self, promql: str, expected: float, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        values: list[float] = []
        while time.monotonic() < deadline:
            values = [float(sample["value"][1]) for sample in self.query(promql)]
            if values == [expected]:
                return
            time.sleep(1)
        pytest.fail(
            f"Prometheus: {promql} gave {values}, expected [{expected}] within {timeout_s}s\n"
            f"prometheus log:\n{self.log_tail()}",
            pytrace=False,
        )


@pytest.fixture
def prometheus(hub_worker: Worker, tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "the prometheus server is not on PATH. scripts/test.sh installs it (Debian's "
            "prometheus package, via scripts/_env.sh, as root); or run "
            "`apt-get install prometheus`.",
            pytrace=False,
        )
    target = urllib.parse.urlsplit(hub_worker.url).netloc
    # Prometheus scrapes with a figures key, as monitoring/prometheus.yml does
    credentials = tmp_path / "scrape.key"
    credentials.write_text(KEYS["figures"])
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "hub",
                        "metrics_path": "/metrics",
                        "authorization": {"credentials_file": str(credentials)},
                        "static_configs": [{"targets": [target]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited at start:\n{server.log_tail()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready in 60s:\n{server.log_tail()}", pytrace=False)
            time.sleep(0.3)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()  # our own child, by its pid
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_prometheus_reads_the_workers_figures_back(
    broker: Broker, hub_worker: Worker, prometheus: Prometheus
) -> None:
    prefix = hub_worker.env["HUB_TOPIC_PREFIX"]
    publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
    start = datetime.now(VN) - timedelta(days=14)
    today = local_date(datetime.now(UTC))
    late = dossier_code(JUSTICE, start, 3)
    events = [
        *dossier_life(dossier_code(JUSTICE, start, 1), JUSTICE, CRIMINAL_RECORD, start),
        *dossier_life(dossier_code(JUSTICE, start, 2), JUSTICE, CRIMINAL_RECORD, start),
        # still open, promised for three days ago: overdue today
        *dossier_life(
            late,
            JUSTICE,
            CRIMINAL_RECORD,
            start,
            finish=False,
            rating=None,
            appointment_date=today - timedelta(days=3),
        ),
    ]
    for event in events:
        assert publisher.publish(event) == []
    publisher.close()

    prometheus.wait_for_value('up{job="hub"}', 1)
    prometheus.wait_for_value('sum(hub_dossiers{figure="returned"})', 2)
    prometheus.wait_for_value(f'sum(hub_dossiers{{agency="{JUSTICE}",figure="in_progress"}})', 1)
    prometheus.wait_for_value(f'hub_overdue_open_dossiers{{agency="{JUSTICE}"}}', 1)
    # the recording rules of monitoring/rules/hub.rules.yml, evaluated by the real server
    prometheus.wait_for_value(f'agency:hub_overdue_open_dossiers:sum{{agency="{JUSTICE}"}}', 1)
    prometheus.wait_for_value(f'agency:hub_dossiers_submitted:sum{{agency="{JUSTICE}"}}', 3)
    prometheus.wait_for_value(f'agency:hub_satisfaction_rated:ratio{{agency="{JUSTICE}"}}', 1)
    prometheus.wait_for_value("count(hub_build_info)", 1)
    # the lag sampler (hub/worker/lag.py, every 15s): one series per input topic, and the
    # group catches up; the engine's committed checkpoints on the same /metrics
    prometheus.wait_for_value("count(hub_consumer_lag_messages)", 2)
    prometheus.wait_for_value("sum(hub_consumer_lag_messages)", 0)
    prometheus.wait_for_value('clamp_max(sum(hub_checkpoints_total{outcome="committed"}), 1)', 1)

    status, overdue = hub_worker.get(f"/overdue?agency={JUSTICE}")
    assert status == 200
    assert [item["dossier_code"] for item in overdue["items"]] == [late]
