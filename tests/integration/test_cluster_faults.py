"""Faults of a replicated cluster under load, each ending with input set = output set.

A three-node KRaft cluster of this module's own (``hub stack up --brokers 3``: replication
factor 3, ``min.insync.replicas=2``, no unclean leader election) and a worker configured for
it (``HUB_REPLICATION_FACTOR=3``, ``HUB_MIN_INSYNC_REPLICAS=2``). While events flow:

* ``kill -9`` of the broker leading the input, changelog and outbox partitions, three times,
  each restarted on its data once the cluster is fully replicated again;
* a rolling restart: SIGTERM each broker in turn, waiting for full replication between;
* ``kill -9`` of the broker coordinating the worker's transactions, during checkpoints;
* the schema registry restarted while the producers and the worker run.

Each run is judged as the single-broker fault tests are (``test_faults.judge``: the outbox
against the ledger, lost, duplicated, redelivered and out-of-order 0; the view; the counts;
``hub audit verify``) and prints its figures line. Loopback only, bounded in time.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from connectors.scenarios import VN
from hub.stack.errors import StackError
from hub.stack.kafka import KafkaNode
from hub.stack.stack import LocalStack, StackConfig
from hub.stack.tools import free_port
from tests.fixtures.ledger import province_events
from tests.fixtures.stack import Broker
from tests.fixtures.worker import start_worker, wait_for
from tests.integration.test_faults import Load, judge

pytestmark = pytest.mark.broker

#: what a worker on the cluster is told (and checks at start: hub/engine/cluster.py)
CLUSTER_SETTINGS = {"HUB_REPLICATION_FACTOR": "3", "HUB_MIN_INSYNC_REPLICAS": "2"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    ports = [free_port() for _ in range(6)]
    stack = LocalStack(
        StackConfig(
            state_dir=tmp_path_factory.mktemp("cluster"),
            brokers=3,
            broker_ports=tuple(ports[:3]),
            controller_ports=tuple(ports[3:]),
            registry_port=free_port(),
        )
    )
    try:
        stack.up()
    except StackError as exc:
        stack.down()
        pytest.fail(f"cannot start the three-broker cluster: {exc}", pytrace=False)
    try:
        yield Broker(stack.bootstrap, stack.registry_url, "local-cluster", stack)
    finally:
        stack.down()


def stack_of(broker: Broker) -> LocalStack:
    assert broker.local is not None
    return broker.local


def metadata(broker: Broker) -> object:
    return AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=15)


def leader_of(broker: Broker, topic: str, partition: int) -> int:
    found = metadata(broker).topics[topic].partitions[partition]  # type: ignore[attr-defined]
    return int(found.leader)


def fully_replicated(broker: Broker) -> bool:
    """Every partition of every topic has all three replicas in sync (none offline)."""
    try:
        topics = metadata(broker).topics  # type: ignore[attr-defined]
    except Exception:
        return False
    return all(
        p.leader >= 0 and len(p.isrs) == len(p.replicas) == 3
        for t in topics.values()
        for p in t.partitions.values()
    )


def node(broker: Broker, node_id: int) -> KafkaNode:
    (found,) = [n for n in stack_of(broker).nodes if n.node_id == node_id]
    return found


def bounce(broker: Broker, target: KafkaNode, *, kill: bool, down_s: float = 3.0) -> None:
    """Stop one broker (``kill -9`` or SIGTERM), leave it down, start it on its data, and
    wait until the cluster is fully replicated again."""
    pid = target.process.pid()
    assert pid is not None, f"broker {target.node_id} is not running"
    if kill:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not target.process.alive(), 30, f"broker {target.node_id} to die")
    else:
        target.process.stop(timeout_s=90)
    time.sleep(down_s)
    target.start()
    target.wait_ready(timeout_s=120)
    wait_for(lambda: fully_replicated(broker), 120, "the cluster to be fully replicated")


@dataclass
class Run:
    """One fault run: its names, the worker's data directory, and what the injector did."""

    prefix: str
    app_id: str
    data_dir: Path
    faults: int = 0
    what: str = ""


def under_load(
    cluster: Broker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    inject: Callable[[Load, Run], None],
    *,
    rate: float = 40.0,
) -> None:
    """100 dossier lives (641 events) published at ``rate`` while ``inject`` injects its
    faults (counting them and saying what it did in ``run``), then the judge."""
    tag = uuid.uuid4().hex[:8]
    run = Run(f"c{kind}{tag}.", f"hub-cluster-{kind}-{tag}", tmp_path / "w" / "data")
    events = province_events(100, datetime.now(VN) - timedelta(hours=8))
    worker = start_worker(cluster, tmp_path / "w", prefix=run.prefix, app_id=run.app_id,
                          extra=CLUSTER_SETTINGS)  # fmt: skip
    try:
        with Load(cluster, run.prefix, events, rate=rate) as load:
            inject(load, run)
            load.wait(240)
        assert worker.process.poll() is None, f"the worker died:\n{worker.log_tail()}"
        judge(
            cluster, run.prefix, [worker], load.ledger, faults=run.faults,
            what=f"{run.what} ({load.send_errors} sends retried)", capsys=capsys,
            timeout_s=180,
        )  # fmt: skip
    finally:
        worker.stop(kill=True)


@pytest.mark.timeout(600)  # includes starting the cluster
def test_the_leader_of_input_changelog_and_outbox_killed_three_times_loses_nothing(
    cluster: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def kill_leaders(load: Load, run: Run) -> None:
        killed = []
        for share in (0.2, 0.45, 0.7):
            load.wait_acknowledged(int(len(load.events) * share), 120)
            # whoever leads the input's partition 0 now goes, mid-traffic; the figures line
            # says who led that partition of the input, the changelog and the outbox
            leader = leader_of(cluster, f"{run.prefix}dossier.events", 0)
            killed.append(
                (leader, leader_of(cluster, f"{run.app_id}-dossiers-changelog", 0),
                 leader_of(cluster, f"{run.prefix}portal.outbox", 0))
            )  # fmt: skip
            bounce(cluster, node(cluster, leader), kill=True)
            run.faults += 1
        run.what = f"cluster leader kill -9 x3 (leaders input/changelog/outbox: {killed})"

    under_load(cluster, tmp_path, capsys, "leader", kill_leaders)


@pytest.mark.timeout(600)
def test_a_rolling_restart_of_every_broker_loses_nothing(
    cluster: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def roll(load: Load, run: Run) -> None:
        load.wait_acknowledged(len(load.events) // 6, 120)
        for target in stack_of(cluster).nodes:  # as a rolling upgrade does
            bounce(cluster, target, kill=False, down_s=1.0)
            run.faults += 1
        run.what = "cluster rolling restart x3"

    under_load(cluster, tmp_path, capsys, "rolling", roll, rate=30)


def java_string_hash(text: str) -> int:
    """``String.hashCode()`` of Java: how Kafka places a transactional id."""
    value = 0
    for char in text.encode("utf-16-be").decode("utf-16-be"):
        value = (31 * value + ord(char)) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def coordinator_of(broker: Broker, transactional_id: str) -> int:
    """The broker leading the ``__transaction_state`` partition of ``transactional_id``
    (Kafka: ``abs(hashCode) % partitions``, with ``abs(MIN_VALUE)`` = 0)."""
    topics = metadata(broker).topics  # type: ignore[attr-defined]
    state = topics["__transaction_state"]
    code = java_string_hash(transactional_id)
    number = (0 if code == -(1 << 31) else abs(code)) % len(state.partitions)
    return int(state.partitions[number].leader)


@pytest.mark.timeout(600)
def test_the_transaction_coordinator_killed_during_checkpoints_loses_nothing(
    cluster: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def kill_coordinators(load: Load, run: Run) -> None:
        worker_id = (run.data_dir / "worker-id").read_text().strip()
        coordinators = []
        for share in (0.25, 0.6):
            load.wait_acknowledged(int(len(load.events) * share), 120)
            # the worker checkpoints every 30 ms: the coordinator of its first producer
            # dies with a transaction open or committing
            coordinator = coordinator_of(cluster, f"{run.app_id}-{worker_id}")
            coordinators.append(coordinator)
            bounce(cluster, node(cluster, coordinator), kill=True)
            run.faults += 1
        run.what = f"transaction coordinator kill -9 x2 (brokers {coordinators})"

    under_load(cluster, tmp_path, capsys, "coordinator", kill_coordinators)


@pytest.mark.timeout(600)
def test_a_registry_restart_while_producers_and_the_worker_run_loses_no_schema_id(
    cluster: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = stack_of(cluster).registry

    def restart_registry(load: Load, run: Run) -> None:
        load.wait_acknowledged(len(load.events) // 3, 120)
        registry.process.stop(timeout_s=60)
        time.sleep(3)
        registry.start()
        registry.wait_ready()
        run.faults, run.what = 1, "registry restart"

    # every record read by the judge: each schema id it names resolved after the restart
    under_load(cluster, tmp_path, capsys, "registry", restart_registry)
