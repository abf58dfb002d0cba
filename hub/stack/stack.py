"""The local stack: one Kafka broker and one schema registry, started and stopped together."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from hub.security.acls import REGISTRY_PRINCIPAL, registry_rules
from hub.security.apply import ApplyError, apply_rules
from hub.security.secrets import SecretError
from hub.stack.artifacts import APICURIO_VERSION, KAFKA_VERSION
from hub.stack.errors import StartupError
from hub.stack.kafka import SECURITY_MARKER, KafkaNode, metadata_ok
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


@dataclass
class StackStatus:
    kafka_pid: int | None
    registry_pid: int | None
    bootstrap: str
    registry_url: str

    with_registry: bool = True

    @property
    def running(self) -> bool:
        registry_ok = self.registry_pid is not None or not self.with_registry
        return self.kafka_pid is not None and registry_ok


class LocalStack:
    def __init__(self, config: StackConfig | None = None) -> None:
        c = config or StackConfig()
        if not c.secure and (c.state_dir / SECURITY_MARKER).is_file():
            # Formatted secure once, secure for good: a later plain `up` would otherwise open
            # the same data without authentication, and `status` would wait for a registry.
            c = replace(c, secure=True)
        self.config = c
        self.kafka = KafkaNode(
            c.state_dir,
            port=c.kafka_port,
            controller_port=c.controller_port,
            version=c.kafka_version,
            partitions=c.partitions,
            secure=c.secure,
        )
        self.registry = RegistryNode(
            c.state_dir,
            port=c.registry_port,
            kafka_bootstrap=self.kafka.bootstrap,
            version=c.apicurio_version,
            kafka_user=REGISTRY_PRINCIPAL if c.secure else None,
            kafka_cafile=self.kafka.tls.ca_cert if c.secure else None,
        )

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

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
        if not self.kafka.process.alive() or (
            registry_wanted and not self.registry.process.alive()
        ):
            find_maven()
        if self.kafka.process.alive():
            say(f"kafka already running (pid {self.kafka.process.pid()}) on {self.bootstrap}")
        else:
            require_free_port(self.config.kafka_port, "Kafka", "--kafka-port / HUB_KAFKA_PORT")
            require_free_port(
                self.config.controller_port,
                "the KRaft controller",
                "--controller-port / HUB_CONTROLLER_PORT",
            )
            say(f"resolving Kafka {self.config.kafka_version} from Maven Central (cached after)")
            self.kafka.start()
            say(f"kafka starting on {self.bootstrap}; waiting for a metadata answer")
        self.kafka.wait_ready()
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
        for proc in (self.registry.process, self.kafka.process):
            if proc.stop():
                stopped.append(proc.name)
        return stopped

    def status(self) -> StackStatus:
        return StackStatus(
            kafka_pid=self.kafka.process.pid(),
            registry_pid=self.registry.process.pid(),
            bootstrap=self.bootstrap,
            registry_url=self.registry_url,
            with_registry=self.registry_wanted,
        )

    def kafka_answers(self) -> bool:
        try:
            metadata_ok(self.bootstrap, timeout_s=2, security=self.kafka.client_security())
        except Exception:
            return False
        return True
