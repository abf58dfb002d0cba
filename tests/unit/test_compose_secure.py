"""docker-compose.secure.yml says what the local secure stack does (it cannot be run here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hub.security.acls import SecurityLayout, principals
from hub.security.certs import BrokerTls
from hub.security.secrets import ensure_secret, secret_file
from hub.stack.kafka import secure_properties, server_properties

ROOT = Path(__file__).resolve().parents[2]
SECURE = ROOT / "docker-compose.secure.yml"
BASE = ROOT / "docker-compose.yml"


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


TLS_MOUNT = Path("/run/hub-tls")


def local_secure_properties(tmp_path: Path) -> dict[str, str]:
    plain = server_properties(port=1, controller_port=2, data_dir="/d", partitions=6)
    tls = BrokerTls(tmp_path)
    ensure_secret(tmp_path, "ks", "ks-password")
    secret_file(tmp_path, "ks").rename(tls.keystore_password_file)
    text = secure_properties(plain, port=1, controller_port=2, password="x", tls=tls)
    text = text.replace("\\\n", "")
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


def env_key(prop: str) -> str:
    return "KAFKA_" + prop.replace(".", "_").upper()


def test_the_authorizer_and_tls_settings_match_the_local_stack(tmp_path: Path) -> None:
    env = load(SECURE)["services"]["kafka"]["environment"]
    local = local_secure_properties(tmp_path)
    for prop in (
        "authorizer.class.name",
        "super.users",
        "allow.everyone.if.no.acl.found",
        "ssl.keystore.type",
        "ssl.truststore.type",
        "ssl.endpoint.identification.algorithm",
        "ssl.client.auth",
    ):
        assert env[env_key(prop)] == local[prop], prop
    # the files are the ones `hub security make-certs` writes, in the mounted volume
    tls = BrokerTls(TLS_MOUNT)
    assert env["KAFKA_SSL_KEYSTORE_LOCATION"] == str(tls.keystore)
    assert env["KAFKA_SSL_TRUSTSTORE_LOCATION"] == str(tls.ca_cert)


def test_every_listener_of_the_base_file_is_authenticated_and_clients_get_tls(
    tmp_path: Path,
) -> None:
    base_listeners = load(BASE)["services"]["kafka"]["environment"]["KAFKA_LISTENERS"]
    names = {item.split("://")[0] for item in base_listeners.split(",")}
    mapping = load(SECURE)["services"]["kafka"]["environment"][
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
    ]
    protocols = dict(item.split(":") for item in mapping.split(","))
    assert set(protocols) == names
    local = dict(
        item.split(":")
        for item in local_secure_properties(tmp_path)["listener.security.protocol.map"].split(",")
    )
    # as locally: clients on SASL_SSL, the in-process controller on SASL_PLAINTEXT
    assert {n: p for n, p in protocols.items() if n != "CONTROLLER"} == {
        "INTERNAL": local["SASL_SSL"],
        "EXTERNAL": local["SASL_SSL"],
    }
    assert protocols["CONTROLLER"] == local["CONTROLLER"]


def test_every_kafka_client_verifies_the_broker_with_the_mounted_ca() -> None:
    services = load(SECURE)["services"]
    ca = str(BrokerTls(TLS_MOUNT).ca_cert)
    clients = {
        name: service
        for name, service in services.items()
        if "HUB_KAFKA_SECURITY_PROTOCOL" in service.get("environment", {})
    }
    assert len(clients) >= 6
    for name, service in clients.items():
        env = service["environment"]
        assert env["HUB_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["HUB_KAFKA_SSL_CAFILE"] == ca, name
        assert any(v.startswith(f"kafka-tls:{TLS_MOUNT}") for v in service["volumes"]), name
    registry = services["registry"]["environment"]
    assert registry["APICURIO_KAFKA_COMMON_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert registry["APICURIO_KAFKA_COMMON_SSL_TRUSTSTORE_LOCATION"] == ca
    certs = services["kafka-certs"]
    assert "make-certs" in " ".join(certs["command"])
    assert f"kafka-tls:{TLS_MOUNT}" in certs["volumes"]


def test_clients_use_principals_and_password_files_that_apply_acls_creates() -> None:
    known = set(principals(SecurityLayout(agencies=[])))
    services = load(SECURE)["services"]
    checked = 0
    for name, service in services.items():
        env = service.get("environment", {})
        user = env.get("HUB_KAFKA_SASL_USERNAME")
        if name == "kafka-acls" or user is None:
            continue
        assert user in known, name
        expected = secret_file(Path("/run/hub-kafka"), user)
        assert env["HUB_KAFKA_SASL_PASSWORD_FILE"] == str(expected), name
        checked += 1
    assert checked >= 5


def test_secrets_are_interpolated_not_written_in_the_file() -> None:
    text = SECURE.read_text()
    for line in text.splitlines():
        if "password=" in line and not line.lstrip().startswith("#"):
            assert '"${' in line or "%s" in line, line
