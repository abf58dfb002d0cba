"""One Apache Kafka broker in KRaft combined mode (broker and controller in one JVM)."""

from __future__ import annotations

import base64
import time
import uuid
from importlib import resources
from pathlib import Path

from hub.stack.artifacts import kafka_classpath
from hub.stack.errors import StackError, StartupError
from hub.stack.process import ManagedProcess
from hub.stack.tools import find_java, java_env

__all__ = ["KafkaNode"]

_SERVER_PROPERTIES = """\
# Written by `hub stack`; edits are overwritten on the next `up`.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}
num.partitions={partitions}
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# One broker: no reason to wait for more members before the first rebalance.
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=-1
"""


class KafkaNode:
    """Configures, formats, starts and probes the local broker."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int,
        controller_port: int,
        version: str,
        partitions: int = 6,
        heap: str = "1g",
    ) -> None:
        self.state_dir = state_dir
        self.port = port
        self.controller_port = controller_port
        self.version = version
        self.partitions = partitions
        self.heap = heap
        self.process = ManagedProcess("kafka", state_dir)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "kafka-data"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "kafka-server.properties"

    def _write_config(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            _SERVER_PROPERTIES.format(
                port=self.port,
                controller_port=self.controller_port,
                data_dir=self.data_dir,
                partitions=self.partitions,
            )
        )
        log4j = self.state_dir / "kafka-log4j2.xml"
        log4j.write_text(resources.files("hub.stack").joinpath("templates/log4j2.xml").read_text())

    def _java_argv(self, classpath: str, main: str, *args: str) -> list[str]:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return [
            str(find_java()),
            "-Xms256m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.state_dir / 'kafka-log4j2.xml'}",
            f"-Dkafka.logs.dir={logs}",
            self.process.marker,
            "-cp",
            classpath,
            main,
            *args,
        ]

    def _format_if_new(self, classpath: str) -> None:
        """Format storage once; later starts reuse it so data survives restarts."""
        if (self.data_dir / "meta.properties").is_file():
            return
        import subprocess

        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        argv = self._java_argv(
            classpath,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",  # ids may start with '-': keep it one argument
            "-c",
            str(self.config_file),
        )
        # The marker would make the formatter look like the broker; drop it for this child.
        argv.remove(self.process.marker)
        proc = subprocess.run(
            argv, env=java_env(), capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            raise StartupError(f"formatting Kafka storage in {self.data_dir} failed: {last[0]}")

    def start(self) -> None:
        classpath = kafka_classpath(self.version)
        self._write_config()
        self._format_if_new(classpath)
        argv = self._java_argv(classpath, "kafka.Kafka", str(self.config_file))
        self.process.start(argv, env=java_env(), cwd=self.state_dir)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Ready means a metadata request answered, not merely that the port is open."""
        deadline = time.monotonic() + timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise StartupError(
                    f"Kafka exited while starting; see {self.process.log_file} and "
                    f"{self.state_dir / 'logs' / 'server.log'}:\n{self.process.tail(8)}"
                )
            try:
                metadata_ok(self.bootstrap)
                return
            except StackError as exc:
                last_error = str(exc)
            time.sleep(0.5)
        raise StartupError(
            f"Kafka on {self.bootstrap} not ready after {timeout_s:.0f}s ({last_error})"
        )


def metadata_ok(bootstrap: str, timeout_s: float = 5.0) -> list[str]:
    """Ask the broker for cluster metadata; return its topic names or raise StackError."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
            client_id="hub-stack-probe",
        )
    except (KafkaError, OSError, ValueError) as exc:
        raise StackError(f"{type(exc).__name__}: {exc}") from exc
    try:
        return list(admin.list_topics())
    except (KafkaError, OSError) as exc:
        raise StackError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()
