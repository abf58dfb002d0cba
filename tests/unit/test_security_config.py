"""Secure-mode broker properties, client security settings and secret files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hub.security.client import KafkaClientSecurity, SecurityConfigError
from hub.security.secrets import SecretError, ensure_secret, read_secret, secret_file
from hub.settings import HubSettings
from hub.stack.errors import StackError
from hub.stack.kafka import _SERVER_PROPERTIES, secure_properties

PLAIN = _SERVER_PROPERTIES.format(port=1, controller_port=2, data_dir="/d", partitions=6)


def props(text: str) -> dict[str, str]:
    joined = text.replace("\\\n", "")
    pairs = (line.split("=", 1) for line in joined.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.startswith("#")}


def test_secure_properties_use_scram_and_the_standard_authorizer() -> None:
    p = props(secure_properties(PLAIN, port=1, controller_port=2, password="s3cret"))
    assert p["listeners"] == "SASL_PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2"
    assert p["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:1"
    assert p["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert p["authorizer.class.name"] == ("org.apache.kafka.metadata.authorizer.StandardAuthorizer")
    assert p["super.users"] == "User:admin"
    assert p["allow.everyone.if.no.acl.found"] == "false"
    # everything else is the plain broker's
    assert p["log.dirs"] == "/d"
    assert p["num.partitions"] == "6"


def test_plain_properties_have_no_security() -> None:
    p = props(PLAIN)
    assert p["listeners"].startswith("PLAINTEXT://")
    assert "authorizer.class.name" not in p


@pytest.mark.parametrize("bad", ['a"b', "a\\b", "a b", "a;b", "a,b", "a]b"])
def test_a_password_that_would_break_the_jaas_line_is_refused(bad: str) -> None:
    with pytest.raises(StackError):
        secure_properties(PLAIN, port=1, controller_port=2, password=bad)


def test_secrets_are_generated_once_into_private_files(tmp_path: Path) -> None:
    first = ensure_secret(tmp_path, "hub")
    assert ensure_secret(tmp_path, "hub") == first
    path = secret_file(tmp_path, "hub")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) >= 32


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    ensure_secret(tmp_path, "hub")
    path = secret_file(tmp_path, "hub")
    path.chmod(0o644)
    with pytest.raises(SecretError, match="readable by others"):
        read_secret(path)


def test_settings_build_sasl_client_kwargs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ensure_secret(tmp_path, "agency-x", "pw-from-file")
    monkeypatch.setenv("HUB_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("HUB_KAFKA_SASL_USERNAME", "agency-x")
    monkeypatch.setenv("HUB_KAFKA_SASL_PASSWORD_FILE", str(secret_file(tmp_path, "agency-x")))
    settings = HubSettings()
    assert settings.kafka_client_kwargs() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "agency-x",
        "sasl_plain_password": "pw-from-file",
    }
    assert "pw-from-file" not in repr(settings.kafka_security())


def test_plaintext_settings_add_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_KAFKA_SECURITY_PROTOCOL", raising=False)
    assert HubSettings().kafka_client_kwargs() == {}


def test_the_password_never_shows_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_KAFKA_SASL_PASSWORD", "do-not-print")
    assert "do-not-print" not in repr(HubSettings())


@pytest.mark.parametrize(
    ("protocol", "user", "password", "file"),
    [
        ("SASL_PLAINTEXT", None, "p", None),
        ("SASL_PLAINTEXT", "u", None, None),
        ("SASL_PLAINTEXT", "u", "p", Path("/x")),
        ("KERBEROS", "u", "p", None),
    ],
)
def test_incomplete_sasl_settings_are_refused(
    protocol: str, user: str | None, password: str | None, file: Path | None
) -> None:
    with pytest.raises(SecurityConfigError):
        KafkaClientSecurity.build(protocol, "SCRAM-SHA-512", user, password, file)


def test_clients_built_outside_settings_read_the_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hub.security import client

    monkeypatch.setenv("HUB_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("HUB_KAFKA_SASL_USERNAME", "hub")
    monkeypatch.setenv("HUB_KAFKA_SASL_PASSWORD", "pw")
    client._env_security.cache_clear()
    try:
        assert client.env_client_kwargs()["sasl_plain_username"] == "hub"
        credentials = client.faust_credentials()
        assert credentials is not None
        assert credentials.username == "hub"
        assert credentials.mechanism.value == "SCRAM-SHA-512"
    finally:
        client._env_security.cache_clear()
    monkeypatch.setenv("HUB_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    try:
        assert client.env_client_kwargs() == {}
        assert client.faust_credentials() is None
    finally:
        client._env_security.cache_clear()
