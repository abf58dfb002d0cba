"""The JSON bridge's per-record rules, without Kafka: what :meth:`JsonBridgeConnector.check`
accepts and the reason and detail of the dead letter of what it refuses. The broker-backed
corpus (tests/integration/test_bad_input_corpus.py) runs the same rules end to end."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.json_bridge import JsonBridgeConnector
from connectors.sdk import ConnectorConfigError, PermanentError, SinkRecord, parse_config
from hub.contract.inbound import InboundDossierEvent, InboundFeedbackEvent

AGENCY = "000.00.03.H40"
DOSSIER_TOPIC = "p.dossier.events.json"
FEEDBACK_TOPIC = "p.feedback.events.json"
CLASS = "connectors.json_bridge:JsonBridgeConnector"


def _config(**extra: Any) -> dict[str, Any]:
    return {
        "name": "json-bridge",
        "connector.class": CLASS,
        "topics": "dossier.events.json,feedback.events.json",
        "value.converter": "bytes",
        "errors.tolerance": "all",
        "topic.prefix": "p.",
        **extra,
    }


@pytest.fixture(scope="module")
def bridge() -> JsonBridgeConnector:
    config = parse_config(_config(), "test")
    connector = config.connector_cls(config)
    assert isinstance(connector, JsonBridgeConnector)
    return connector


def _event(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC) - timedelta(minutes=1)
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "DossierSubmitted",
        "occurred_at": now.isoformat(),
        "source_system": "unit-tests",
        "agency_code": AGENCY,
        "dossier_code": f"{AGENCY}-{now:%y%m%d}-0042",
        "payload": {
            "procedure_code": "2.000488",
            "channel": 2,
            "applicant_name": "Nguyễn Văn An",
            "submitted_at": now.isoformat(),
        },
    }
    event.update(overrides)
    return event


def _rated(code: str) -> dict[str, Any]:
    return _event(event_type="ServiceRated", dossier_code=code, payload={"score": 5})


def _record(
    value: bytes | None, key: bytes | None = None, topic: str = DOSSIER_TOPIC
) -> SinkRecord:
    return SinkRecord(topic=topic, partition=0, offset=7, key=key, value=value, raw_value=value)


def _refused(bridge: JsonBridgeConnector, record: SinkRecord) -> tuple[str, str]:
    """(reason, detail) of the dead letter the runtime writes for ``record``."""
    with pytest.raises(PermanentError) as caught:
        bridge.check(record)
    return caught.value.reason, caught.value.detail


def test_a_valid_event_keyed_by_its_dossier_code_passes(bridge: JsonBridgeConnector) -> None:
    event = _event()
    code = event["dossier_code"].encode()
    checked = bridge.check(_record(json.dumps(event).encode(), code))
    assert isinstance(checked, InboundDossierEvent)
    assert str(checked.event_id) == event["event_id"]
    # a UTF-8 BOM, as some Windows systems write, is tolerated
    assert bridge.check(_record(b"\xef\xbb\xbf" + json.dumps(event).encode(), code))
    rated = bridge.check(_record(json.dumps(_rated(code.decode())).encode(), code, FEEDBACK_TOPIC))
    assert isinstance(rated, InboundFeedbackEvent)


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (json.dumps(_event()).encode("utf-16"), "undecodable", "value is not UTF-8"),
        (b"<event>Nguyen</event>", "undecodable", "value is not JSON"),
        (None, "empty-value", "record has no value"),
        (json.dumps(json.dumps(_event())).encode(), "validation", "<event>: type"),
        (b"[1, 2]", "validation", "got an array"),
        (json.dumps(_event(event_id=42)).encode(), "validation", "event_id: type"),
        (json.dumps(_event(event_type="DossierTeleported")).encode(), "validation",
         "event_type: unknown_event_type"),
    ],
)  # fmt: skip
def test_what_cannot_be_used_names_its_reason_and_where(
    bridge: JsonBridgeConnector, value: bytes | None, reason: str, detail: str
) -> None:
    key = _event()["dossier_code"].encode()
    got_reason, got_detail = _refused(bridge, _record(value, key))
    assert got_reason == reason
    assert detail in got_detail


def test_the_detail_never_quotes_the_value(bridge: JsonBridgeConnector) -> None:
    secret = "Trần Thị Bí Mật"
    _, detail = _refused(bridge, _record(f"<applicant>{secret}</applicant>".encode(), b"k"))
    assert secret not in detail
    event = _event()
    event["payload"]["applicant_name"] = secret * 40
    _, detail = _refused(bridge, _record(json.dumps(event).encode(), b"k"))
    assert secret not in detail


def test_the_key_must_be_the_dossier_code(bridge: JsonBridgeConnector) -> None:
    event = _event()
    value = json.dumps(event).encode()
    reason, detail = _refused(bridge, _record(value, b"000.00.03.H40-250101-0001"))
    assert reason == "validation" and "key: key_mismatch" in detail
    reason, detail = _refused(bridge, _record(value, None))
    assert reason == "validation" and "(the record has no key)" in detail


def test_each_event_kind_belongs_on_its_own_topic(bridge: JsonBridgeConnector) -> None:
    event = _event()
    code = event["dossier_code"]
    reason, detail = _refused(
        bridge, _record(json.dumps(event).encode(), code.encode(), FEEDBACK_TOPIC)
    )
    assert reason == "validation"
    assert (
        f"event_type: wrong_topic (a DossierSubmitted event belongs on {DOSSIER_TOPIC})" in detail
    )
    rated = json.dumps(_rated(code)).encode()
    reason, detail = _refused(bridge, _record(rated, code.encode(), DOSSIER_TOPIC))
    assert f"a ServiceRated event belongs on {FEEDBACK_TOPIC}" in detail


def test_procedure_dates_are_checked_unless_switched_off() -> None:
    before = _event(occurred_at="2023-06-01T09:00:00+07:00")
    before["payload"].update(procedure_code="1.012790", submitted_at=before["occurred_at"])
    record = _record(json.dumps(before).encode(), before["dossier_code"].encode())
    checking = parse_config(_config(), "test")
    reason, detail = _refused(JsonBridgeConnector(checking), record)
    assert reason == "validation"
    assert "occurred_at: before_procedure" in detail
    lenient = parse_config(_config(settings={"check_procedure_dates": False}), "test")
    assert JsonBridgeConnector(lenient).check(record)


def test_the_bridge_needs_the_original_bytes() -> None:
    with pytest.raises(ConnectorConfigError, match=r"value\.converter: must_be_bytes"):
        parse_config(_config(**{"value.converter": "json"}), "test")
