"""docker-compose.secure.yml says what the local secure stack does (it cannot be run here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hub.security.acls import SecurityLayout, principals
from hub.security.secrets import secret_file
from hub.stack.kafka import _SERVER_PROPERTIES, secure_properties

ROOT = Path(__file__).resolve().parents[2]
SECURE = ROOT / "docker-compose.secure.yml"
BASE = ROOT / "docker-compose.yml"


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def local_secure_properties() -> dict[str, str]:
    plain = _SERVER_PROPERTIES.format(port=1, controller_port=2, data_dir="/d", partitions=6)
    text = secure_properties(plain, port=1, controller_port=2, password="x").replace("\\\n", "")
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


def env_key(prop: str) -> str:
    return "KAFKA_" + prop.replace(".", "_").upper()


def test_the_authorizer_settings_match_the_local_stack() -> None:
    env = load(SECURE)["services"]["kafka"]["environment"]
    local = local_secure_properties()
    for prop in ("authorizer.class.name", "super.users", "allow.everyone.if.no.acl.found"):
        assert env[env_key(prop)] == local[prop], prop


def test_every_listener_of_the_base_file_is_authenticated() -> None:
    base_listeners = load(BASE)["services"]["kafka"]["environment"]["KAFKA_LISTENERS"]
    names = {item.split("://")[0] for item in base_listeners.split(",")}
    mapping = load(SECURE)["services"]["kafka"]["environment"][
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
    ]
    protocols = dict(item.split(":") for item in mapping.split(","))
    assert set(protocols) == names
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}


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
