"""A three-broker cluster's layout and the worker's refusal of settings a cluster cannot keep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.engine.cluster import replication_problems
from hub.stack.errors import StackError
from hub.stack.stack import BROKERS_FILE, LocalStack, StackConfig


def problems(brokers: int, rf: int, isr: int, **topics: int) -> list[str]:
    return replication_problems(
        brokers=brokers, replication_factor=rf, min_insync_replicas=isr, topic_replicas=topics
    )


def test_three_replicas_with_two_in_sync_fit_a_three_broker_cluster() -> None:
    assert problems(3, 3, 2, events=3) == []
    assert problems(1, 1, 1) == []


def test_settings_the_cluster_cannot_keep_are_each_named() -> None:
    (too_many,) = problems(1, 3, 2)
    assert "HUB_REPLICATION_FACTOR=3 needs 3 brokers; the cluster has 1" in too_many
    (unreachable,) = problems(3, 2, 3)
    assert "HUB_MIN_INSYNC_REPLICAS=3 is more than HUB_REPLICATION_FACTOR=2" in unreachable
    (weak_topic,) = problems(3, 3, 2, old_events=1, status=3)
    assert "old_events (1)" in weak_topic and "status" not in weak_topic


def test_a_cluster_s_nodes_get_ports_two_apart_and_their_own_data(tmp_path: Path) -> None:
    config = StackConfig(state_dir=tmp_path, kafka_port=19092, controller_port=19093, brokers=3)
    assert config.ports() == [(19092, 19093), (19094, 19095), (19096, 19097)]
    stack = LocalStack(config)
    assert [n.state_dir for n in stack.nodes] == [tmp_path / f"kafka-{i}" for i in (1, 2, 3)]
    assert stack.bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert {n.voters for n in stack.nodes} == {
        "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    }
    assert len({n.cluster_id for n in stack.nodes}) == 1  # one cluster id, kept in the state dir
    assert {(n.replication, n.min_isr) for n in stack.nodes} == {(3, 2)}


def test_status_and_down_find_the_cluster_recorded_in_the_state_dir(tmp_path: Path) -> None:
    (tmp_path / BROKERS_FILE).write_text(
        json.dumps({"brokers": 3, "ports": [[29092, 29093], [29094, 29095], [29096, 29097]]})
    )
    stack = LocalStack(StackConfig(state_dir=tmp_path))  # no --brokers: the record says
    assert [n.port for n in stack.nodes] == [29092, 29094, 29096]
    with pytest.raises(StackError, match="holds a 3-broker cluster"):
        LocalStack(StackConfig(state_dir=tmp_path, brokers=2))


def test_a_one_broker_state_dir_is_not_turned_into_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "kafka-data").mkdir()
    with pytest.raises(StackError, match="holds a one-broker stack"):
        LocalStack(StackConfig(state_dir=tmp_path, brokers=3))
