"""Per-agency credentials of the HTTP ingress, reloaded when the file changes.

The credentials file (JSON), one entry per key; an agency may hold several at once, which is
how keys are rotated without a restart: add the new key, let the agency switch, remove the
old one. The file is re-read when its modification time or size changes (checked at most
every ``reload_interval_s``); a file that does not parse is refused with a log line and the
previous credentials stay in force::

    {"credentials": [
      {"agency_code": "000.00.12.H40", "key_id": "justice-2025-07",
       "api_key_sha256": "<hex SHA-256 of the API key>"},
      {"agency_code": "000.00.12.H40", "key_id": "justice-hmac-1",
       "hmac_secret": "${env:JUSTICE_HMAC_SECRET}"}
    ]}

* API keys are kept at rest as their SHA-256 (``hub connector`` users make one with
  ``python -m connectors.ingress.credentials hash``); ``api_key`` in clear is accepted for
  tests and environment-provided credentials, never logged.
* HMAC secrets must be usable to verify signatures, so they are stored as given; write them as
  ``${env:NAME}`` to keep them out of the file.
* ``python -m connectors.ingress.credentials generate --out FILE`` writes a file with a fresh
  key for every agency (the demo and the province simulator use one: the simulator needs the
  keys themselves, so such a file holds ``api_key`` or ``hmac_secret`` in clear; keep it to
  test and demo machines).

The same document may come from an environment variable (``credentials_env``), read once at
start; both sources are merged.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pydantic import SecretStr

from hub.access.keys import (
    CredentialEntry,
    CredentialsFile,
    hash_api_key,
    parse_credentials,
)

__all__ = [
    "Caller",
    "CredentialEntry",
    "CredentialStore",
    "CredentialsFile",
    "generate_credentials",
    "hash_api_key",
    "sign",
    "write_credentials",
]

log = logging.getLogger("connectors.ingress.credentials")


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Signature`` of a request: ``sha256=`` + hex HMAC-SHA256 over
    ``<X-Timestamp>.<body>`` (binding the time to the body so it cannot be replayed later)."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass(frozen=True)
class Caller:
    """Who a request proved to be."""

    agency_code: str
    key_id: str
    method: str  # "api-key" | "hmac"


@dataclass(frozen=True)
class _Index:
    by_hash: dict[str, CredentialEntry]
    by_key_id: dict[str, CredentialEntry]

    @staticmethod
    def of(entries: Sequence[CredentialEntry]) -> _Index:
        by_hash: dict[str, CredentialEntry] = {}
        by_key_id: dict[str, CredentialEntry] = {}
        for entry in entries:
            if entry.api_key_sha256:
                by_hash[entry.api_key_sha256] = entry
            elif entry.api_key:
                by_hash[hash_api_key(entry.api_key.get_secret_value())] = entry
            if entry.hmac_secret:
                by_key_id[entry.key_id] = entry
        return _Index(by_hash, by_key_id)


class CredentialStore:
    """Checks API keys and HMAC signatures; the file is re-read when it changes."""

    def __init__(
        self,
        file: Path | None = None,
        *,
        env_var: str | None = None,
        reload_interval_s: float = 1.0,
        signature_tolerance_s: float = 300.0,
    ) -> None:
        self.file = file
        self.reload_interval_s = reload_interval_s
        self.signature_tolerance_s = signature_tolerance_s
        self._lock = threading.Lock()
        self._env_entries: list[CredentialEntry] = []
        self._file_entries: list[CredentialEntry] = []
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self.last_error: str | None = None
        self.reloads = 0
        if env_var and os.environ.get(env_var):
            self._env_entries = parse_credentials(os.environ[env_var], f"${env_var}")
        if file is not None:
            self._load_file(initial=True)
        self._index = _Index.of([*self._env_entries, *self._file_entries])

    def _load_file(self, *, initial: bool = False) -> bool:
        assert self.file is not None
        try:
            stat = self.file.stat()
            stamp = (stat.st_mtime, stat.st_size)
            if stamp == self._stamp:
                return False
            entries = parse_credentials(self.file.read_text(encoding="utf-8"), str(self.file))
        except (OSError, ValueError) as exc:
            message = exc.strerror if isinstance(exc, OSError) else str(exc)
            self.last_error = f"{self.file}: {message}" if isinstance(exc, OSError) else message
            if initial:
                raise ValueError(self.last_error) from None
            log.error("credentials not reloaded, the previous ones stay in force: %s", message)
            return False
        self._file_entries = entries
        self._stamp = stamp
        self.last_error = None
        if not initial:
            self.reloads += 1
            log.info("credentials reloaded from %s: %d key(s)", self.file, len(entries))
        return True

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the file if it changed (at most every ``reload_interval_s`` unless forced)."""
        if self.file is None:
            return
        now = time.monotonic()
        if not force and now - self._checked < self.reload_interval_s:
            return
        with self._lock:
            self._checked = now
            if self._load_file():
                self._index = _Index.of([*self._env_entries, *self._file_entries])

    @property
    def size(self) -> int:
        return len(self._index.by_hash) + len(self._index.by_key_id)

    def by_api_key(self, key: str) -> Caller | None:
        self.refresh()
        presented = hash_api_key(key)
        # look up by hash (no secret-dependent timing on the key itself), then confirm in
        # constant time
        entry = self._index.by_hash.get(presented)
        if entry is None:
            return None
        stored = entry.api_key_sha256 or hash_api_key(
            entry.api_key.get_secret_value() if entry.api_key else ""
        )
        if not hmac.compare_digest(stored, presented):
            return None
        return Caller(entry.agency_code, entry.key_id, "api-key")

    def by_signature(
        self, key_id: str, timestamp: str, signature: str, body: bytes, now: float | None = None
    ) -> Caller | str:
        """The caller, or the reason (a short rule) the signature is refused."""
        self.refresh()
        entry = self._index.by_key_id.get(key_id)
        try:
            stamp = float(timestamp)
        except ValueError:
            return "bad_timestamp"
        current = time.time() if now is None else now
        if abs(current - stamp) > self.signature_tolerance_s:
            return "stale_timestamp"
        if entry is None or entry.hmac_secret is None:
            # still compute a signature so an unknown key id costs what a known one does
            sign(b"unknown-key-id-padding", timestamp, body)
            return "bad_signature"
        expected = sign(entry.hmac_secret.get_secret_value(), timestamp, body)
        given = signature if signature.startswith("sha256=") else f"sha256={signature}"
        if not hmac.compare_digest(expected.encode(), given.encode()):
            return "bad_signature"
        return Caller(entry.agency_code, entry.key_id, "hmac")


def generate_credentials(
    agency_codes: Iterable[str], *, method: str = "api-key", key_id_suffix: str = "sim"
) -> CredentialsFile:
    """One fresh credential per agency, in clear (``api_key`` or ``hmac_secret``): for the
    demo and the simulator, which must present the keys, not only check them."""
    if method not in ("api-key", "hmac"):
        raise ValueError(f"method must be 'api-key' or 'hmac', not {method!r}")
    entries = []
    for code in sorted(set(agency_codes)):
        secret = SecretStr(secrets.token_urlsafe(24))
        kind = {"api_key": secret} if method == "api-key" else {"hmac_secret": secret}
        entries.append(CredentialEntry(agency_code=code, key_id=f"{code}-{key_id_suffix}", **kind))
    return CredentialsFile(credentials=entries)


def write_credentials(document: CredentialsFile, path: Path) -> Path:
    """Write ``document`` readable by its owner only (it holds secrets in clear)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "credentials": [
            {
                key: value.get_secret_value() if isinstance(value, SecretStr) else value
                for key, value in entry.model_dump(exclude_none=True).items()
            }
            for entry in document.credentials
        ]
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=1)
        out.write("\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.ingress.credentials",
        description="hash: print the SHA-256 of an API key for the ingress credentials file "
        "(api_key_sha256); the key is read from stdin or prompted, never from the command line. "
        "generate: write a credentials file with a fresh key in clear for every agency active "
        "today in the reference data (or those given), for the demo and the province simulator "
        "(python -m connectors.simulator --via ingress --credentials FILE).",
    )
    parser.add_argument("action", choices=["hash", "generate"])
    parser.add_argument("--out", type=Path, help="generate: the file to write (mode 600)")
    parser.add_argument(
        "--agency",
        action="append",
        default=[],
        help="generate: an agency code (repeatable; default every agency active today)",
    )
    parser.add_argument(
        "--method",
        choices=["api-key", "hmac"],
        default="api-key",
        help="generate: API keys (X-Api-Key) or HMAC secrets (X-Signature)",
    )
    args = parser.parse_args(argv)
    if args.action == "generate":
        if args.out is None:
            parser.error("generate needs --out FILE")
        agencies = args.agency
        if not agencies:
            from hub.reference import load_reference

            agencies = [a.code for a in load_reference().agencies.active(date.today())]
        document = generate_credentials(agencies, method=args.method)
        write_credentials(document, args.out)
        print(f"{args.out}: {len(document.credentials)} {args.method} credential(s)")
        return 0
    key = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass("API key: ")
    if len(key) < 16:
        print("an API key has at least 16 characters", file=sys.stderr)
        return 1
    print(hash_api_key(key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
