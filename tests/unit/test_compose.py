"""docker-compose.yml runs the same broker and registry as the local stack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from hub.stack.artifacts import APICURIO_VERSION, KAFKA_VERSION

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_pins_the_local_stack_versions() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert services["registry"]["image"] == f"apicurio/apicurio-registry:{APICURIO_VERSION}"


def test_every_service_with_state_has_a_health_check() -> None:
    services = compose()["services"]
    for name in ("kafka", "registry"):
        assert "healthcheck" in services[name], name
    assert "kafka-data" in compose()["volumes"]


def test_docker_compose_config_accepts_the_file_when_the_client_has_compose() -> None:
    docker = shutil.which("docker")
    has_compose = docker is not None and (
        subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode
        == 0
    )
    if not has_compose:
        # No compose client here: the structural checks above are what can be checked.
        return
    assert docker is not None
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
