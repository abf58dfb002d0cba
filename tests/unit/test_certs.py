"""The stack's own certificate authority and broker keystore (``hub.security.certs``).

Real openssl, real files: the checks are what a TLS client and Kafka rely on (the chain
verifies, the certificate names the hosts, the keystore opens with its password), plus that
nothing is issued again while it is still good.
"""

from __future__ import annotations

import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from hub.security.certs import CertError, certificate_names, ensure_broker_tls


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_broker_certificate_chains_to_the_ca_and_names_the_hosts(tmp_path: Path) -> None:
    tls = ensure_broker_tls(tmp_path / "tls", ["127.0.0.1", "kafka"])
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tls.ca_cert), str(tls.broker_cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert certificate_names(tls.broker_cert) == {"127.0.0.1", "kafka"}
    # what Python clients load: a CA file an SSL context accepts
    ssl.create_default_context(cafile=str(tls.ca_cert))


def test_private_files_are_private_and_the_keystore_opens_with_its_password(
    tmp_path: Path,
) -> None:
    tls = ensure_broker_tls(tmp_path / "tls")
    assert mode(tls.directory) == 0o700
    for private in (tls.ca_key, tls.keystore, tls.keystore_password_file):
        assert mode(private) == 0o600, private
    assert not list(tls.directory.glob("broker.key")), "the bare broker key is not kept"
    opened = subprocess.run(
        ["openssl", "pkcs12", "-in", str(tls.keystore), "-nokeys", "-passin", "stdin"],
        input=tls.keystore_password() + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.count("BEGIN CERTIFICATE") == 2  # the broker's and the CA's


def test_good_certificates_are_kept_and_a_new_host_gets_a_new_one(tmp_path: Path) -> None:
    first = ensure_broker_tls(tmp_path / "tls")
    ca, broker = first.ca_cert.read_bytes(), first.broker_cert.read_bytes()
    again = ensure_broker_tls(tmp_path / "tls")
    assert (again.ca_cert.read_bytes(), again.broker_cert.read_bytes()) == (ca, broker)
    wider = ensure_broker_tls(tmp_path / "tls", ["127.0.0.1", "localhost", "kafka.hub.local"])
    assert wider.ca_cert.read_bytes() == ca  # same authority: clients keep trusting it
    assert wider.broker_cert.read_bytes() != broker
    assert "kafka.hub.local" in certificate_names(wider.broker_cert)


def test_no_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CertError, match="at least one host"):
        ensure_broker_tls(tmp_path / "tls", [])


def test_a_given_keystore_password_is_used_and_a_change_reissues_the_keystore(
    tmp_path: Path,
) -> None:
    tls = ensure_broker_tls(tmp_path / "tls", keystore_password="from-the-env-1")
    assert tls.keystore_password() == "from-the-env-1"
    changed = ensure_broker_tls(tmp_path / "tls", keystore_password="from-the-env-2")
    assert changed.keystore_password() == "from-the-env-2"


@pytest.mark.parametrize("bad", ["short", "has space-in-it", "quote'd-password"])
def test_a_keystore_password_that_would_break_a_properties_file_is_refused(
    tmp_path: Path, bad: str
) -> None:
    with pytest.raises(CertError, match="keystore password"):
        ensure_broker_tls(tmp_path / "tls", keystore_password=bad)


def test_make_certs_command_prints_paths_and_no_password(tmp_path: Path) -> None:
    import os
    import sys

    out = tmp_path / "tls"
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "security", "make-certs", "--out", str(out),
         "--host", "kafka", "--host", "localhost"],
        env={**os.environ, "HUB_KAFKA_KEYSTORE_PASSWORD": "compose-keystore-pw"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"ca: {out / 'ca.pem'}" in proc.stdout
    assert "compose-keystore-pw" not in proc.stdout + proc.stderr
    assert certificate_names(out / "broker.pem") == {"kafka", "localhost"}
