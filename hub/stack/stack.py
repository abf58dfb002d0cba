"""The local stack: Kafka (one broker, or a cluster of three) and one schema registry, started
and stopped together.

A cluster (``brokers=3``) runs three KRaft nodes, each broker and controller in one JVM with
its own ports and data directory (``<state dir>/kafka-<id>``), formatted with one cluster id;
every topic is replicated on three brokers with ``min.insync.replicas=2`` and no unclean
leader election (``hub.stack.kafka``). The node count is written in the state directory, so
``status``, ``logs`` and ``down`` know every node without being told again."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from hub.security.acls import REGISTRY_PRINCIPAL, registry_rules
from hub.security.apply import ApplyError, apply_rules
from hub.security.secrets import SecretError
from hub.stack.artifacts import APICURIO_VERSION, KAFKA_VERSION
from hub.stack.errors import StackError, StartupError
from hub.stack.kafka import SECURITY_MARKER, KafkaNode, metadata_ok, new_cluster_id
from hub.stack.registry import RegistryNode
from hub.stack.tools import find_java, find_maven, require_free_port

__all__ = ["LocalStack", "StackConfig", "default_state_dir"]


def default_state_dir() -> Path:
    return Path(os.environ.get("HUB_STATE_DIR", ".hub/stack")).resolve()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class StackConfig:
    state_dir: Path = field(default_factory=default_state_dir)
    kafka_port: int = field(default_factory=lambda: _env_int("HUB_KAFKA_PORT", 9092))
    controller_port: int = field(default_factory=lambda: _env_int("HUB_CONTROLLER_PORT", 9093))
    registry_port: int = field(default_factory=lambda: _env_int("HUB_REGISTRY_PORT", 8081))
    kafka_version: str = field(
        default_factory=lambda: os.environ.get("HUB_KAFKA_VERSION", KAFKA_VERSION)
    )
    apicurio_version: str = field(
        default_factory=lambda: os.environ.get("HUB_APICURIO_VERSION", APICURIO_VERSION)
    )
    partitions: int = 6
    #: opt-in SASL/SCRAM over TLS + StandardAuthorizer; the CLI also honours
    #: HUB_KAFKA_SECURITY=sasl,
    #: programmatic users (tests, demo) get a plain broker unless they ask
    secure: bool = False
    #: False: Kafka only (tests of the broker itself need no schema registry)
    with_registry: bool = True
    #: Kafka nodes: 1, or 3 for a replicated cluster (``$HUB_STACK_BROKERS``)
    brokers: int = field(default_factory=lambda: _env_int("HUB_STACK_BROKERS", 1))
    #: a cluster's ports; empty: kafka_port + 2i and controller_port + 2i for node i (0-based)
    broker_ports: tuple[int, ...] = ()
    controller_ports: tuple[int, ...] = ()

    def ports(self) -> list[tuple[int, int]]:
        """(broker port, controller port) of each node."""
        if self.brokers == 1:
            return [(self.kafka_port, self.controller_port)]
        brokers = self.broker_ports or tuple(self.kafka_port + 2 * i for i in range(self.brokers))
        controllers = self.controller_ports or tuple(
            self.controller_port + 2 * i for i in range(self.brokers)
        )
        if len(brokers) != self.brokers or len(controllers) != self.brokers:
            raise StackError(f"{self.brokers} brokers need {self.brokers} ports of each kind")
        return list(zip(brokers, controllers, strict=True))


#: the state directory's record of its cluster: node count and each node's ports
BROKERS_FILE = "kafka-cluster.json"
CLUSTER_ID_FILE = "kafka-cluster-id"


@dataclass
class StackStatus:
    kafka_pid: int | None
    registry_pid: int | None
    bootstrap: str
    registry_url: str

    with_registry: bool = True
    #: every Kafka node's (name, pid or None, bootstrap address)
    nodes: list[tuple[str, int | None, str]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        registry_ok = self.registry_pid is not None or not self.with_registry
        kafka_ok = all(pid is not None for _, pid, _ in self.nodes) if self.nodes else (
            self.kafka_pid is not None
        )  # fmt: skip
        return kafka_ok and registry_ok


def _recorded(state_dir: Path, c: StackConfig) -> StackConfig:
    """``c`` with the cluster the state directory was made with, when it records one (its
    node count and ports: the nodes' data name their quorum's ports); a different count
    asked for is refused (the data of one layout cannot serve the other)."""
    record = state_dir / BROKERS_FILE
    if record.is_file():
        made = json.loads(record.read_text())
        brokers, ports = int(made["brokers"]), [tuple(p) for p in made["ports"]]
        if c.brokers not in (1, brokers):
            raise StackError(
                f"{state_dir} holds a {brokers}-broker cluster; use another --state-dir for "
                f"{c.brokers} brokers"
            )
        return replace(
            c,
            brokers=brokers,
            broker_ports=tuple(int(b) for b, _ in ports),
            controller_ports=tuple(int(k) for _, k in ports),
        )
    if c.brokers > 1 and (state_dir / "kafka-data").is_dir():
        raise StackError(
            f"{state_dir} holds a one-broker stack; use another --state-dir for {c.brokers} brokers"
        )
    return c


class LocalStack:
    def __init__(self, config: StackConfig | None = None) -> None:
        c = config or StackConfig()
        if not c.secure and (c.state_dir / SECURITY_MARKER).is_file():
            # Formatted secure once, secure for good: a later plain `up` would otherwise open
            # the same data without authentication, and `status` would wait for a registry.
            c = replace(c, secure=True)
        c = _recorded(c.state_dir, c)
        brokers = c.brokers
        if brokers not in (1, 3):
            raise StackError(f"--brokers must be 1 or 3, not {brokers}")
        if brokers > 1 and c.secure:
            raise StackError("--secure runs one broker; a secure cluster is not built yet")
        self.config = c
        if brokers == 1:
            self.nodes = [
                KafkaNode(
                    c.state_dir,
                    port=c.kafka_port,
                    controller_port=c.controller_port,
                    version=c.kafka_version,
                    partitions=c.partitions,
                    secure=c.secure,
                )
            ]
        else:
            ports = c.ports()
            voters = ",".join(
                f"{i + 1}@127.0.0.1:{controller}" for i, (_, controller) in enumerate(ports)
            )
            self.nodes = [
                KafkaNode(
                    c.state_dir / f"kafka-{i + 1}",
                    port=port,
                    controller_port=controller,
                    version=c.kafka_version,
                    partitions=c.partitions,
                    heap="768m",
                    node_id=i + 1,
                    voters=voters,
                    replication=3,
                    min_isr=2,
                    cluster_id=self._cluster_id(),
                )
                for i, (port, controller) in enumerate(ports)
            ]
        #: the first node (the only one of a one-broker stack)
        self.kafka = self.nodes[0]
        self.registry = RegistryNode(
            c.state_dir,
            port=c.registry_port,
            kafka_bootstrap=",".join(node.bootstrap for node in self.nodes),
            version=c.apicurio_version,
            kafka_user=REGISTRY_PRINCIPAL if c.secure else None,
            kafka_cafile=self.kafka.tls.ca_cert if c.secure else None,
        )

    def _cluster_id(self) -> str:
        """The cluster's id, made once and kept in the state directory."""
        path = self.config.state_dir / CLUSTER_ID_FILE
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def registry_wanted(self) -> bool:
        return self.config.with_registry

    def _prepare_registry_principal(self) -> None:
        """Secure mode: the registry's SCRAM user and ACLs must exist before it connects."""
        try:
            apply_rules(
                self.bootstrap,
                self.kafka.client_security(),
                registry_rules(),
                self.config.state_dir,
            )
        except (ApplyError, SecretError) as exc:
            raise StartupError(f"setting up the registry's Kafka principal: {exc}") from exc

    @property
    def registry_url(self) -> str:
        return self.registry.ccompat_url

    def up(self, progress: Callable[[str], None] | None = None) -> StackStatus:
        """Start whatever is not running; harmless when everything already is."""
        say = progress or (lambda _msg: None)
        find_java()
        registry_wanted = self.registry_wanted
        if not all(node.process.alive() for node in self.nodes) or (
            registry_wanted and not self.registry.process.alive()
        ):
            find_maven()
        cluster = len(self.nodes) > 1
        if cluster:
            record = {"brokers": len(self.nodes), "ports": self.config.ports()}
            (self.config.state_dir / BROKERS_FILE).write_text(json.dumps(record) + "\n")
        for node in self.nodes:
            name = f"Kafka node {node.node_id}" if cluster else "Kafka"
            if node.process.alive():
                say(f"{name} already running (pid {node.process.pid()}) on {node.bootstrap}")
                continue
            require_free_port(node.port, name, "--kafka-port / HUB_KAFKA_PORT")
            require_free_port(
                node.controller_port,
                f"the KRaft controller of {name}",
                "--controller-port / HUB_CONTROLLER_PORT",
            )
            say(f"resolving Kafka {self.config.kafka_version} from Maven Central (cached after)")
            node.start()
            say(f"{name} starting on {node.bootstrap}")
        # a quorum answers once most of its voters are up: start them all, then wait
        say("waiting for a metadata answer from every node")
        for node in self.nodes:
            node.wait_ready()
        if not registry_wanted:
            return self.status()
        if self.registry.process.alive():
            pid = self.registry.process.pid()
            say(f"registry already running (pid {pid}) on {self.registry.url}")
        else:
            require_free_port(
                self.config.registry_port,
                "the schema registry",
                "--registry-port / HUB_REGISTRY_PORT",
            )
            say(f"resolving Apicurio Registry {self.config.apicurio_version} (cached after)")
            if self.config.secure:
                self._prepare_registry_principal()
            self.registry.start()
            say(f"registry starting on {self.registry.url}; waiting for /health/ready")
        self.registry.wait_ready()
        return self.status()

    def down(self) -> list[str]:
        """Stop exactly the processes this stack started (registry first: it uses Kafka)."""
        stopped = []
        if self.registry.process.stop():
            stopped.append(self.registry.process.name)
        for node in reversed(self.nodes):
            if node.process.stop():
                stopped.append(self.node_name(node))
        return stopped

    def node_name(self, node: KafkaNode) -> str:
        return f"kafka-{node.node_id}" if len(self.nodes) > 1 else "kafka"

    def status(self) -> StackStatus:
        return StackStatus(
            kafka_pid=self.kafka.process.pid(),
            registry_pid=self.registry.process.pid(),
            bootstrap=self.bootstrap,
            registry_url=self.registry_url,
            with_registry=self.registry_wanted,
            nodes=[(self.node_name(n), n.process.pid(), n.bootstrap) for n in self.nodes],
        )

    def kafka_answers(self) -> bool:
        try:
            metadata_ok(self.bootstrap, timeout_s=2, security=self.kafka.client_security())
        except Exception:
            return False
        return True
