"""API keys as the hub keeps them: hashed at rest, in JSON documents that may name
environment variables for their secrets.

The ingress's per-agency credentials file (``connectors.ingress.credentials``) is parsed here,
so the worker's API can take the same file as agency credentials (``hub.access.store``)
without importing the connector.

Keys are random tokens of at least 16 characters made by ``hub access add`` or
``python -m connectors.ingress.credentials generate`` (not passwords a person chose), so one
SHA-256 is the right hash: a slow password hash would cost every request tens of milliseconds
and protect nothing a 128-bit random key does not already.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from hub.contract.inbound import AGENCY_CODE_PATTERN

__all__ = [
    "CredentialEntry",
    "CredentialsFile",
    "hash_api_key",
    "parse_credentials",
    "parse_document",
    "resolve_env_refs",
]

M = TypeVar("M", bound=BaseModel)

_ENV_REF: Final = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class CredentialEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    agency_code: str = Field(pattern=AGENCY_CODE_PATTERN)
    key_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    api_key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    api_key: SecretStr | None = Field(None, min_length=16)
    hmac_secret: SecretStr | None = Field(None, min_length=16)

    @model_validator(mode="after")
    def _one_kind(self) -> CredentialEntry:
        if not (self.api_key_sha256 or self.api_key or self.hmac_secret):
            raise ValueError("give api_key_sha256, api_key or hmac_secret")
        if self.api_key_sha256 and self.api_key:
            raise ValueError("give api_key_sha256 or api_key, not both")
        return self


class CredentialsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    credentials: list[CredentialEntry] = []


def resolve_env_refs(data: object) -> object:
    if isinstance(data, str):
        match = _ENV_REF.match(data)
        if match is None:
            return data
        value = os.environ.get(match.group(1))
        if value is None:
            raise ValueError(f"environment variable {match.group(1)} is unset")
        return value
    if isinstance(data, dict):
        return {k: resolve_env_refs(v) for k, v in data.items()}
    if isinstance(data, list):
        return [resolve_env_refs(v) for v in data]
    return data


def parse_document(text: str, source: str, model: type[M]) -> M:
    """A JSON document checked by ``model`` (``${env:NAME}`` strings resolved first);
    ValueError naming the source, the path in the document and the rule broken, never the
    values (they may be secrets)."""
    try:
        return model.model_validate(resolve_env_refs(json.loads(text)))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        path = ".".join(str(p) for p in first["loc"])
        raise ValueError(
            f"{source}: {path or '<file>'}: {first['type']} ({first['msg']})"
        ) from None
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def parse_credentials(text: str, source: str) -> list[CredentialEntry]:
    """Entries of an ingress credentials document (``parse_document``)."""
    return parse_document(text, source, CredentialsFile).credentials
