"""Personal data stays where the receiving side needs it and nowhere else.

Dossiers are published whose applicant name, ID number, rating comment and complaint are
distinctive marker strings (valid per the inbound rules), plus bad inputs that carry markers
(an oversized name, an over-long ID number, a resubmission after the result, a complaint
about a dossier the hub never saw). Then no marker — NFC or NFD, raw or JSON-escaped — may
appear in the worker's log, /metrics, any header of any dead-letter topic, the HTTP API's
answers, or the audit topic; and the name must appear on portal.outbox (the portal needs
ChuHoSo). The finder is shown to fail on a source where a marker is present.
"""

from __future__ import annotations

import copy
import json
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from connectors.publisher import EventPublisher
from connectors.scenarios import VN, dossier_code, dossier_life
from hub.consumers import committed_consumer
from hub.contract.inbound import InboundDossierEvent, to_avro_record, validate_dossier_event
from hub.contract.registry import SchemaRegistryClient
from hub.contract.schemas import SchemaKind, load_schema
from hub.contract.serde import AvroDeserializer, AvroSerializer
from hub.dlq.headers import DeadLetter
from tests.fixtures.stack import Broker
from tests.fixtures.topics import read_topic
from tests.fixtures.worker import Worker

pytestmark = pytest.mark.broker

JUSTICE = "000.00.03.H40"
CRIMINAL_RECORD = "2.000488"  # 10 working days

NAME = "Đặng Thị Quỳnh Zyxqvwk"
LATE_NAME = "Phan Thị Ngẫu Wqzxkv"  # an overdue dossier's applicant
ID_NUMBER = "079304718265"
COMMENT = "Cán bộ Ưng Khuyết Vqzxjw rất nhiệt tình"
COMPLAINT = "Bà Lữ Thị Ngẫu Jxqzvw phản ánh chậm trễ"
RESUBMIT_NAME = "Hồ Sỹ Phượng Qwvxzj"
OVERSIZE_TOKEN = "Kqzvxwy"
OVERSIZE_NAME = ("Nguyễn Thị Ổn " + OVERSIZE_TOKEN + " ") * 12  # > 200 characters
LONG_ID = ID_NUMBER * 6  # > 64 characters
MARKERS = [
    NAME, LATE_NAME, ID_NUMBER, COMMENT, COMPLAINT, RESUBMIT_NAME, OVERSIZE_TOKEN,
    "Zyxqvwk", "Wqzxkv", "Vqzxjw", "Jxqzvw", "Qwvxzj",
]  # fmt: skip


def forms(marker: str) -> set[bytes]:
    """The byte strings a marker can take: NFC and NFD, UTF-8 and JSON \\u-escaped."""
    found: set[bytes] = set()
    for text in {unicodedata.normalize("NFC", marker), unicodedata.normalize("NFD", marker)}:
        found.add(text.encode())
        found.add(json.dumps(text)[1:-1].encode())  # ensure_ascii escapes
    return found


def leaks(data: bytes | str | None) -> list[str]:
    if data is None:
        return []
    raw = data.encode() if isinstance(data, str) else data
    return [m for m in MARKERS if any(form in raw for form in forms(m))]


def assert_absent(where: str, data: bytes | str | None) -> None:
    found = leaks(data)
    assert not found, f"personal data in {where}: markers {found}"


def test_the_finder_fails_on_data_that_carries_a_marker() -> None:
    nfd = unicodedata.normalize("NFD", NAME)
    assert nfd != NAME
    for present in (NAME, nfd, json.dumps({"n": nfd}), f"id={ID_NUMBER}".encode()):
        with pytest.raises(AssertionError, match="personal data in sample"):
            assert_absent("sample", present)
    assert_absent("sample", "Đ*** T** Q**** Z******")  # a masked name is fine


def _avro_with(event: dict[str, Any], field: str, value: str, serializer: AvroSerializer) -> bytes:
    """A valid event's Avro record with one payload field replaced, past the contract checks
    (any Kafka client can write to the hub's input topic)."""
    model = validate_dossier_event(event)
    assert isinstance(model, InboundDossierEvent), model
    record = to_avro_record(model, recorded_at=datetime.now(UTC), schema_version=1)
    payload = record["payload"]
    body = payload[1] if isinstance(payload, tuple) else payload
    body[field] = value
    return serializer(record)


def _until(check: Any, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_personal_data_reaches_the_portal_and_nothing_else(
    broker: Broker, hub_worker: Worker
) -> None:
    prefix = hub_worker.env["HUB_TOPIC_PREFIX"]
    dossier_topic = f"{prefix}dossier.events"
    start = datetime.now(VN) - timedelta(hours=6)
    marked, oversize, long_id, unseen = (dossier_code(JUSTICE, start, n) for n in (11, 13, 14, 15))
    life = dossier_life(marked, JUSTICE, CRIMINAL_RECORD, start, applicant=NAME, rating=5)
    life[0]["payload"]["applicant_id_number"] = ID_NUMBER
    life[-1]["payload"]["comment"] = unicodedata.normalize("NFD", COMMENT)  # hub stores NFC
    long_ago = datetime.now(VN) - timedelta(days=30)
    overdue = dossier_life(
        dossier_code(JUSTICE, long_ago, 12), JUSTICE, CRIMINAL_RECORD, long_ago,
        applicant=LATE_NAME, finish=False,
    )  # fmt: skip
    late = overdue[0]["dossier_code"]
    resubmitted = copy.deepcopy(life[0])
    resubmitted["event_id"] = "7f1d7d59-5a0e-4d0b-9a43-6d2f3c8e0b11"
    resubmitted["payload"]["applicant_name"] = RESUBMIT_NAME
    complaint = {
        "event_id": "4b0a8a3e-9c62-4c1f-8f7e-2a5d9e6c1b22",
        "event_type": "ComplaintFiled",
        "occurred_at": start.isoformat(),
        "source_system": "scenario",
        "agency_code": JUSTICE,
        "dossier_code": unseen,
        "payload": {"subject": "Khiếu nại", "content": COMPLAINT},
    }

    publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
    for event in [*life, *overdue, resubmitted, complaint]:
        assert publisher.publish(event) == [], event["event_type"]
    publisher.close()
    serializer = AvroSerializer(
        SchemaRegistryClient(broker.registry_url),
        f"{dossier_topic}-value",
        load_schema(SchemaKind.DOSSIER_EVENT),
    )
    first_of = {
        oversize: dossier_life(oversize, JUSTICE, CRIMINAL_RECORD, start)[0],
        long_id: dossier_life(long_id, JUSTICE, CRIMINAL_RECORD, start)[0],
    }
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for code, field, value in (
        (oversize, "applicant_name", OVERSIZE_NAME),
        (long_id, "applicant_id_number", LONG_ID),
    ):
        raw = _avro_with(first_of[code], field, value, serializer)
        producer.send(dossier_topic, key=code.encode(), value=raw).get(30)
    producer.close()

    # Wait for everything to land: 3 dossier dead letters, 1 feedback dead letter, the rating
    # applied, and the audit entries of every applied event.
    dossier_dlq = read_topic(broker.bootstrap, f"{dossier_topic}.dlq", expect=3)
    feedback_dlq = read_topic(broker.bootstrap, f"{prefix}feedback.events.dlq", expect=1)
    assert len(dossier_dlq) == 3 and len(feedback_dlq) == 1
    reasons = sorted(DeadLetter.from_headers(m.headers).reason for m in dossier_dlq + feedback_dlq)
    assert reasons == ["already_submitted", "unknown_dossier", "validation", "validation"]
    applied = len(life) + len(overdue)
    audit = read_topic(broker.bootstrap, f"{prefix}hub.audit", expect=applied)
    assert len(audit) == applied

    # Where it must be: the portal needs the applicant's name (ChuHoSo).
    outbox = read_topic(broker.bootstrap, f"{prefix}portal.outbox", expect=6)
    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    names = {decode(m.value)["dossier_code"]: decode(m.value)["applicant_name"] for m in outbox}
    assert names[marked] == NAME
    assert names[late] == LATE_NAME
    with pytest.raises(AssertionError, match=r"personal data in portal\.outbox"):
        assert_absent("portal.outbox", b"".join(m.value for m in outbox))

    # Nowhere else. The HTTP API, masked for every key without the right to names:
    status, view = _until(lambda: _rated(hub_worker, marked))
    assert status == 200, view
    assert view["applicant_name"] == "Đ*** T** Q**** Z******"
    assert_absent(f"GET /dossiers/{marked}", json.dumps(view, ensure_ascii=False))
    for path in (
        f"/dossiers/{late}", f"/dossiers/{oversize}", f"/dossiers/{unseen}",
        f"/overdue?agency={JUSTICE}", "/overdue", f"/agencies/{JUSTICE}/summary",
    ):  # fmt: skip
        for key in ("province-masked", "figures"):
            status, body = hub_worker.get(path, key=key)
            assert status in (200, 403, 404), (path, key, status)
            assert_absent(f"GET {path} as {key}", json.dumps(body, ensure_ascii=False))
    status, late_list = hub_worker.get(f"/overdue?agency={JUSTICE}", key="province-masked")
    assert late in [item["dossier_code"] for item in late_list["items"]]
    status, metrics = hub_worker.get("/metrics", key="figures")
    assert status == 200 and "hub_events_in_total" in metrics
    assert_absent("/metrics", metrics)

    # A key with the right sees the name, and that read is in the audit trail (who, when,
    # which dossier) before the answer: one read, one entry, the entry itself without the name.
    status, named = hub_worker.get(f"/dossiers/{marked}", key="province")
    assert (status, named["applicant_name"]) == (200, NAME)
    trail = read_topic(broker.bootstrap, f"{prefix}hub.audit", expect=applied + 1)
    reads = [json.loads(m.value) for m in trail if json.loads(m.value).get("kind") == "access"]
    assert [(r["who"], r["role"], r["dossier_code"]) for r in reads] == [
        ("province", "province", marked)
    ]
    assert reads[0]["at"].endswith("Z")
    audit = trail

    # Every header of every dead letter on every .dlq topic (the value keeps the original
    # bytes on purpose: replay needs them).
    consumer = committed_consumer(broker.bootstrap, client_id="test-personal-data")
    dlq_topics = sorted(t for t in consumer.topics() if t.startswith(prefix) and t.endswith(".dlq"))
    consumer.close()
    assert f"{dossier_topic}.dlq" in dlq_topics
    for topic in dlq_topics:
        for message in read_topic(broker.bootstrap, topic, expect=0):
            assert_absent(f"{topic} key", message.key)
            for name, value in message.headers or []:
                assert_absent(f"{topic} header {name}", value)
    assert leaks(b"".join(m.value for m in dossier_dlq)), "the dead letters keep the originals"

    # The audit trail: codes, ids and digests only.
    for message in audit:
        assert_absent("audit key", message.key)
        assert_absent("audit entry", message.value)

    # The worker's log, last (it has seen everything by now).
    assert_absent(f"worker log {hub_worker.log_path.name}", hub_worker.log_path.read_bytes())


def _rated(worker: Worker, code: str) -> tuple[int, Any] | None:
    status, view = worker.get(f"/dossiers/{code}", key="province-masked")
    if status == 200 and "ServiceRated" in json.dumps(view):
        return status, view
    return None
