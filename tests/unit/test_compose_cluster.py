"""docker-compose.cluster.yml runs the same three-node cluster as `hub stack up --brokers 3`."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from hub.stack.kafka import server_properties

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def merged_env(service: str) -> dict[str, str]:
    """The service's environment as compose merges the override over the base file."""
    base = load("docker-compose.yml")["services"].get(service, {}).get("environment", {})
    over = load("docker-compose.cluster.yml")["services"][service].get("environment", {})
    return {**base, **over}


def test_three_nodes_form_one_quorum_with_one_cluster_id() -> None:
    nodes = ("kafka", "kafka-2", "kafka-3")
    envs = [merged_env(n) for n in nodes]
    assert [e["KAFKA_NODE_ID"] for e in envs] == ["1", "2", "3"]
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs}
    assert voters == {"1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"}
    (cluster_id,) = {e["CLUSTER_ID"] for e in envs}
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16  # a valid KRaft cluster id
    advertised = {e["KAFKA_ADVERTISED_LISTENERS"] for e in envs}
    assert len(advertised) == 3


def test_replication_matches_the_local_cluster() -> None:
    local = dict(
        line.split("=", 1)
        for line in server_properties(
            port=1, controller_port=2, data_dir="/d", partitions=6, replication=3, min_isr=2
        ).splitlines()
        if line and not line.startswith("#")
    )
    keys = (
        "default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
        "unclean.leader.election.enable", "num.partitions",
    )  # fmt: skip
    for node in ("kafka", "kafka-2", "kafka-3"):
        env = merged_env(node)
        for key in keys:
            assert env["KAFKA_" + key.upper().replace(".", "_")] == local[key], (node, key)


def test_every_client_reaches_all_three_brokers_and_the_workers_ask_for_three_replicas() -> None:
    bootstrap = "kafka:29092,kafka-2:29092,kafka-3:29092"
    assert merged_env("registry")["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"] == bootstrap
    for service in ("hub-worker-1", "hub-worker-2", "portal-sink", "json-bridge", "ingress",
                    "simulator"):  # fmt: skip
        assert merged_env(service)["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap, service
    for worker in ("hub-worker-1", "hub-worker-2"):
        env = merged_env(worker)
        assert (env["HUB_REPLICATION_FACTOR"], env["HUB_MIN_INSYNC_REPLICAS"]) == ("3", "2")
        assert env["HUB_ADVERTISED_URL"] == f"http://{worker}:6066"
        assert env["HUB_ACCESS_FILE"]  # the base file's settings stay
