"""Apicurio Registry 3.x from its runnable distribution, storing schemas in Kafka.

Storage is KafkaSQL (the ``kafkasql-journal`` topic on our own broker), not the default
in-memory store: records already in Kafka carry schema ids, so a registry that forgot its
schemas on restart would leave those records undecodable or, worse, decodable with the
wrong schema once ids were handed out again. With KafkaSQL the registry's state lives and
survives exactly as long as the broker's data does.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from hub.security.acls import REGISTRY_GROUP_PREFIX
from hub.security.secrets import read_secret, secret_file
from hub.stack.artifacts import registry_runner
from hub.stack.errors import JavaNotFoundError, StartupError
from hub.stack.process import ManagedProcess
from hub.stack.tools import find_java, java_env

__all__ = ["RegistryNode", "registry_java"]


def registry_java() -> Path:
    """The JVM for the registry: ``$HUB_REGISTRY_JAVA_HOME/bin/java`` if set (Apicurio 3.1+
    needs Java 21), else the same Java as the broker."""
    home = os.environ.get("HUB_REGISTRY_JAVA_HOME")
    if not home:
        return find_java()
    java = Path(home) / "bin" / "java"
    if not java.is_file():
        raise JavaNotFoundError(f"HUB_REGISTRY_JAVA_HOME={home} has no bin/java")
    return java


class RegistryNode:
    def __init__(
        self,
        state_dir: Path,
        *,
        port: int,
        kafka_bootstrap: str,
        version: str,
        heap: str = "512m",
        kafka_user: str | None = None,
        kafka_cafile: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.port = port
        self.kafka_bootstrap = kafka_bootstrap
        self.version = version
        self.heap = heap
        #: secure mode: authenticate to Kafka as this SCRAM user (password in its secret file)
        self.kafka_user = kafka_user
        #: secure mode: the CA certificate (PEM) the broker's TLS certificate is checked with
        self.kafka_cafile = kafka_cafile
        self.process = ManagedProcess("registry", state_dir)

    @property
    def kafka_config_file(self) -> Path:
        return self.state_dir / "registry-kafka.properties"

    def _write_kafka_config(self) -> Path:
        """SASL_SSL settings for every Kafka client of the registry, in a 0600 file.

        ``apicurio.kafka.common.*`` is passed to the journal producer, consumer and admin
        alike. A file (named by ``quarkus.config.locations``) rather than -D options keeps
        the password out of the process list.
        """
        assert self.kafka_user is not None and self.kafka_cafile is not None
        password = read_secret(secret_file(self.state_dir, self.kafka_user))
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{self.kafka_user}" password="{password}";'
        )
        text = (
            "apicurio.kafka.common.security.protocol=SASL_SSL\n"
            "apicurio.kafka.common.ssl.truststore.type=PEM\n"
            f"apicurio.kafka.common.ssl.truststore.location={self.kafka_cafile}\n"
            "apicurio.kafka.common.ssl.endpoint.identification.algorithm=https\n"
            "apicurio.kafka.common.sasl.mechanism=SCRAM-SHA-512\n"
            f"apicurio.kafka.common.sasl.jaas.config={jaas}\n"
            # Its consumer groups must fall under the registry's prefixed group ACL.
            f"apicurio.kafkasql.consumer.group-prefix={REGISTRY_GROUP_PREFIX}\n"
        )
        path = self.kafka_config_file
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ccompat_url(self) -> str:
        """Base URL of the Confluent-compatible API that every client uses."""
        return f"{self.url}/apis/ccompat/v7"

    def start(self) -> None:
        runner = registry_runner(self.version)
        argv = [
            str(registry_java()),
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            self.process.marker,
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.http.host=127.0.0.1",
            "-Dquarkus.management.enabled=false",
            "-Dapicurio.storage.kind=kafkasql",
            f"-Dapicurio.kafkasql.bootstrap.servers={self.kafka_bootstrap}",
            "-Dquarkus.log.console.json=false",
        ]
        if self.kafka_user is not None:
            argv.append(f"-Dquarkus.config.locations={self._write_kafka_config().as_uri()}")
        argv += ["-jar", str(runner)]
        self.process.start(argv, env=java_env(), cwd=runner.parent)

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise StartupError(
                    f"the schema registry exited while starting; see {self.process.log_file}:\n"
                    f"{self.process.tail(8)}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=3) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(0.5)
        raise StartupError(
            f"schema registry on {self.url} not ready after {timeout_s:.0f}s ({last_error})"
        )
