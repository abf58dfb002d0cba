"""The worker API's credentials: API keys by role, hashed at rest, reloaded without a restart.

Two files, either or both (``HUB_ACCESS_FILE``, ``HUB_ACCESS_INGRESS_CREDENTIALS``):

* the access file, one entry per key::

    {"credentials": [
      {"key_id": "so-noi-vu-2026", "role": "province", "api_key_sha256": "<hex>"},
      {"key_id": "tu-phap-lanh-dao", "role": "agency", "agency_code": "000.00.12.H40",
       "api_key_sha256": "<hex>"},
      {"key_id": "cong-dvc-quoc-gia", "role": "figures", "api_key_sha256": "<hex>"}
    ]}

  ``personal_data: false`` keeps a province or agency key from seeing applicants' names;
  ``hub access add`` makes a key and appends its hash.
* the HTTP ingress's per-agency credentials file (``connectors.ingress.credentials``): each of
  its API keys is also an ``agency`` key of its agency here, so an agency that already holds
  a key for sending its dossiers reads them with the same key. Its HMAC secrets are not keys
  of the API (they sign requests; they are not presented).

Each file is re-read when its modification time or size changes (checked at most once a
second); a file that no longer parses is refused with a log line and the keys before it stay
in force. At start, a file that does not parse stops the worker with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from hub.access.keys import hash_api_key, parse_credentials, parse_document
from hub.access.roles import Principal, Role
from hub.contract.inbound import AGENCY_CODE_PATTERN

__all__ = ["AccessEntry", "AccessFile", "AccessStore"]

log = logging.getLogger("hub.access")

KEY_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"


class AccessEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    key_id: str = Field(min_length=1, max_length=100, pattern=KEY_ID_PATTERN)
    role: Role
    agency_code: str | None = Field(None, pattern=AGENCY_CODE_PATTERN)
    #: None: the role's default (province and agency see names, figures never)
    personal_data: bool | None = None
    api_key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    api_key: SecretStr | None = Field(None, min_length=16)

    @model_validator(mode="after")
    def _consistent(self) -> AccessEntry:
        if (self.api_key_sha256 is None) == (self.api_key is None):
            raise ValueError("give api_key_sha256 (or, for tests, api_key), exactly one")
        if self.role is Role.AGENCY and self.agency_code is None:
            raise ValueError("an agency key needs agency_code")
        if self.role is not Role.AGENCY and self.agency_code is not None:
            raise ValueError(f"a {self.role} key has no agency_code")
        if self.role is Role.FIGURES and self.personal_data:
            raise ValueError("a figures key never sees personal data")
        return self

    def digest(self) -> str:
        if self.api_key_sha256 is not None:
            return self.api_key_sha256
        assert self.api_key is not None
        return hash_api_key(self.api_key.get_secret_value())

    def principal(self) -> Principal:
        default = self.role is not Role.FIGURES
        sees = default if self.personal_data is None else self.personal_data
        return Principal(self.key_id, self.role, self.agency_code, sees)


class AccessFile(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    credentials: list[AccessEntry] = []


def _access_keys(text: str, source: str) -> dict[str, Principal]:
    entries = parse_document(text, source, AccessFile).credentials
    return {entry.digest(): entry.principal() for entry in entries}


def _ingress_keys(text: str, source: str) -> dict[str, Principal]:
    keys: dict[str, Principal] = {}
    for entry in parse_credentials(text, source):
        digest = entry.api_key_sha256 or (
            hash_api_key(entry.api_key.get_secret_value()) if entry.api_key else None
        )
        if digest is not None:  # an HMAC-only entry is not a key one presents
            keys[digest] = Principal(entry.key_id, Role.AGENCY, entry.agency_code, True)
    return keys


class _WatchedFile:
    """One credentials file, re-read when it changes; the keys of its last good version."""

    def __init__(self, path: Path, parse: Callable[[str, str], dict[str, Principal]]) -> None:
        self.path = path
        self.parse = parse
        self.keys: dict[str, Principal] = {}
        self.stamp: tuple[float, int] | None = None
        self.error: str | None = None
        self.load(initial=True)

    def load(self, *, initial: bool = False) -> bool:
        """True when the keys changed."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime, stat.st_size)
            if stamp == self.stamp:
                return False
            keys = self.parse(self.path.read_text(encoding="utf-8"), str(self.path))
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror}"
        except ValueError as exc:
            self.error = str(exc)
        else:
            self.keys, self.stamp, self.error = keys, stamp, None
            if not initial:
                log.info("access keys reloaded from %s: %d key(s)", self.path, len(keys))
            return True
        if initial:
            raise ValueError(self.error)
        log.error("access keys not reloaded, the previous ones stay in force: %s", self.error)
        return False


class AccessStore:
    """API key -> :class:`Principal`, from the access file and the ingress's file."""

    def __init__(
        self,
        access_file: Path | None = None,
        ingress_credentials: Path | None = None,
        *,
        reload_interval_s: float = 1.0,
    ) -> None:
        self.reload_interval_s = reload_interval_s
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        files: list[_WatchedFile] = []
        if access_file is not None:
            files.append(_WatchedFile(access_file, _access_keys))
        if ingress_credentials is not None:
            files.append(_WatchedFile(ingress_credentials, _ingress_keys))
        self._files: Sequence[_WatchedFile] = files
        self._keys = self._merge()

    def _merge(self) -> dict[str, Principal]:
        keys: dict[str, Principal] = {}
        for watched in reversed(self._files):  # the access file's entry wins a clash
            keys.update(watched.keys)
        return keys

    @property
    def size(self) -> int:
        return len(self._keys)

    def refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self.reload_interval_s:
            return
        with self._lock:
            self._checked = now
            changed = [watched.load() for watched in self._files]
            if any(changed):
                self._keys = self._merge()

    def principal(self, key: str) -> Principal | None:
        """Who presents ``key``, or None. Looked up by the key's SHA-256: what the lookup's
        timing could reveal is about the hash, which tells nothing of the key."""
        self.refresh()
        return self._keys.get(hash_api_key(key))
