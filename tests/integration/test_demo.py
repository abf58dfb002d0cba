"""``hub demo`` end to end: its own stack on free ports, a worker, the portal side, the HTTP
ingress the simulator sends every event through, the tour, and nothing left running
afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.stack.tools import free_port

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240


def processes_mentioning(marker: str) -> list[str]:
    """Processes whose command line or environment mention ``marker`` (other than us)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for part in ("cmdline", "environ"):
            try:
                data = (entry / part).read_bytes()
            except OSError:  # gone, or not ours to read
                continue
            if marker.encode() in data:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")[:200]
                found.append(f"{entry.name}: {cmd.decode(errors='replace')}")
                break
    return found


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_demo_runs_shows_the_hub_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")
    }
    env.update(
        {
            "HUB_STATE_DIR": str(tmp_path / "stack"),
            "HUB_DEMO_DIR": str(tmp_path / "demo"),
            "HUB_KAFKA_PORT": str(free_port()),
            "HUB_CONTROLLER_PORT": str(free_port()),
            "HUB_REGISTRY_PORT": str(free_port()),
            "HUB_WEB_PORT": str(free_port()),
            "HUB_DEMO_PORTAL_PORT": str(free_port()),
            "HUB_DEMO_INGRESS_PORT": str(ingress_port := free_port()),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        }
    )
    command = [sys.executable, "-m", "hub", "demo", "--dossiers", "40", "--rate", "400"]
    command += ["--duration", "5", "--seed", "7"]
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        subprocess.run(
            [sys.executable, "-m", "hub", "stack", "down"], cwd=ROOT, env=env, timeout=120
        )
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        pytest.fail(f"hub demo did not finish within {TIMEOUT_S}s:\n{out[-4000:]}")
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    simulated = re.search(r"simulated 40 dossiers, (\d+) events", output)
    assert simulated is not None, output[-3000:]
    events = int(simulated.group(1))
    assert "validation problems 0, send errors 0" in output
    # every event went through the HTTP ingress, each acknowledged (202) once: the simulator
    # counted the 202s, the ingress counted what it published to Kafka
    ingress = f"http://127.0.0.1:{ingress_port}"
    assert f"ingress {ingress}: {events} acknowledged (202), 0 rejected" in output
    assert f"the ingress acknowledged {events} events" in output
    assert f"OpenAPI document: {ingress}/openapi.json" in output
    credentials = tmp_path / "demo" / "ingress-credentials.json"
    assert str(credentials) in output and credentials.stat().st_mode & 0o777 == 0o600
    assert "stopping the http-ingress" in output
    assert "caught up" in output
    assert '"dossier_code":' in output and '"timeline": [' in output  # a dossier's JSON
    assert '"on_time_rate":' in output and '"counts":' in output  # an agency summary
    assert "hub_dossiers{" in output
    portal = re.search(r"the national portal holds (\d+) status updates of (\d+)", output)
    assert portal is not None, output[-3000:]
    assert portal.group(1) == portal.group(2) != "0"  # every status reached the portal
    assert "dossier.events.dlq" in output
    assert "stopping the hub worker" in output and "stopped: " in output
    assert (tmp_path / "demo" / "worker.log").stat().st_size > 0

    deadline = time.monotonic() + 15
    left = processes_mentioning(str(tmp_path))
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = processes_mentioning(str(tmp_path))
    assert not left, f"processes left behind by hub demo ({elapsed:.0f}s):\n" + "\n".join(left)
