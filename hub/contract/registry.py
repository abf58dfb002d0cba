"""A small client for the Confluent schema-registry REST API (served by Apicurio's ccompat).

Only what the hub needs: register a schema under a subject, fetch a schema by id, check
compatibility, set a subject's compatibility level. Ids and schemas are cached for the life
of the client: a schema id's content never changes in the registry, so the cache is never stale.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import requests

from hub.contract.errors import RegistryError, RegistryUnavailableError, UnknownSchemaIdError

__all__ = ["SchemaRegistryClient"]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryClient:
    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.headers["Content-Type"] = _CONTENT_TYPE
        self._session.headers["Accept"] = _CONTENT_TYPE
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}
        self._lock = threading.Lock()

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = self._session.request(
                method,
                f"{self.url}{path}",
                data=None if body is None else json.dumps(body),
                timeout=self.timeout_s,
            )
        except requests.RequestException as exc:
            raise RegistryUnavailableError(
                f"schema registry at {self.url} unreachable: {type(exc).__name__}"
            ) from exc
        if resp.status_code >= 500:
            raise RegistryUnavailableError(
                f"schema registry at {self.url} answered {resp.status_code} to {method} {path}"
            )
        if resp.status_code >= 400:
            raise RegistryError(
                f"schema registry refused {method} {path}: {resp.status_code} {resp.text[:300]}"
            )
        return resp.json() if resp.content else None

    def register(self, subject: str, schema: str | dict[str, Any]) -> int:
        """Register (or find) ``schema`` under ``subject``; returns the schema id."""
        text = schema if isinstance(schema, str) else json.dumps(schema, separators=(",", ":"))
        key = (subject, text)
        with self._lock:
            cached = self._ids.get(key)
        if cached is not None:
            return cached
        # normalize: the same schema written with other whitespace (confluent-kafka's
        # json.dumps, say) is the same version, not a new one (Apicurio compares text).
        answer = self._request(
            "POST",
            f"/subjects/{subject}/versions?normalize=true",
            {"schema": text, "schemaType": "AVRO"},
        )
        schema_id = int(answer["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._schemas.setdefault(schema_id, text)
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        with self._lock:
            cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        try:
            answer = self._request("GET", f"/schemas/ids/{schema_id}")
        except RegistryError as exc:
            if isinstance(exc, RegistryUnavailableError):
                raise
            raise UnknownSchemaIdError(f"schema id {schema_id} is unknown to the registry") from exc
        text = str(answer["schema"])
        with self._lock:
            self._schemas[schema_id] = text
        return text

    def is_compatible(self, subject: str, schema: str | dict[str, Any]) -> bool:
        """Would ``schema`` be accepted as the next version of ``subject``?

        Asks ``/compatibility/subjects/{s}/versions`` (all versions), not ``.../latest``:
        Apicurio checks only the latest version there even under BACKWARD_TRANSITIVE."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        try:
            answer = self._request(
                "POST",
                f"/compatibility/subjects/{subject}/versions",
                {"schema": text, "schemaType": "AVRO"},
            )
        except RegistryError as exc:
            if isinstance(exc, RegistryUnavailableError) or "404" not in str(exc):
                raise
            return True  # no such subject yet: nothing to break
        return bool(answer.get("is_compatible"))

    def set_compatibility(self, subject: str, level: str) -> None:
        self._request("PUT", f"/config/{subject}", {"compatibility": level})

    def subjects(self) -> list[str]:
        return list(self._request("GET", "/subjects"))

    def close(self) -> None:
        self._session.close()
