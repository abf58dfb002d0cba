"""The province simulator through the real HTTP ingress to the real broker: every event the
ingress acknowledged is on Kafka once, each dossier's in its order, and after a transfer the
receiving agency's key wrote the dossier's later events."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.ingress import HttpIngress
from connectors.ingress.credentials import generate_credentials, write_credentials
from connectors.scenarios import VN
from connectors.simulator import (
    MixConfig,
    ProvinceModel,
    procedure_lookup,
    simulate,
)
from connectors.simulator_ingress import IngressPublisher, load_signing
from hub.contract.event_types import FEEDBACK_EVENT_TYPES
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from hub.reference import load_reference
from tests.fixtures.stack import Broker
from tests.fixtures.topics import read_topic
from tests.integration.test_ingress import start_ingress

pytestmark = pytest.mark.broker

DOSSIERS = 30
SEED = 23
MIX = MixConfig(transfer_share=0.3, rating_share=0.6)


def decoded(broker: Broker, topic: str, expect: int) -> list[dict[str, Any]]:
    """The topic's records decoded, each partition in offset order (a dossier's records share
    a partition, so this is their order on Kafka)."""
    records = read_topic(broker.bootstrap, topic, expect=expect)
    records.sort(key=lambda r: (r.partition, r.offset))
    registry = SchemaRegistryClient(broker.registry_url)
    try:
        decode = AvroDeserializer(registry)
        return [decode(r.value) for r in records]
    finally:
        registry.close()


@pytest.mark.timeout(240)
def test_simulated_province_through_the_ingress_arrives_once_in_order(
    broker: Broker, tmp_path: Path
) -> None:
    reference = load_reference()
    now = datetime.now(UTC)
    credentials = write_credentials(
        generate_credentials(a.code for a in reference.agencies.active(now.astimezone(VN).date())),
        tmp_path / "credentials.json",
    )
    prefix = f"sim{uuid.uuid4().hex[:8]}."
    # the test module's own limits (5 events a request, 4 KB) are more than one event needs
    runtime = start_ingress(broker, tmp_path, prefix)
    try:
        assert isinstance(runtime.connector, HttpIngress) and runtime.connector.port
        publisher = IngressPublisher(
            f"http://127.0.0.1:{runtime.connector.port}",
            load_signing(credentials, reference.agencies),
            procedure_effective_from=procedure_lookup(reference),
            workers=4,
        )
        try:
            report = simulate(
                publisher, SEED, DOSSIERS, 1000.0, now=now, reference=reference, mix=MIX
            )
        finally:
            publisher.close()
    finally:
        runtime.request_stop()
        runtime.join(timeout=60)

    stats = publisher.stats
    assert report.send_errors == 0, report.send_error_samples
    assert report.problems == 0 and report.dossiers == DOSSIERS
    assert len(stats.acknowledged) == report.events
    assert set(stats.statuses) == {202}, stats.statuses  # no 403: every key fit its events
    assert report.transfers > 0, "the seed must give at least one transfer"

    # the same seed and clock give the same plans: what each dossier should look like
    plans = {p.code: p for p in ProvinceModel(reference, SEED, now=now, mix=MIX).plans(DOSSIERS)}
    planned = {e["event_id"]: e for p in plans.values() for e in p.events}
    acknowledged = Counter(stats.acknowledged)
    assert set(acknowledged.values()) == {1} and set(acknowledged) == set(planned)
    n_feedback = sum(e["event_type"] in FEEDBACK_EVENT_TYPES for e in planned.values())

    dossier_records = decoded(broker, f"{prefix}dossier.events", len(planned) - n_feedback)
    feedback_records = decoded(broker, f"{prefix}feedback.events", n_feedback)
    on_kafka = Counter(str(r["event_id"]) for r in dossier_records + feedback_records)
    assert on_kafka == acknowledged, "every acknowledged event once, nothing else"

    by_dossier: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in dossier_records:
        by_dossier[record["dossier_code"]].append(record)
    transfers_seen = written_by_receiver = 0
    for code, plan in plans.items():
        wanted = [e["event_id"] for e in plan.events if e["event_type"] not in FEEDBACK_EVENT_TYPES]
        records = by_dossier[code]
        assert [str(r["event_id"]) for r in records] == wanted, f"{code} out of order"
        if plan.transfer_to is None:
            continue
        transfers_seen += 1
        kinds = [r["event_type"] for r in records]
        after = kinds.index("DossierTransferred") + 1
        sender_key = stats.key_ids[str(records[after - 1]["event_id"])]
        assert sender_key == f"{plan.agency}-sim"  # the sender writes the transfer itself
        later = [str(r["event_id"]) for r in records[after:]]
        later += [e["event_id"] for e in plan.events if e["event_type"] in FEEDBACK_EVENT_TYPES]
        # ... and the receiving agency's key every later event, which the ingress accepted
        # (an open dossier may have none yet)
        assert {stats.key_ids[i] for i in later} <= {f"{plan.transfer_to}-sim"}
        assert {r["agency_code"] for r in records[after:]} <= {plan.transfer_to}
        written_by_receiver += len(later)
    assert transfers_seen == report.transfers
    assert written_by_receiver > 0
