"""The audit trail on a real broker: the worker chains every applied event; ``hub audit
verify`` finds the chains intact, then finds a forged entry and a skipped seq."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from connectors.publisher import EventPublisher
from connectors.scenarios import VN, dossier_code, dossier_life
from hub.audit.chain import entry_hash
from hub.audit.trail import encode_entry
from tests.fixtures.stack import Broker
from tests.fixtures.topics import read_topic
from tests.fixtures.worker import ROOT, Worker, start_worker
from tests.unit.test_audit import make_authority

pytestmark = pytest.mark.broker

JUSTICE = "000.00.03.H40"
CRIMINAL_RECORD = "2.000488"


def audit_cli(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", "audit", *args, "--bootstrap-server", broker.bootstrap],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_applied_event_is_chained_and_forgeries_are_found(
    broker: Broker, hub_worker: Worker, tmp_path: Path
) -> None:
    prefix = hub_worker.env["HUB_TOPIC_PREFIX"]
    audit_topic = f"{prefix}hub.audit"
    start = datetime.now(VN) - timedelta(hours=6)
    lives = [
        dossier_life(dossier_code(JUSTICE, start, n), JUSTICE, CRIMINAL_RECORD, start, rating=None)
        for n in (1, 2, 3)
    ]
    publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
    for event in [e for life in lives for e in life] + [lives[0][0]]:  # + a redelivery
        assert publisher.publish(event) == []
    publisher.close()
    applied = sum(len(life) for life in lives)  # the redelivery is a duplicate: no entry

    records = read_topic(broker.bootstrap, audit_topic, expect=applied)
    entries = [json.loads(r.value) for r in records]
    assert len(entries) == applied
    assert {e["event_id"] for e in entries} == {e["event_id"] for life in lives for e in life}
    for record, entry in zip(records, entries, strict=True):
        assert record.key.decode() == entry["chain"] == f"{entry['topic']}:{entry['partition']}"
        assert record.partition == entry["partition"]  # one chain, one audit partition

    ok = audit_cli(broker, "verify", "--topic", audit_topic)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = [line for line in ok.stdout.splitlines() if line.startswith(prefix)]
    assert lines and all(line.endswith(": OK") for line in lines), ok.stdout
    counted = sum(int(line.split("entries ")[1].split(" ")[0]) for line in lines)
    assert counted == applied, ok.stdout

    # RFC 3161 stamps of the heads from a throwaway local authority, checked by verify.
    config, ca = make_authority(tmp_path)
    stamped = audit_cli(
        broker, "stamp", "--topic", audit_topic, "--out", str(tmp_path / "stamps"),
        "--tsa-config", str(config),
    )  # fmt: skip
    assert stamped.returncode == 0, stamped.stdout + stamped.stderr
    checked = audit_cli(
        broker, "verify", "--topic", audit_topic, "--tsa", str(tmp_path / "stamps"),
        "--tsa-ca", str(ca),
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("time-stamp: OK") == len(lines), checked.stdout
    assert "Traceback" not in hub_worker.log_path.read_text(errors="replace")

    # kill -9 and a new worker (fresh data directory, same group): it reads the chains' heads
    # back from the audit topic and continues them; replays, if any, repeat entries exactly.
    hub_worker.stop(kill=True)
    app_id = hub_worker.env["HUB_APP_ID"]
    again = start_worker(broker, tmp_path / "w2", prefix=prefix, app_id=app_id)
    try:
        more = dossier_life(
            dossier_code(JUSTICE, start, 4), JUSTICE, CRIMINAL_RECORD, start, rating=None
        )
        publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
        for event in more:
            assert publisher.publish(event) == []
        publisher.close()
        applied += len(more)
        deadline = time.monotonic() + 60
        while True:
            records = read_topic(broker.bootstrap, audit_topic, expect=applied)
            entries = [json.loads(r.value) for r in records]
            if len({(e["chain"], e["seq"]) for e in entries}) >= applied:
                break
            assert time.monotonic() < deadline, f"{len(entries)} audit records of {applied}"
            time.sleep(0.5)
        resumed = audit_cli(broker, "verify", "--topic", audit_topic)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        lines = [line for line in resumed.stdout.splitlines() if line.startswith(prefix)]
        counted = sum(int(line.split("entries ")[1].split(" ")[0]) for line in lines)
        assert counted == applied, resumed.stdout
        assert "Traceback" not in again.log_path.read_text(errors="replace")
    finally:
        again.stop()

    # Forge: a copy of one chain's last entry with another dossier code; in a second chain
    # (when there is one) an entry that skips a seq but is otherwise well formed.
    heads: dict[str, tuple[int, dict[str, Any]]] = {}
    for record, entry in zip(records, entries, strict=True):
        heads[entry["chain"]] = (record.partition, entry)
    chains = sorted(heads)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    partition, head = heads[chains[0]]
    altered = {**head, "dossier_code": dossier_code(JUSTICE, start, 99)}
    producer.send(
        audit_topic, key=chains[0].encode(), value=encode_entry(altered), partition=partition
    ).get(30)
    if len(chains) > 1:
        partition, head = heads[chains[1]]
        skipped = {**head, "seq": head["seq"] + 2, "offset": head["offset"] + 1,
                   "prev_hash": head["hash"]}  # fmt: skip
        skipped["hash"] = entry_hash(skipped)
        producer.send(
            audit_topic, key=chains[1].encode(), value=encode_entry(skipped), partition=partition
        ).get(30)
    producer.close()

    bad = audit_cli(broker, "verify", "--topic", audit_topic)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    out = bad.stdout
    assert f"{chains[0]}: " in out
    assert f"PROBLEM altered at seq {heads[chains[0]][1]['seq']}" in out
    assert "hash mismatch" in out
    if len(chains) > 1:
        assert f"PROBLEM removed at seq {heads[chains[1]][1]['seq'] + 2}" in out
        assert "seq gap" in out
