"""One Apache Kafka broker in KRaft combined mode (broker and controller in one JVM)."""

from __future__ import annotations

import base64
import os
import re
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from hub.security.certs import BrokerTls, CertError, ensure_broker_tls
from hub.security.secrets import SecretError, ensure_secret
from hub.stack.artifacts import kafka_classpath
from hub.stack.errors import StackError, StartupError
from hub.stack.process import ManagedProcess
from hub.stack.tools import find_java, java_env

__all__ = [
    "ADMIN_PRINCIPAL",
    "SECURITY_MARKER",
    "TLS_DIR",
    "KafkaNode",
    "admin_security",
    "new_cluster_id",
    "secure_properties",
    "server_properties",
]

#: file in the state dir saying the storage holds the admin's SCRAM credential
SECURITY_MARKER = "kafka-secure"

#: the secure stack's certificate authority and broker keystore, under the state dir
TLS_DIR = "tls"

#: the broker's own principal in secure mode, also the only super user (tooling, ACL setup)
ADMIN_PRINCIPAL = "admin"

_SERVER_PROPERTIES = """\
# Written by `hub stack`; edits are overwritten on the next `up`.
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}
num.partitions={partitions}
# Every topic (the hub's, the changelogs, the registry's journal) and the internal ones are
# replicated on {replication} broker(s); a write is acknowledged (acks=all) once {min_isr} hold it,
# and a replica that fell behind never becomes leader (no acknowledged record lost).
default.replication.factor={replication}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={replication}
offsets.topic.num.partitions=12
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr={min_isr}
share.coordinator.state.topic.replication.factor={replication}
share.coordinator.state.topic.min.isr={min_isr}
unclean.leader.election.enable=false
# A local stack: no reason to wait for more members before the first rebalance.
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=-1
"""

# Secure mode (opt-in, `hub stack up --secure`): clients reach a SASL_SSL listener, so TLS
# protects the SCRAM-SHA-512 exchange and every record, and every operation goes through
# KRaft's StandardAuthorizer with deny-by-default. The broker presents a certificate issued by
# the stack's own authority (hub/security/certs.py); clients verify it against ca.pem and
# check that it names 127.0.0.1. The broker's own inter-broker client uses the same listener.
# The controller listener (loopback only, reached by nothing but this JVM) uses SASL/PLAIN
# with a static JAAS user instead of PLAINTEXT: with PLAINTEXT the broker would reach its
# controller as User:ANONYMOUS, which would then have to be a super user. KRaft does not offer
# SCRAM on the controller listener (SCRAM credentials live in the metadata log the controller
# serves).
_SECURE_OVERRIDES = {
    "listeners": "SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
    "advertised.listeners": "SASL_SSL://127.0.0.1:{port}",
    "inter.broker.listener.name": "SASL_SSL",
    "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
}
_SECURE_EXTRA = """\
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\\
  org.apache.kafka.common.security.scram.ScramLoginModule required \\
  username="{admin}" password="{password}";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=\\
  org.apache.kafka.common.security.plain.PlainLoginModule required \\
  username="{admin}" password="{password}" user_{admin}="{password}";
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={keystore_password}
ssl.key.password={keystore_password}
ssl.truststore.type=PEM
ssl.truststore.location={ca_cert}
ssl.endpoint.identification.algorithm=https
ssl.enabled.protocols=TLSv1.3,TLSv1.2
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{admin}
allow.everyone.if.no.acl.found=false
"""

_JAAS_UNSAFE = re.compile(r'["\\\s;,=\[\]]')


def secure_properties(
    plain: str, *, port: int, controller_port: int, password: str, tls: BrokerTls
) -> str:
    """The plain broker properties turned into the secure variant (same keys otherwise)."""
    if _JAAS_UNSAFE.search(password):
        # The password sits inside a quoted JAAS string and kafka-storage's `[name=,password=]`
        # list; any of these characters would break (or inject into) one of them.
        raise StackError(
            "the Kafka admin password must not contain quotes, backslashes, blanks or ;,=[]"
        )
    overrides = {
        key: value.format(port=port, controller_port=controller_port)
        for key, value in _SECURE_OVERRIDES.items()
    }
    lines = []
    for line in plain.splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={overrides[key]}" if key in overrides else line)
    extra = _SECURE_EXTRA.format(
        admin=ADMIN_PRINCIPAL,
        password=password,
        keystore=tls.keystore,
        keystore_password=tls.keystore_password(),
        ca_cert=tls.ca_cert,
    )
    return "\n".join(lines) + "\n" + extra


def admin_security(password: str, ca_cert: Path) -> dict[str, Any]:
    """kafka-python keyword arguments for the secure stack's admin (over TLS)."""
    return {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": str(ca_cert),
        "ssl_check_hostname": True,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": ADMIN_PRINCIPAL,
        "sasl_plain_password": password,
    }


def server_properties(
    *,
    port: int,
    controller_port: int,
    data_dir: Path | str,
    partitions: int,
    node_id: int = 1,
    voters: str | None = None,
    replication: int = 1,
    min_isr: int = 1,
) -> str:
    """The plain broker properties of one node (``voters``: the quorum; default itself)."""
    return _SERVER_PROPERTIES.format(
        port=port,
        controller_port=controller_port,
        data_dir=data_dir,
        partitions=partitions,
        node_id=node_id,
        voters=voters or f"{node_id}@127.0.0.1:{controller_port}",
        replication=replication,
        min_isr=min_isr,
    )


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


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
        secure: bool = False,
        node_id: int = 1,
        voters: str | None = None,
        replication: int = 1,
        min_isr: int = 1,
        cluster_id: str | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.port = port
        self.controller_port = controller_port
        self.node_id = node_id
        #: the KRaft quorum, ``id@host:port,...``; one node: itself
        self.voters = voters or f"{node_id}@127.0.0.1:{controller_port}"
        self.replication = replication
        self.min_isr = min_isr
        #: every node of a cluster formats its storage with the same id
        self.cluster_id = cluster_id
        self.version = version
        self.partitions = partitions
        self.heap = heap
        self.secure = secure
        self.process = ManagedProcess("kafka", state_dir)

    def admin_password(self) -> str:
        """The admin's password (secure mode): the secret file's, else env or a new one."""
        try:
            return ensure_secret(
                self.state_dir, ADMIN_PRINCIPAL, os.environ.get("HUB_KAFKA_ADMIN_PASSWORD")
            )
        except (SecretError, OSError) as exc:
            raise StartupError(f"Kafka admin secret: {exc}") from exc

    @property
    def tls(self) -> BrokerTls:
        """The authority and keystore of secure mode (made at the first secure start)."""
        return BrokerTls(self.state_dir / TLS_DIR)

    def client_security(self) -> dict[str, Any]:
        """kafka-python keyword arguments for the admin (empty in plain mode)."""
        if not self.secure:
            return {}
        return admin_security(self.admin_password(), self.tls.ca_cert)

    @property
    def security_marker(self) -> Path:
        """Present when the storage was formatted with the admin's SCRAM credential."""
        return self.state_dir / SECURITY_MARKER

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
        plain = server_properties(
            port=self.port,
            controller_port=self.controller_port,
            data_dir=self.data_dir,
            partitions=self.partitions,
            node_id=self.node_id,
            voters=self.voters,
            replication=self.replication,
            min_isr=self.min_isr,
        )
        if not self.secure:
            self.config_file.write_text(plain)
        else:
            try:
                tls = ensure_broker_tls(self.tls.directory)
            except CertError as exc:
                raise StartupError(f"the broker's TLS certificate: {exc}") from exc
            text = secure_properties(
                plain,
                port=self.port,
                controller_port=self.controller_port,
                password=self.admin_password(),
                tls=tls,
            )
            # The file holds the admin's password: create it private, never world-readable.
            self.config_file.unlink(missing_ok=True)
            fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
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
            if self.secure and not self.security_marker.is_file():
                # No admin SCRAM credential in this metadata log: the broker could not even
                # authenticate to itself. Say so instead of failing obscurely later.
                raise StartupError(
                    f"{self.data_dir} was formatted without security; "
                    "use another --state-dir for --secure"
                )
            return
        import subprocess

        cluster_id = self.cluster_id or new_cluster_id()
        argv = self._java_argv(
            classpath,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",  # ids may start with '-': keep it one argument
            "-c",
            str(self.config_file),
        )
        if self.secure:
            # The admin's SCRAM credential must exist before the broker starts: the broker
            # itself authenticates as admin on its inter-broker listener. kafka-storage takes
            # it only as an argument, so for the seconds formatting lasts the password is in
            # this child's command line (visible to local users of this machine); the broker
            # and everything after read it from 0600 files.
            argv.append(
                f"--add-scram=SCRAM-SHA-512=[name={ADMIN_PRINCIPAL},"
                f"password={self.admin_password()}]"
            )
        # The marker would make the formatter look like the broker; drop it for this child.
        argv.remove(self.process.marker)
        proc = subprocess.run(
            argv, env=java_env(), capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            line = last[0]
            if self.secure:  # a parse error could echo the --add-scram argument back
                line = line.replace(self.admin_password(), "****")
            raise StartupError(f"formatting Kafka storage in {self.data_dir} failed: {line}")
        if self.secure:
            self.security_marker.write_text("SASL_SSL SCRAM-SHA-512\n")

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
                metadata_ok(self.bootstrap, security=self.client_security())
                return
            except StackError as exc:
                last_error = str(exc)
            time.sleep(0.5)
        raise StartupError(
            f"Kafka on {self.bootstrap} not ready after {timeout_s:.0f}s ({last_error})"
        )


def metadata_ok(
    bootstrap: str, timeout_s: float = 5.0, security: dict[str, Any] | None = None
) -> list[str]:
    """Ask the broker for cluster metadata; return its topic names or raise StackError."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
            client_id="hub-stack-probe",
            **(security or {}),
        )
    except (KafkaError, OSError, ValueError) as exc:
        raise StackError(f"{type(exc).__name__}: {exc}") from exc
    try:
        return list(admin.list_topics())
    except (KafkaError, OSError) as exc:
        raise StackError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()
