"""A secure local broker (SASL/SCRAM over TLS, StandardAuthorizer) enforcing the computed ACLs.

A separate stack on free ports, not the session's plain broker: the other tests rely on
PLAINTEXT and no authorizer. It includes the registry, to show its KafkaSQL storage works
as its own principal under the ACLs.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from hub.consumers import READ_COMMITTED
from hub.security.acls import (
    HUB_PRINCIPAL,
    SecurityLayout,
    agency_inbox,
    agency_prefix,
    agency_principal,
    connector_principal,
)
from hub.security.apply import apply_layout
from hub.security.secrets import read_secret, secret_file
from hub.stack.errors import StackError
from hub.stack.kafka import ADMIN_PRINCIPAL
from hub.stack.stack import LocalStack, StackConfig
from hub.stack.tools import free_port

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "sec."
AGENCY_A = "000.00.09.H40"
AGENCY_B = "000.00.03.H40"
TIMEOUT_MS = 8000


@dataclass(frozen=True)
class SecureBroker:
    bootstrap: str
    state_dir: Path
    stack: LocalStack

    @property
    def ca_cert(self) -> Path:
        return self.stack.kafka.tls.ca_cert

    def creds(self, user: str, password: str | None = None) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(self.ca_cert),
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": user,
            "sasl_plain_password": password or read_secret(secret_file(self.state_dir, user)),
            "request_timeout_ms": TIMEOUT_MS,
        }


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    state_dir = tmp_path_factory.mktemp("secure-stack")
    stack = LocalStack(
        StackConfig(
            state_dir=state_dir,
            kafka_port=free_port(),
            controller_port=free_port(),
            registry_port=free_port(),
            secure=True,
        )
    )
    try:
        stack.up()
    except StackError as exc:
        stack.down()
        pytest.fail(f"cannot start the secure local Kafka: {exc}", pytrace=False)
    try:
        broker = SecureBroker(stack.bootstrap, state_dir, stack)
        layout = SecurityLayout(agencies=[AGENCY_A, AGENCY_B], topic_prefix=PREFIX)
        apply_layout(broker.bootstrap, stack.kafka.client_security(), layout, state_dir)
        _create_topics(broker)
        yield broker
    finally:
        stack.down()


def own_topic(code: str) -> str:
    return f"{agency_prefix(code, PREFIX)}dossier.events"


def _create_topics(broker: SecureBroker) -> None:
    """As the operators would: agencies create no topics themselves."""
    names = [
        own_topic(AGENCY_A),
        own_topic(AGENCY_B),
        agency_inbox(AGENCY_A, PREFIX),
        agency_inbox(AGENCY_B, PREFIX),
    ]
    admin = KafkaAdminClient(**broker.creds(ADMIN_PRINCIPAL))
    try:
        admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        admin.close()
    producer = KafkaProducer(**broker.creds(ADMIN_PRINCIPAL))
    try:
        for code in (AGENCY_A, AGENCY_B):
            producer.send(agency_inbox(code, PREFIX), key=b"d", value=code.encode()).get(10)
    finally:
        producer.close()


def produce(broker: SecureBroker, user: str, topic: str, value: bytes = b"x") -> None:
    producer = KafkaProducer(**broker.creds(user), max_block_ms=TIMEOUT_MS)
    try:
        producer.send(topic, key=b"k", value=value).get(timeout=10)
    finally:
        producer.close(timeout=5)


def consume(
    broker: SecureBroker, user: str, topic: str, group: str, *, assign: bool = False
) -> list[bytes]:
    """Read a topic as ``user``; ``assign``: fetch partition 0 directly instead of subscribing.

    A subscription to a topic the user may not describe only logs an error in kafka-python
    (the topic looks absent); fetching an assigned partition raises the authorization error.
    """
    consumer = KafkaConsumer(
        *([] if assign else [topic]),
        **broker.creds(user),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=TIMEOUT_MS,
        isolation_level=READ_COMMITTED,
    )
    if assign:
        consumer.assign([TopicPartition(topic, 0)])
    try:
        values: list[bytes] = []
        for batch in consumer.poll(timeout_ms=TIMEOUT_MS, max_records=10).values():
            values += [r.value for r in batch]
        return values
    finally:
        consumer.close()


def group_of(code: str) -> str:
    return f"{agency_prefix(code, PREFIX)}reader-{uuid.uuid4().hex[:6]}"


def test_a_client_without_credentials_is_refused(secure: SecureBroker) -> None:
    with pytest.raises(KafkaError):
        admin = KafkaAdminClient(bootstrap_servers=secure.bootstrap, request_timeout_ms=4000)
        admin.close()


def test_sasl_without_tls_is_refused(secure: SecureBroker) -> None:
    """The right password, but the SCRAM exchange in clear: the listener speaks TLS only."""
    plain_sasl = {**secure.creds(agency_principal(AGENCY_A)), "security_protocol": "SASL_PLAINTEXT"}
    del plain_sasl["ssl_cafile"]
    with pytest.raises(KafkaError):
        admin = KafkaAdminClient(**plain_sasl)
        admin.close()


def test_a_client_that_does_not_trust_the_stacks_ca_is_refused(secure: SecureBroker) -> None:
    """Without the CA file the client trusts only the system's authorities, which did not sign
    the broker's certificate: no connection, so no password proof is ever sent."""
    untrusting = dict(secure.creds(agency_principal(AGENCY_A)))
    del untrusting["ssl_cafile"]
    with pytest.raises(KafkaError):
        admin = KafkaAdminClient(**untrusting)
        admin.close()


def tls_handshake(secure: SecureBroker, server_name: str) -> str:
    """A bare TLS handshake with the broker's listener; returns the protocol version."""
    port = int(secure.bootstrap.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(secure.ca_cert))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return str(tls.version())


def test_the_broker_certificate_names_the_address_clients_dial(secure: SecureBroker) -> None:
    assert tls_handshake(secure, "127.0.0.1") in ("TLSv1.2", "TLSv1.3")


def test_a_certificate_for_another_name_is_refused(secure: SecureBroker) -> None:
    """Host name checking is on: the same broker, dialled as a name its certificate does not
    carry, is not trusted (what a client tricked into another host would see)."""
    with pytest.raises(ssl.SSLCertVerificationError, match=r"match|mismatch"):
        tls_handshake(secure, "kafka.elsewhere.invalid")


def test_a_wrong_password_is_refused(secure: SecureBroker) -> None:
    with pytest.raises(KafkaError):
        admin = KafkaAdminClient(**secure.creds(agency_principal(AGENCY_A), "not-the-password"))
        admin.close()


def test_the_right_password_is_accepted(secure: SecureBroker) -> None:
    admin = KafkaAdminClient(**secure.creds(agency_principal(AGENCY_A)))
    try:
        # Describe on its own topics only: what it may not see, it does not even list.
        assert own_topic(AGENCY_A) in admin.list_topics()
        assert own_topic(AGENCY_B) not in admin.list_topics()
    finally:
        admin.close()


def test_an_agency_writes_under_its_own_prefix(secure: SecureBroker) -> None:
    produce(secure, agency_principal(AGENCY_A), own_topic(AGENCY_A), b"mine")
    assert b"mine" in consume(secure, ADMIN_PRINCIPAL, own_topic(AGENCY_A), "ops-check-a")


def test_an_agency_cannot_write_under_another_agencys_prefix(secure: SecureBroker) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        produce(secure, agency_principal(AGENCY_A), own_topic(AGENCY_B))


def test_an_agency_cannot_write_the_shared_dossier_topic(secure: SecureBroker) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        produce(secure, agency_principal(AGENCY_A), f"{PREFIX}dossier.events")


def test_an_agency_reads_its_own_inbox(secure: SecureBroker) -> None:
    got = consume(
        secure, agency_principal(AGENCY_A), agency_inbox(AGENCY_A, PREFIX), group_of(AGENCY_A)
    )
    assert got == [AGENCY_A.encode()]


def test_an_agency_cannot_read_another_agencys_inbox(secure: SecureBroker) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        consume(
            secure,
            agency_principal(AGENCY_A),
            agency_inbox(AGENCY_B, PREFIX),
            group_of(AGENCY_A),
            assign=True,
        )


def test_an_agency_cannot_use_a_group_outside_its_prefix(secure: SecureBroker) -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        consume(
            secure, agency_principal(AGENCY_A), agency_inbox(AGENCY_A, PREFIX), group_of(AGENCY_B)
        )


def test_the_hub_reads_and_writes_its_topics(secure: SecureBroker) -> None:
    # Not an input of the worker started below: a raw record there would be a dead letter and
    # an auto-created topic would have the broker's partition count, not the worker's.
    topic = f"{PREFIX}dossier.alerts"
    produce(secure, HUB_PRINCIPAL, topic, b"event")  # CREATE: the topic does not exist yet
    assert b"event" in consume(secure, HUB_PRINCIPAL, topic, "nghean-hub")
    produce(secure, HUB_PRINCIPAL, agency_inbox(AGENCY_A, PREFIX), b"transfer")


def test_the_hub_cannot_write_an_agencys_own_topics(secure: SecureBroker) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        produce(secure, HUB_PRINCIPAL, own_topic(AGENCY_A))


def test_passwords_live_in_private_files(secure: SecureBroker) -> None:
    for user in (ADMIN_PRINCIPAL, HUB_PRINCIPAL, agency_principal(AGENCY_A)):
        mode = stat.S_IMODE(secret_file(secure.state_dir, user).stat().st_mode)
        assert mode == 0o600, user
    assert stat.S_IMODE((secure.state_dir / "kafka-server.properties").stat().st_mode) == 0o600
    tls = secure.stack.kafka.tls
    for private in (tls.ca_key, tls.keystore, tls.keystore_password_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private.name


def test_apply_acls_command_prints_principals_and_no_password(secure: SecureBroker) -> None:
    new_agency = "000.00.05.H40"
    proc = subprocess.run(
        [
            sys.executable, "-m", "hub", "security", "apply-acls",
            "--state-dir", str(secure.state_dir),
            "--bootstrap", secure.bootstrap,
            "--agency", new_agency,
            "--topic-prefix", PREFIX,
        ],
        cwd=ROOT,
        env={**os.environ, "HUB_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"principal User:{agency_principal(new_agency)}" in proc.stdout
    output = proc.stdout + proc.stderr
    for file in (secure.state_dir / "secrets").iterdir():
        assert read_secret(file) not in output, file.name
    # The new agency's fresh credentials work against the broker.
    admin = KafkaAdminClient(**secure.creds(agency_principal(new_agency)))
    admin.close()


def test_the_registry_stores_schemas_through_its_own_principal(secure: SecureBroker) -> None:
    schema = {"type": "record", "name": "Probe", "fields": [{"name": "a", "type": "string"}]}
    request = urllib.request.Request(
        f"{secure.stack.registry_url}/subjects/probe-value/versions",
        data=json.dumps({"schema": json.dumps(schema)}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        schema_id = json.load(resp)["id"]
    # Stored in Kafka, not only in memory: the journal topic holds it, readable by admin.
    assert schema_id >= 1
    journal = consume(secure, ADMIN_PRINCIPAL, "kafkasql-journal", "ops-check-journal")
    assert any(b"Probe" in (v or b"") for v in journal)


def read_all(
    broker: SecureBroker, user: str, topic: str, group: str, expect: int, timeout_s: float = 150
) -> list[bytes]:
    """Avro records (magic byte 0) of ``topic`` as ``user``, once ``expect`` are there."""
    consumer = KafkaConsumer(
        topic,
        **broker.creds(user),
        group_id=group,
        auto_offset_reset="earliest",
        isolation_level=READ_COMMITTED,
    )
    found: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                found += [r.value for r in batch if r.value and r.value[:1] == b"\x00"]
        return found
    finally:
        consumer.close()


def test_the_worker_and_connectors_run_as_their_own_principals(
    secure: SecureBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end under the ACLs: events in as the simulator connector, the hub worker as
    User:hub, the portal feed read as the portal sink, the transfer read by the agency."""
    from connectors.publisher import EventPublisher
    from connectors.scenarios import VN, dossier_code, dossier_life
    from hub.security import environment
    from tests.fixtures.stack import Broker
    from tests.fixtures.worker import start_worker

    registry_url = secure.stack.registry_url
    sasl = {
        "HUB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "HUB_KAFKA_SSL_CAFILE": str(secure.ca_cert),
        "HUB_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    }
    worker = start_worker(
        Broker(secure.bootstrap, registry_url, "local-stack"),
        tmp_path / "worker",
        prefix=PREFIX,
        app_id="nghean-hub",
        extra={
            **sasl,
            "HUB_KAFKA_SASL_USERNAME": HUB_PRINCIPAL,
            "HUB_KAFKA_SASL_PASSWORD_FILE": str(secret_file(secure.state_dir, HUB_PRINCIPAL)),
        },
    )
    try:
        simulator = connector_principal("simulator")
        for key, value in {
            **sasl,
            "HUB_KAFKA_SASL_USERNAME": simulator,
            "HUB_KAFKA_SASL_PASSWORD_FILE": str(secret_file(secure.state_dir, simulator)),
        }.items():
            monkeypatch.setenv(key, value)
        environment.env_security.cache_clear()  # this process's clients: the simulator's identity
        try:
            publisher = EventPublisher(secure.bootstrap, registry_url, topic_prefix=PREFIX)
        finally:
            environment.env_security.cache_clear()
        start = datetime.now(VN) - timedelta(hours=6)
        code = dossier_code(AGENCY_B, start, 1)
        for event in dossier_life(code, AGENCY_B, "2.000488", start, transfer_to=AGENCY_A):
            assert publisher.publish(event) == []
        publisher.close()

        portal = connector_principal("national-portal")
        outbox = read_all(secure, portal, f"{PREFIX}portal.outbox", f"{PREFIX}portal-sink", 7)
        assert len(outbox) >= 7, worker.log_tail()
        inbox = read_all(
            secure,
            agency_principal(AGENCY_A),
            agency_inbox(AGENCY_A, PREFIX),
            group_of(AGENCY_A),
            1,
        )
        assert len(inbox) == 1 and code.encode() in inbox[0]
    finally:
        worker.stop()


def test_no_password_reaches_the_broker_logs(secure: SecureBroker) -> None:
    secrets = [read_secret(f) for f in (secure.state_dir / "secrets").iterdir()]
    secrets.append(secure.stack.kafka.tls.keystore_password())
    logs = list((secure.state_dir / "logs").iterdir())
    assert logs
    for log in logs:
        text = log.read_text(errors="replace")
        assert not [s for s in secrets if s in text], log.name
