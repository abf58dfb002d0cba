"""Secure-mode broker properties, client security settings and secret files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hub.security.certs import BrokerTls
from hub.security.client import KafkaClientSecurity, SecurityConfigError
from hub.security.secrets import SecretError, ensure_secret, read_secret, secret_file
from hub.settings import HubSettings
from hub.stack.errors import StackError
from hub.stack.kafka import secure_properties, server_properties

PLAIN = server_properties(port=1, controller_port=2, data_dir="/d", partitions=6)


@pytest.fixture
def tls(tmp_path: Path) -> BrokerTls:
    """A keystore password file, which is all the properties need of the TLS files."""
    tls = BrokerTls(tmp_path / "tls")
    ensure_secret(tmp_path, "ks", "ks-pass")
    tls.directory.mkdir()
    secret_file(tmp_path, "ks").rename(tls.keystore_password_file)
    return tls


def secure(tls: BrokerTls, password: str = "s3cret") -> str:
    return secure_properties(PLAIN, port=1, controller_port=2, password=password, tls=tls)


def props(text: str) -> dict[str, str]:
    joined = text.replace("\\\n", "")
    pairs = (line.split("=", 1) for line in joined.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.startswith("#")}


def test_secure_properties_use_scram_over_tls_and_the_standard_authorizer(
    tls: BrokerTls,
) -> None:
    p = props(secure(tls))
    assert p["listeners"] == "SASL_SSL://127.0.0.1:1,CONTROLLER://127.0.0.1:2"
    assert p["advertised.listeners"] == "SASL_SSL://127.0.0.1:1"
    assert p["inter.broker.listener.name"] == "SASL_SSL"
    assert p["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert p["ssl.keystore.location"] == str(tls.keystore)
    assert p["ssl.keystore.password"] == p["ssl.key.password"] == "ks-pass"
    assert p["ssl.truststore.location"] == str(tls.ca_cert)
    assert p["ssl.endpoint.identification.algorithm"] == "https"
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
def test_a_password_that_would_break_the_jaas_line_is_refused(bad: str, tls: BrokerTls) -> None:
    with pytest.raises(StackError):
        secure(tls, bad)


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
        ("SASL_SSL", None, "p", None),
    ],
)
def test_incomplete_sasl_settings_are_refused(
    protocol: str, user: str | None, password: str | None, file: Path | None
) -> None:
    with pytest.raises(SecurityConfigError):
        KafkaClientSecurity.build(protocol, "SCRAM-SHA-512", user, password, file)


def hub_identity(monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    """The environment of a worker running as User:hub, with no CA file."""
    monkeypatch.setenv("HUB_KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("HUB_KAFKA_SASL_USERNAME", "hub")
    monkeypatch.setenv("HUB_KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.delenv("HUB_KAFKA_SSL_CAFILE", raising=False)


def test_clients_built_outside_settings_read_the_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hub.security import environment

    hub_identity(monkeypatch, "SASL_PLAINTEXT")
    environment.env_security.cache_clear()
    try:
        assert environment.env_client_kwargs()["sasl_plain_username"] == "hub"
    finally:
        environment.env_security.cache_clear()
    monkeypatch.setenv("HUB_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    try:
        assert environment.env_client_kwargs() == {}
    finally:
        environment.env_security.cache_clear()


def test_sasl_ssl_settings_verify_the_broker_with_the_ca_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    hub_identity(monkeypatch, "SASL_SSL")
    monkeypatch.setenv("HUB_KAFKA_SSL_CAFILE", str(ca))
    assert HubSettings().kafka_client_kwargs() == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(ca),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "hub",
        "sasl_plain_password": "pw",
    }


def test_a_ca_file_without_tls_is_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(SecurityConfigError, match="SSL or SASL_SSL"):
        KafkaClientSecurity.build("SASL_PLAINTEXT", "SCRAM-SHA-512", "u", "p", None, ca)


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SecurityConfigError, match=r"nope\.pem does not exist"):
        KafkaClientSecurity.build(
            "SASL_SSL", "SCRAM-SHA-512", "u", "p", None, tmp_path / "nope.pem"
        )


def test_the_worker_speaks_sasl_ssl_verifying_the_broker_with_the_ca_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    hub_identity(monkeypatch, "SASL_SSL")
    monkeypatch.setenv("HUB_KAFKA_SSL_CAFILE", str(ca))
    # the engine's clients are librdkafka's (confluent-kafka): the same security, dotted keys
    assert HubSettings().kafka_security().librdkafka_config() == {
        "security.protocol": "SASL_SSL",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "hub",
        "sasl.password": "pw",
    }


def test_a_plain_broker_needs_no_librdkafka_security() -> None:
    assert (
        KafkaClientSecurity.build(
            "PLAINTEXT", "SCRAM-SHA-512", None, None, None
        ).librdkafka_config()
        == {}
    )
