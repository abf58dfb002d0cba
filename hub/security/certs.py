"""A private certificate authority and the broker's TLS certificate, made with ``openssl``.

The secure broker (``hub stack up --secure``, and compose's ``kafka-certs`` one-shot service
through ``hub security make-certs``) listens with SASL_SSL: TLS carries the SCRAM exchange and
every record, so neither passwords' proofs nor dossiers cross the network in clear. The
broker presents ``broker.p12``; clients verify it against ``ca.pem``
(``HUB_KAFKA_SSL_CAFILE``) and check that it names the host they dialled.

Files in the directory (private ones mode 0600, the directory 0700):

* ``ca.pem``: the authority's certificate, public: what clients trust;
* ``ca.key``: its private key (private): kept to issue a new broker certificate later;
* ``broker.pem``: the broker's certificate alone, public, for inspection;
* ``broker.p12``: its key and certificate chain for Kafka (``ssl.keystore.type=PKCS12``),
  private, with its password in ``broker.p12.password`` (private).

Certificates are reused while they name every wanted host and stay valid for at least
``RENEW_BEFORE_DAYS``; otherwise the broker certificate is issued again (and the authority
too, if it is the one expiring). A production deployment would use the province's own PKI:
point ``ssl.keystore.*`` and ``HUB_KAFKA_SSL_CAFILE`` at its files instead.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hub.security.secrets import read_secret

__all__ = ["RENEW_BEFORE_DAYS", "BrokerTls", "CertError", "certificate_names", "ensure_broker_tls"]

#: a certificate closer than this to its end is issued again at the next start
RENEW_BEFORE_DAYS = 30
_CA_DAYS = 3650
_BROKER_DAYS = 825  # the longest validity clients commonly accept for a server certificate
_PRIVATE = 0o600
_SAFE_PASSWORD = re.compile(r"[A-Za-z0-9_-]{8,}")


class CertError(Exception):
    """openssl is missing or refused to make a key or certificate."""


@dataclass(frozen=True)
class BrokerTls:
    """Where the authority and the broker's keystore live (see the module's docstring)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def broker_cert(self) -> Path:
        return self.directory / "broker.pem"

    @property
    def keystore(self) -> Path:
        return self.directory / "broker.p12"

    @property
    def keystore_password_file(self) -> Path:
        return self.directory / "broker.p12.password"

    def keystore_password(self) -> str:
        try:
            return read_secret(self.keystore_password_file)
        except Exception as exc:
            raise CertError(str(exc)) from exc

    def complete(self) -> bool:
        return all(
            p.is_file()
            for p in (
                self.ca_cert,
                self.ca_key,
                self.broker_cert,
                self.keystore,
                self.keystore_password_file,
            )
        )


def _openssl(*args: str, stdin: str | None = None) -> str:
    exe = shutil.which("openssl")
    if exe is None:
        raise CertError("openssl is not on PATH; install it (Debian: apt-get install openssl)")
    proc = subprocess.run(
        [exe, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        raise CertError(f"openssl {args[0]} failed: {lines[-1]}")
    return proc.stdout


def _subject_alt_names(hosts: Iterable[str]) -> str:
    names = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            names.append(f"DNS:{host}")
        else:
            names.append(f"IP:{host}")
    return ",".join(names)


def certificate_names(cert: Path) -> set[str]:
    """The host names and addresses ``cert`` is valid for (its subjectAltName)."""
    out = _openssl("x509", "-in", str(cert), "-noout", "-ext", "subjectAltName")
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        for item in line.split(","):
            kind, _, value = item.strip().partition(":")
            if kind in ("DNS", "IP Address") and value:
                names.add(value)
    return names


def _valid_for(cert: Path, days: int) -> bool:
    """False when ``cert`` ends within ``days`` (or cannot be read)."""
    try:
        _openssl("x509", "-in", str(cert), "-noout", "-checkend", str(days * 86400))
    except CertError:
        return False
    return True


def _write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _issue_ca(tls: BrokerTls) -> None:
    _openssl(
        "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", str(tls.ca_key), "-out", str(tls.ca_cert),
        "-days", str(_CA_DAYS), "-subj", "/O=Nghe An integration hub/CN=local Kafka CA",
        "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    tls.ca_key.chmod(_PRIVATE)


def _issue_broker(tls: BrokerTls, hosts: list[str], password: str | None) -> None:
    key = tls.directory / "broker.key"
    csr = tls.directory / "broker.csr"
    ext = tls.directory / "broker.ext"
    try:
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={hosts[0]}",
        )  # fmt: skip
        key.chmod(_PRIVATE)
        ext.write_text(
            f"subjectAltName={_subject_alt_names(hosts)}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"  # an EC key signs the handshake
            "extendedKeyUsage=serverAuth,clientAuth\n"  # clientAuth: the inter-broker client
        )
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(tls.ca_cert), "-CAkey", str(tls.ca_key),
            "-set_serial", str(secrets.randbits(63)), "-days", str(_BROKER_DAYS),
            "-extfile", str(ext), "-out", str(tls.broker_cert),
        )  # fmt: skip
        password = password or secrets.token_urlsafe(24)
        _write_private(tls.keystore_password_file, password + "\n")
        tls.keystore.unlink(missing_ok=True)
        _openssl(
            "pkcs12", "-export", "-in", str(tls.broker_cert), "-inkey", str(key),
            "-certfile", str(tls.ca_cert), "-name", "broker", "-out", str(tls.keystore),
            "-passout", "stdin",
        stdin=password + "\n")  # fmt: skip
        tls.keystore.chmod(_PRIVATE)
    finally:
        for scratch in (key, csr, ext):
            scratch.unlink(missing_ok=True)


def ensure_broker_tls(
    directory: Path,
    hosts: Iterable[str] = ("127.0.0.1", "localhost"),
    keystore_password: str | None = None,
) -> BrokerTls:
    """The authority and the broker's keystore in ``directory``, made or renewed as needed
    (see the module's docstring). ``hosts``: what clients dial; the first is the subject.
    ``keystore_password``: the keystore's password when the broker's configuration must
    know it in advance (compose passes it from the environment); by default a random one."""
    wanted = list(dict.fromkeys(hosts))
    if not wanted:
        raise CertError("the broker certificate needs at least one host name or address")
    if keystore_password is not None and not _SAFE_PASSWORD.fullmatch(keystore_password):
        raise CertError(
            "the keystore password must be 8 or more letters, digits, '-' or '_' "
            "(it goes into properties files and openssl's input as it is)"
        )
    tls = BrokerTls(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    renew_ca = not (tls.ca_cert.is_file() and tls.ca_key.is_file()) or not _valid_for(
        tls.ca_cert, RENEW_BEFORE_DAYS
    )
    if renew_ca:
        _issue_ca(tls)
    if (
        renew_ca
        or not tls.complete()
        or not _valid_for(tls.broker_cert, RENEW_BEFORE_DAYS)
        or not set(wanted) <= certificate_names(tls.broker_cert)
        or (keystore_password is not None and tls.keystore_password() != keystore_password)
    ):
        _issue_broker(tls, wanted, keystore_password)
    return tls
