"""The hub worker on a real broker and registry: the view, the outputs, the dead letters.

Expected outputs are computed by running the same events through the pure domain
(``hub.domain.lifecycle.apply``), then compared with what the worker wrote to Kafka: every
input reflected once, nothing extra, order kept per dossier.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer

from connectors.publisher import EventPublisher
from connectors.scenarios import VN, dossier_code, dossier_life
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer, frame
from hub.dlq.headers import DeadLetter
from tests.fixtures.stack import Broker
from tests.fixtures.topics import read_topic as drain
from tests.fixtures.worker import Worker, start_worker

pytestmark = pytest.mark.broker

JUSTICE = "000.00.03.H40"  # Sở Tư pháp
HEALTH = "000.00.09.H40"  # Sở Y tế
CRIMINAL_RECORD = "2.000488"  # Cấp Phiếu lý lịch tư pháp


def test_dossiers_flow_through_the_worker_to_status_inbox_and_view(
    broker: Broker, hub_worker: Worker
) -> None:
    prefix = hub_worker.env["HUB_TOPIC_PREFIX"]
    publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
    start = datetime.now(VN) - timedelta(hours=6)
    plain = dossier_code(JUSTICE, start, 1)
    liaison = dossier_code(JUSTICE, start, 2)
    events = dossier_life(plain, JUSTICE, CRIMINAL_RECORD, start) + dossier_life(
        liaison, JUSTICE, CRIMINAL_RECORD, start, transfer_to=HEALTH, supplement=True
    )
    for event in events:
        assert publisher.publish(event) == []
    publisher.close()

    # Submitted, received, step started, step completed, processed, returned: 6 statuses;
    # the liaison dossier adds supplement requested, supplemented and transferred: 9.
    outbox = drain(broker.bootstrap, f"{prefix}portal.outbox", expect=15)
    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    by_dossier: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for message in outbox:
        record = decode(message.value)
        assert message.key.decode() == record["dossier_code"]
        by_dossier[record["dossier_code"]].append((record["status"], record["portal_status_code"]))
    assert by_dossier[plain] == [
        ("NEW", 1), ("RECEIVED", 2), ("PROCESSING", 4), ("PROCESSING", 4),
        ("PROCESSED", 9), ("RESULT_RETURNED", 10),
    ]  # fmt: skip
    assert [s for s, _ in by_dossier[liaison]] == [
        "NEW", "RECEIVED", "PROCESSING", "SUPPLEMENT_REQUESTED", "PROCESSING", "PROCESSING",
        "PROCESSING", "PROCESSED", "RESULT_RETURNED",
    ]  # fmt: skip
    assert len({decode(m.value)["event_id"] for m in outbox}) == len(outbox) == 15

    inbox = drain(broker.bootstrap, f"{prefix}agency.inbox.{HEALTH}", expect=1)
    assert [decode(m.value)["dossier_code"] for m in inbox] == [liaison]
    assert decode(inbox[0].value)["agency_code_handling"] == HEALTH

    # The rating comes last and produces no status record: wait for the view to take it.
    deadline = time.monotonic() + 60
    while True:
        status, view = hub_worker.get(f"/dossiers/{liaison}")
        rated = status == 200 and view["timeline"][-1][1] == "ServiceRated"
        if rated or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200, view
    assert view["status"] == "RESULT_RETURNED"
    assert view["portal_status_code"] == 10
    assert view["agency_code"] == HEALTH
    assert view["supplement_requests"] == 1
    assert view["applicant_name"] == "N***** V** A*"  # masked for a key without names
    status, named = hub_worker.get(f"/dossiers/{liaison}", key="province")
    assert (status, named["applicant_name"]) == (200, "Nguyễn Văn An")
    assert [entry[1] for entry in view["timeline"]][-1] == "ServiceRated"

    status, summary = hub_worker.get(f"/agencies/{HEALTH}/summary")
    assert status == 200
    assert summary["counts"]["returned"] == 1
    assert summary["counts"]["ratings_count"] == 1
    assert summary["satisfaction"] == 1.0

    # Bad input is the caller's mistake, named; an unknown agency is not found.
    status, body = hub_worker.get("/overdue?page=abc")
    assert (status, body["parameter"]) == (400, "page"), body
    status, body = hub_worker.get("/overdue?agency=H40.NOPE")
    assert (status, body["parameter"]) == (400, "agency"), body
    status, body = hub_worker.get(f"/overdue?agency={HEALTH}&size=10")
    assert status == 200 and body["size"] == 10, body
    status, body = hub_worker.get("/agencies/H40.NOPE/summary")
    assert status == 404 and "H40.NOPE" in body["error"], body

    status, metrics = hub_worker.get("/metrics")
    assert status == 200
    series = f'hub_dossiers{{agency="{JUSTICE}",channel="ONLINE",figure="returned"}} 1.0'
    assert series in metrics
    assert 'procedure="' not in metrics  # per procedure: the summary's, below
    status, summary = hub_worker.get(f"/agencies/{JUSTICE}/summary")
    assert status == 200
    assert summary["by_procedure"][CRIMINAL_RECORD]["counts"]["returned"] == 1


def test_bad_records_go_to_the_dead_letter_topic_and_good_ones_still_flow(
    broker: Broker, hub_worker: Worker
) -> None:
    prefix = hub_worker.env["HUB_TOPIC_PREFIX"]
    topic = f"{prefix}dossier.events"
    start = datetime.now(VN) - timedelta(hours=6)
    good = dossier_code(JUSTICE, start, 7)
    orphan = dossier_code(JUSTICE, start, 8)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    bad: dict[str, bytes] = {
        "truncated": b"\x00\x00",
        "bad-magic-byte": b"\x07\x00\x00\x00\x01hello",
        "unknown-schema-id": frame(987_654, b"\x02\x04"),
    }
    for value in bad.values():
        producer.send(topic, key=good.encode(), value=value).get(30)
    producer.close()
    publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
    life = dossier_life(good, JUSTICE, CRIMINAL_RECORD, start, rating=None)
    returned_first = dossier_life(orphan, JUSTICE, CRIMINAL_RECORD, start, rating=None)[-1]
    for event in [*life, returned_first, life[0]]:  # life[0] again: a redelivery
        assert publisher.publish(event) == []
    publisher.close()

    letters = drain(broker.bootstrap, f"{topic}.dlq", expect=4)
    reasons = {}
    for message in letters:
        letter = DeadLetter.from_headers(message.headers)
        reasons[letter.reason] = message.value
        assert letter.source_topic == topic
        assert letter.processor == "hub-worker"
    assert reasons.keys() == {*bad.keys(), "unknown_dossier"}
    for reason, value in bad.items():
        assert reasons[reason] == value  # the original bytes, untouched

    outbox = drain(broker.bootstrap, f"{prefix}portal.outbox", expect=6)
    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    statuses = [decode(m.value)["status"] for m in outbox]
    assert statuses == [
        "NEW",
        "RECEIVED",
        "PROCESSING",
        "PROCESSING",
        "PROCESSED",
        "RESULT_RETURNED",
    ]  # fmt: skip  (the redelivered submission added nothing)
    status, _ = hub_worker.get(f"/dossiers/{orphan}")
    assert status == 404  # the orphan event changed no state
    status, metrics = hub_worker.get("/metrics")
    assert 'hub_dead_letters_total{processor="hub-worker",reason="unknown_dossier"' in metrics


def test_a_group_with_offsets_but_no_changelog_stops_the_worker_with_what_to_do(
    broker: Broker, tmp_path: Path
) -> None:
    """A consumer group that committed input offsets without the engine's changelog (run by
    the faust engine of earlier releases, or its changelog deleted) cannot be restored: the
    worker must not start from those offsets with empty states, losing every dossier. It
    stops with one line saying why and what to do."""
    from confluent_kafka import Consumer, TopicPartition

    from hub.consumers import READ_COMMITTED
    from hub.topic_admin import TopicCreator
    from hub.worker.processor import Topics
    from hub.worker.topics import hub_topics

    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"ng{tag}.", f"hub-no-changelog-{tag}"
    topics = Topics(prefix)
    TopicCreator(broker.bootstrap, 3, 1).ensure(hub_topics(topics))
    old = Consumer(  # only commits, as an earlier release's worker did
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": app_id,
            "isolation.level": READ_COMMITTED,
        }
    )
    try:
        old.commit(
            offsets=[TopicPartition(topics.dossier_events, p, 5) for p in range(3)],
            asynchronous=False,
        )
    finally:
        old.close()
    worker = start_worker(broker, tmp_path / "w", prefix=prefix, app_id=app_id, wait_ready=False)
    try:
        worker.process.wait(timeout=150)
    except subprocess.TimeoutExpired:
        worker.stop(kill=True)
        pytest.fail(f"the worker did not stop:\n{worker.log_tail()}", pytrace=False)
    assert worker.process.returncode != 0
    log = worker.log_path.read_text(errors="replace")
    assert "has no checkpoint" in log and "new HUB_APP_ID" in log, worker.log_tail()
