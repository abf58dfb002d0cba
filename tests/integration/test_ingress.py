"""The HTTP ingress on the real broker: every answer it gives, and 202 only after Kafka's ack."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connectors.ingress import HttpIngress, hash_api_key, sign
from connectors.sdk import parse_config
from connectors.sdk.runtime import ConnectorRuntime
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from hub.stack.tools import free_port
from tests.contract.connector_contract import AGENCY, make_event, read_topic, wait_for
from tests.fixtures.stack import Broker

pytestmark = pytest.mark.broker

API_KEY = "ingress-test-key-0123456789"
HMAC_SECRET = "ingress-test-hmac-secret-0123456789"
OTHER_AGENCY = "000.00.05.H40"  # not related to AGENCY by any merger
PREDECESSOR = "000.00.22.H40"  # merged into AGENCY in 2025


@dataclass
class Ingress:
    runtime: ConnectorRuntime
    prefix: str
    credentials: Path
    accepted: list[str] = field(default_factory=list)
    statuses: set[int] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert isinstance(self.runtime.connector, HttpIngress)
        assert self.runtime.connector.port is not None
        return self.runtime.connector.port


def credentials_doc(*extra: dict[str, Any]) -> str:
    return json.dumps(
        {
            "credentials": [
                {"agency_code": AGENCY, "key_id": "main", "api_key_sha256": hash_api_key(API_KEY)},
                {"agency_code": AGENCY, "key_id": "hmac-1", "hmac_secret": HMAC_SECRET},
                *extra,
            ]
        }
    )


def start_ingress(
    broker: Broker, tmp: Path, prefix: str, bootstrap: str | None = None, **settings: Any
) -> ConnectorRuntime:
    credentials = tmp / "credentials.json"
    if not credentials.exists():
        credentials.write_text(credentials_doc(), encoding="utf-8")
    config = parse_config(
        {
            "name": f"ingress-{uuid.uuid4().hex[:6]}",
            "connector.class": "http-ingress",
            "bootstrap.servers": bootstrap or broker.bootstrap,
            "schema.registry.url": broker.registry_url,
            "topic.prefix": prefix,
            "settings": {
                "port": 0,
                "credentials_file": str(credentials),
                "reload_interval_s": 0,
                "max_body_bytes": 4096,
                "max_batch": 5,
                **settings,
            },
        },
        "test",
    )
    runtime = ConnectorRuntime(config)
    runtime.start_thread()
    wait_for(lambda: runtime.started.is_set(), 60, "the ingress to start")
    if runtime.error is not None:
        raise runtime.error
    return runtime


@pytest.fixture(scope="module")
def ingress(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    tmp = tmp_path_factory.mktemp("ingress")
    prefix = f"i{uuid.uuid4().hex[:8]}."
    runtime = start_ingress(broker, tmp, prefix)
    try:
        yield Ingress(runtime, prefix, tmp / "credentials.json")
    finally:
        runtime.request_stop()
        runtime.join(timeout=60)


def call(
    port: int,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, raw, got = exc.code, exc.read(), dict(exc.headers)
    try:
        return status, json.loads(raw), got
    except ValueError:
        return status, raw.decode(), got


def push(
    ingress: Ingress,
    events: Any,
    *,
    key: str | None = API_KEY,
    path: str = "/v1/dossier-events",
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    body = raw if raw is not None else json.dumps(events).encode()
    sent = dict(headers or {})
    if key is not None:
        sent["X-Api-Key"] = key
    status, answer, got = call(ingress.port, path, body, sent)
    ingress.statuses.add(status)
    if status == 202:
        ingress.accepted.extend(answer["event_ids"])
    return status, answer, got


def decoded(broker: Broker, topic: str, at_least: int) -> list[dict[str, Any]]:
    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    return [decode(r.value) for r in read_topic(broker, topic, at_least=at_least)]


def test_no_credentials_is_401(ingress: Ingress) -> None:
    status, body, headers = push(ingress, make_event(), key=None)
    assert status == 401
    assert body["rule"] == "missing_credentials"
    assert "WWW-Authenticate" in headers
    status, body, _ = push(ingress, make_event(), key="not-a-key-we-know-000000")
    assert (status, body["rule"]) == (401, "bad_api_key")


def test_good_event_is_202_and_on_dossier_events(ingress: Ingress, broker: Broker) -> None:
    event = make_event()
    status, body, _ = push(ingress, event)
    assert status == 202, body
    assert body == {"accepted": 1, "event_ids": [event["event_id"]]}
    records = decoded(broker, f"{ingress.prefix}dossier.events", 1)
    found = [r for r in records if str(r["event_id"]) == event["event_id"]]
    assert found and found[0]["dossier_code"] == event["dossier_code"]
    assert found[0]["payload"][1]["applicant_name"] == "Nguyễn Thị Hồng Nhung"


def test_batch_and_feedback_endpoint(ingress: Ingress, broker: Broker) -> None:
    batch = [make_event() for _ in range(3)]
    status, body, _ = push(ingress, batch)
    assert (status, body["accepted"]) == (202, 3)
    feedback = make_event(event_type="ServiceRated", payload={"score": 5})
    status, body, _ = push(ingress, feedback, path="/v1/feedback-events")
    assert status == 202, body
    records = decoded(broker, f"{ingress.prefix}feedback.events", 1)
    assert feedback["event_id"] in {str(r["event_id"]) for r in records}


def test_another_agencys_dossier_is_403_without_personal_data(ingress: Ingress) -> None:
    event = make_event(agency=OTHER_AGENCY)
    status, body, _ = push(ingress, [make_event(), event])
    assert status == 403
    assert (body["rule"], body["index"], body["path"]) == ("agency_scope", 1, "agency_code")
    text = json.dumps(body, ensure_ascii=False)
    assert event["dossier_code"] not in text and "Nguyễn" not in text


def test_a_predecessor_agencys_dossier_is_accepted(ingress: Ingress) -> None:
    status, body, _ = push(ingress, make_event(agency=PREDECESSOR))
    assert status == 202, body


def test_malformed_is_422_with_field_paths(ingress: Ingress) -> None:
    event = make_event()
    del event["payload"]["procedure_code"]
    event["payload"]["channel"] = 9
    status, body, _ = push(ingress, [make_event(), event])
    assert status == 422
    problems = {(p["index"], p["path"], p["rule"]) for p in body["problems"]}
    assert (1, "payload.procedure_code", "missing") in problems
    assert any(p[:2] == (1, "payload.channel") for p in problems)
    assert all(p["index"] == 1 for p in body["problems"])  # the good one has none

    status, body, _ = push(ingress, None, raw=b'{"event_id": ')
    assert (status, body["rule"]) == (422, "json")
    status, body, _ = push(ingress, [make_event() for _ in range(6)])
    assert (status, body["rule"]) == (422, "max_items")
    feedback = make_event(event_type="ServiceRated", payload={"score": 5})
    status, body, _ = push(ingress, feedback)
    assert status == 422
    assert body["problems"][0]["rule"] == "wrong_endpoint"


def test_oversized_body_is_413(ingress: Ingress) -> None:
    status, body, _ = push(ingress, None, raw=b"[" + b" " * 5000 + b"]")
    assert (status, body["rule"]) == (413, "max_body_bytes")


def test_hmac_signature_accepted_and_refused(ingress: Ingress) -> None:
    body = json.dumps(make_event()).encode()
    stamp = str(int(time.time()))
    signed = {"X-Key-Id": "hmac-1", "X-Timestamp": stamp}
    good = {**signed, "X-Signature": sign(HMAC_SECRET, stamp, body)}
    status, answer, _ = push(ingress, None, key=None, raw=body, headers=good)
    assert status == 202, answer

    tampered = body.replace(b"contract-tests", b"contract-tests-x")
    status, answer, _ = push(ingress, None, key=None, raw=tampered, headers=good)
    assert (status, answer["rule"]) == (401, "bad_signature")

    old = str(int(time.time()) - 600)
    stale = {"X-Key-Id": "hmac-1", "X-Timestamp": old, "X-Signature": sign(HMAC_SECRET, old, body)}
    status, answer, _ = push(ingress, None, key=None, raw=body, headers=stale)
    assert (status, answer["rule"]) == (401, "stale_timestamp")


def test_key_rotation_without_restart(ingress: Ingress) -> None:
    old_key, new_key = "rotation-old-key-0123456789", "rotation-new-key-0123456789"
    entry = {"agency_code": AGENCY}
    ingress.credentials.write_text(
        credentials_doc({**entry, "key_id": "r1", "api_key_sha256": hash_api_key(old_key)}),
        encoding="utf-8",
    )
    assert push(ingress, make_event(), key=old_key)[0] == 202
    assert push(ingress, make_event(), key=new_key)[0] == 401
    ingress.credentials.write_text(
        credentials_doc({**entry, "key_id": "rot-2", "api_key_sha256": hash_api_key(new_key)}),
        encoding="utf-8",
    )
    assert push(ingress, make_event(), key=new_key)[0] == 202
    status, body, _ = push(ingress, make_event(), key=old_key)
    assert (status, body["rule"]) == (401, "bad_api_key")
    # a broken file keeps the keys in force, and health says why
    ingress.credentials.write_text("{not json", encoding="utf-8")
    assert push(ingress, make_event(), key=new_key)[0] == 202
    assert "credentials_error" in call(ingress.port, "/health")[1]
    ingress.credentials.write_text(credentials_doc(), encoding="utf-8")


def test_back_pressure_429_and_broker_down_503(
    ingress: Ingress, broker: Broker, tmp_path: Path
) -> None:
    # a second ingress whose broker is a closed port: requests wait ack_timeout_s, then 503
    closed = f"127.0.0.1:{free_port()}"
    runtime = start_ingress(
        broker,
        tmp_path,
        ingress.prefix,
        bootstrap=closed,
        max_in_flight=1,
        ack_timeout_s=2,
        broker_retry_after_s=3,
    )
    try:
        assert isinstance(runtime.connector, HttpIngress)
        down = Ingress(runtime, ingress.prefix, tmp_path / "credentials.json")
        first: list[tuple[int, Any, dict[str, str]]] = []
        waiting = threading.Thread(target=lambda: first.append(push(down, make_event())))
        waiting.start()
        connector = runtime.connector
        wait_for(lambda: connector._in_flight == 1, 10, "the first request to be in flight")
        status, body, headers = push(down, make_event())
        assert (status, body["rule"], headers["Retry-After"]) == (429, "max_in_flight", "1")
        waiting.join(30)
        status, body, headers = first[0]
        assert (status, body["rule"], headers["Retry-After"]) == (503, "broker_unavailable", "3")
        assert call(down.port, "/health")[0] == 503
        ingress.statuses |= down.statuses
    finally:
        runtime.request_stop()
        runtime.join(timeout=60)

    # nothing that was answered 202 is missing from Kafka
    assert ingress.accepted, "earlier tests accepted events"
    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    ids: set[str] = set()
    for topic in ("dossier.events", "feedback.events"):
        for record in read_topic(broker, f"{ingress.prefix}{topic}", timeout=10):
            ids.add(str(decode(record.value)["event_id"]))
    assert set(ingress.accepted) <= ids


def test_openapi_matches_the_server(ingress: Ingress) -> None:
    status, doc, _ = call(ingress.port, "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    for path in ("/v1/dossier-events", "/v1/feedback-events"):
        post = doc["paths"][path]["post"]
        documented = {int(code) for code in post["responses"]}
        assert ingress.statuses <= documented, ingress.statuses - documented
        batch = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
        assert batch["maxItems"] == 5
    schemas = doc["components"]["schemas"]
    assert "payload" in schemas["DossierEvent"]["properties"]
    assert {"X-Api-Key", "X-Signature"} <= {
        s["name"] for s in doc["components"]["securitySchemes"].values()
    }


def test_health_and_metrics(ingress: Ingress) -> None:
    status, health, _ = call(ingress.port, "/health")
    assert (status, health["status"], health["kafka"]) == (200, "up", True)
    status, text, _ = call(ingress.port, "/metrics")
    assert status == 200
    name = ingress.runtime.name
    assert f'hub_connector_records_total{{connector="{name}",outcome="published"}}' in text
    assert f'hub_connector_up{{connector="{name}"}} 1.0' in text
    assert "hub_ingress_requests_total" in text
