"""The ingress's OpenAPI 3.1 document, built from the same pydantic models that validate
requests, so the schema cannot drift from what the server accepts."""

from __future__ import annotations

from typing import Any

from hub.contract.inbound import InboundDossierEvent, InboundFeedbackEvent

__all__ = ["PATHS", "openapi_document"]

#: endpoint path → (kind of event it takes, its tag)
PATHS = {
    "/v1/dossier-events": ("dossier", "DossierEvent"),
    "/v1/feedback-events": ("feedback", "FeedbackEvent"),
}

_REF = "#/components/schemas/{model}"


def _schemas() -> dict[str, Any]:
    components: dict[str, Any] = {}
    for name, model in (
        ("DossierEvent", InboundDossierEvent),
        ("FeedbackEvent", InboundFeedbackEvent),
    ):
        schema = model.model_json_schema(ref_template=_REF, mode="validation")
        components.update(schema.pop("$defs", {}))
        schema["title"] = name
        components[name] = schema
    for schema in components.values():
        # the envelope's event_type is copied into the payload, so the sender may omit it there
        props = schema.get("properties", {})
        if "const" in props.get("event_type", {}) and "event_type" in schema.get("required", []):
            schema["required"] = [r for r in schema["required"] if r != "event_type"]
    components["Accepted"] = {
        "type": "object",
        "required": ["accepted", "event_ids"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 1},
            "event_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
        },
    }
    components["Problem"] = {
        "type": "object",
        "required": ["index", "path", "rule", "message"],
        "properties": {
            "index": {
                "type": "integer",
                "description": "position of the event in the request (0 for a single event)",
            },
            "path": {"type": "string", "description": "dotted path inside the event"},
            "rule": {"type": "string"},
            "message": {"type": "string", "description": "never quotes a submitted value"},
        },
    }
    components["Error"] = {
        "type": "object",
        "required": ["error", "rule", "message"],
        "properties": {
            "error": {"type": "string"},
            "rule": {"type": "string"},
            "message": {"type": "string"},
            "index": {"type": "integer"},
            "path": {"type": "string"},
            "problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
        },
    }
    return components


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        out["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        }
    return out


def openapi_document(*, max_batch: int, max_body_bytes: int, tolerance_s: float) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, (kind, schema) in PATHS.items():
        ref = {"$ref": f"#/components/schemas/{schema}"}
        paths[path] = {
            "post": {
                "operationId": f"push_{kind}_events",
                "summary": f"Push one {kind} event or a batch of up to {max_batch}",
                "description": (
                    "Answers 202 only after Kafka acknowledged every event of the request; "
                    "any other answer means none need be assumed written (a 503 may still "
                    "have written some: retrying is safe, the hub deduplicates on event_id). "
                    "Every event's agency_code must be the caller's agency, or its "
                    "predecessor or successor in the reference mergers."
                ),
                "security": [{"ApiKey": []}, {"Signature": [], "KeyId": [], "Timestamp": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    ref,
                                    {
                                        "type": "array",
                                        "items": ref,
                                        "minItems": 1,
                                        "maxItems": max_batch,
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "202": {
                        "description": "every event acknowledged by Kafka",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Accepted"}
                            }
                        },
                    },
                    "401": _error("no credentials, or wrong ones (rule says which)"),
                    "403": _error("an event's agency_code is not the caller's (rule agency_scope)"),
                    "413": _error(f"body larger than {max_body_bytes} bytes"),
                    "422": _error("not JSON, or invalid events: problems lists field, rule"),
                    "429": _error("too many requests in flight; retry after", retry_after=True),
                    "500": _error("a valid event could not be encoded (a hub bug)"),
                    "503": _error("Kafka unreachable or too slow; retry after", retry_after=True),
                },
            }
        }
    simple = {"200": {"description": "ok"}, "503": {"description": "not ready"}}
    paths["/health"] = {"get": {"operationId": "health", "responses": simple}}
    paths["/metrics"] = {
        "get": {"operationId": "metrics", "responses": {"200": {"description": "Prometheus"}}}
    }
    paths["/openapi.json"] = {
        "get": {"operationId": "openapi", "responses": {"200": {"description": "this document"}}}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Nghệ An dossier hub: HTTP ingress",
            "version": "1",
            "description": "Agency systems push dossier and feedback events (hub.contract.inbound"
            " JSON). Authenticate with X-Api-Key, or sign: X-Key-Id, X-Timestamp (Unix seconds,"
            f" within {tolerance_s:g} s of the hub's clock) and X-Signature = 'sha256=' + hex "
            "HMAC-SHA256(secret, X-Timestamp + '.' + body).",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "Signature": {"type": "apiKey", "in": "header", "name": "X-Signature"},
                "KeyId": {"type": "apiKey", "in": "header", "name": "X-Key-Id"},
                "Timestamp": {"type": "apiKey", "in": "header", "name": "X-Timestamp"},
            },
        },
    }
