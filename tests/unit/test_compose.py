"""docker-compose.yml runs the same broker and registry as the local stack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from connectors.sdk.loading import load_config
from hub.stack.artifacts import APICURIO_VERSION, KAFKA_VERSION

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_pins_the_local_stack_versions() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert services["registry"]["image"] == f"apicurio/apicurio-registry:{APICURIO_VERSION}"


def test_the_province_runs_in_compose() -> None:
    services = compose()["services"]
    for name in (
        "kafka", "registry", "hub-worker-1", "hub-worker-2", "portal-emulator", "portal-sink",
        "json-bridge", "ingress", "simulator", "prometheus", "grafana",
    ):  # fmt: skip
        assert name in services, name


def test_every_service_with_state_or_a_port_has_a_health_check() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if "ports" in service:
            assert "healthcheck" in service, name
    for name in ("kafka", "hub-worker-1", "hub-worker-2", "prometheus", "grafana"):
        mounts = [v.split(":")[0] for v in services[name].get("volumes", [])]
        assert any(m in compose()["volumes"] for m in mounts), f"{name} keeps no data volume"


def test_each_worker_has_a_name_and_an_address_of_its_own() -> None:
    """Static members (HUB_WORKER_NAME): two workers under one name would fence each other,
    and each must be reached at its own URL; the connectors are no workers."""
    services = compose()["services"]
    workers = [name for name, service in services.items() if service.get("command", [])[:2] ==
               ["hub", "worker"]]  # fmt: skip
    assert workers == ["hub-worker-1", "hub-worker-2"]
    for name in workers:
        env = services[name]["environment"]
        assert env["HUB_WORKER_NAME"] == name
        assert env["HUB_ADVERTISED_URL"] == f"http://{name}:6066"
    for name, service in services.items():
        if name not in workers:
            assert "HUB_WORKER_NAME" not in (service.get("environment") or {}), name


def test_prometheus_in_compose_scrapes_both_workers_on_all_interfaces() -> None:
    services = compose()["services"]
    prometheus = yaml.safe_load((COMPOSE.parent / "monitoring" / "prometheus.yml").read_text())
    targets = {
        t
        for job in prometheus["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    }
    assert {"hub-worker-1:6066", "hub-worker-2:6066"} <= targets
    for name in ("hub-worker-1", "hub-worker-2"):
        env = services[name]["environment"]
        assert env["HUB_WEB_HOST"] == "0.0.0.0"  # scrapeable from another container


def test_the_simulator_acts_as_the_agencies_through_the_ingress_with_its_keys() -> None:
    services = compose()["services"]
    ingress, simulator = services["ingress"], services["simulator"]
    command = simulator["command"]
    assert command[command.index("--via") + 1] == "ingress"
    assert command[command.index("--ingress-url") + 1] == "http://ingress:8088"
    keys = command[command.index("--credentials") + 1]
    assert any(v.endswith(":/secrets:ro") for v in simulator["volumes"])
    assert any(v.endswith(":/secrets:ro") for v in ingress["volumes"])
    config_path = ingress["command"][ingress["command"].index("--config") + 1]
    config_path = config_path.removeprefix("/app/")
    config = load_config(COMPOSE.parent / config_path)  # the image copies connectors/ to /app
    assert config.connector_class == "http-ingress"
    assert config.settings["host"] == "0.0.0.0"  # reachable from the simulator's container
    assert config.settings["credentials_file"] == keys
    # generated on first start into the shared volume, by the one-shot that makes every key
    keys_job = services["access-keys"]
    assert f"--out {keys}" in " ".join(keys_job["command"])
    assert any(v.endswith(":/secrets") for v in keys_job["volumes"])


def test_the_json_bridge_runs_as_a_connector_from_its_config() -> None:
    """One way to run a connector (issue #15): ``hub connector run --config`` with a file the
    image carries, never a module of its own."""
    command = compose()["services"]["json-bridge"]["command"]
    assert command[:3] == ["hub", "connector", "run"]
    config_path = command[command.index("--config") + 1].removeprefix("/app/")
    config = load_config(COMPOSE.parent / config_path)  # the image copies connectors/ to /app
    assert config.connector_class == "json-bridge"
    assert list(config.topics) == ["dossier.events.json", "feedback.events.json"]
    assert config.value_converter == "bytes"
    assert config.errors_tolerance == "all"  # a bad record is dead-lettered, not fatal


def test_every_api_call_in_compose_presents_a_key() -> None:
    """The workers read the access file and the agencies' ingress keys; Prometheus scrapes
    with the figures key the access-keys one-shot made, from the same volume."""
    services = compose()["services"]
    keys_job = " ".join(services["access-keys"]["command"])
    assert "--role figures > /access/prometheus.key" in keys_job
    for name in ("hub-worker-1", "hub-worker-2"):
        env = services[name]["environment"]
        assert env["HUB_ACCESS_FILE"] == "/access/access.json"
        assert env["HUB_ACCESS_INGRESS_CREDENTIALS"] == "/secrets/ingress-credentials.json"
        assert "access-keys" in services[name]["depends_on"]
        assert any(v.startswith("access-keys:/access") for v in services[name]["volumes"])
    assert any(v.startswith("access-keys:/access") for v in services["prometheus"]["volumes"])


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


def test_every_connector_service_runs_through_hub_connector_run() -> None:
    """One runtime (issue #15): a connector service is `hub connector run` and a config file
    that validates."""
    services = compose()["services"]
    connectors = {"portal-sink": "portal-sink", "ingress": "http-ingress"}
    for service, connector_class in connectors.items():
        command = services[service]["command"]
        assert command[:3] == ["hub", "connector", "run"], service
        path = command[command.index("--config") + 1].removeprefix("/app/")
        config = load_config(COMPOSE.parent / path)  # the image copies connectors/ to /app
        assert config.connector_class == connector_class


def test_prometheus_scrapes_every_connector_service_where_it_serves_metrics() -> None:
    """Each connector process has one HTTP port for /health and /metrics (health.port, or
    the ingress's settings.port), bound to every interface of its container, and Prometheus
    scrapes each there."""
    services = compose()["services"]
    scrape = yaml.safe_load((COMPOSE.parent / "monitoring/prometheus.yml").read_text())
    targets = {
        t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    connectors = [n for n, s in services.items() if s.get("command", [])[:3] == ["hub",
                  "connector", "run"]]  # fmt: skip
    assert sorted(connectors) == ["ingress", "json-bridge", "portal-sink"]
    for service in connectors:
        command = services[service]["command"]
        path = command[command.index("--config") + 1].removeprefix("/app/")
        config = load_config(COMPOSE.parent / path)
        if config.connector_class == "http-ingress":
            host, port = config.settings["host"], config.settings["port"]
        else:
            host, port = config.health_host, config.health_port
        assert host == "0.0.0.0", service
        assert f"{service}:{port}" in targets, service
    # the jobs the ConnectorDown alert and the operations dashboard watch
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    assert {"portal-sink", "connectors"} <= jobs


def test_the_bridge_runs_in_compose_as_its_example_says() -> None:
    """json-bridge-compose.toml is json-bridge.toml plus a metrics port, nothing else."""
    example = load_config(COMPOSE.parent / "connectors/examples/json-bridge.toml")
    composed = load_config(COMPOSE.parent / "connectors/examples/json-bridge-compose.toml")
    binding = {"health_host", "health_port"}
    assert composed.model_dump(exclude=binding) == example.model_dump(exclude=binding)
