"""The audit trail on a real broker: the worker chains every applied event; ``hub audit
verify`` finds the chains intact, then finds a forged entry and a skipped seq."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from connectors.publisher import EventPublisher
from connectors.scenarios import VN, dossier_code, dossier_life
from hub.audit.chain import entry_hash
from hub.audit.trail import encode_entry
from hub.audit.tsa import file_stem
from hub.consumers import READ_COMMITTED
from hub.engine.directory import partition_for
from tests.fixtures.stack import Broker
from tests.fixtures.topics import read_topic
from tests.fixtures.worker import Worker, audit_cli, start_worker, wait_for
from tests.unit.test_audit import make_authority

pytestmark = pytest.mark.broker

JUSTICE = "000.00.03.H40"
CRIMINAL_RECORD = "2.000488"


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

    app_id = hub_worker.env["HUB_APP_ID"]
    ok = audit_cli(broker, "verify", "--topic", audit_topic, app_id=app_id)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = [
        line for line in ok.stdout.splitlines() if line.startswith(prefix) and "inputs:" not in line
    ]
    assert lines and all(line.endswith(": OK") for line in lines), ok.stdout
    inputs = [line for line in ok.stdout.splitlines() if ": inputs: " in line]
    assert len(inputs) == len(lines) and all(line.endswith(": OK") for line in inputs), ok.stdout
    matched = sum(int(line.split("inputs: ")[1].split(" ")[0]) for line in inputs)
    assert matched == applied, ok.stdout  # every entry held against its input record
    counted = sum(int(line.split("entries ")[1].split(" ")[0]) for line in lines)
    assert counted == applied, ok.stdout

    # RFC 3161 stamps of the heads from a throwaway local authority, checked by verify.
    config, ca = make_authority(tmp_path)
    stamped = audit_cli(
        broker, "stamp", "--topic", audit_topic, "--out", str(tmp_path / "stamps"),
        "--tsa", str(config),
    )  # fmt: skip
    assert stamped.returncode == 0, stamped.stdout + stamped.stderr
    checked = audit_cli(
        broker, "verify", "--topic", audit_topic, "--tsa", str(tmp_path / "stamps"),
        "--tsa-ca", str(ca), app_id=app_id,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("time-stamp: OK") == len(lines), checked.stdout
    assert "Traceback" not in hub_worker.log_path.read_text(errors="replace")

    # kill -9 and a new worker (fresh data directory, same group): it reads the chains' heads
    # back from the audit topic and continues them; replays, if any, repeat entries exactly.
    hub_worker.stop(kill=True)
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
        resumed = audit_cli(broker, "verify", "--topic", audit_topic, app_id=app_id)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        lines = [
            line
            for line in resumed.stdout.splitlines()
            if line.startswith(prefix) and "inputs:" not in line
        ]
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
        unsigned = {k: v for k, v in head.items() if k not in ("key_id", "sig")}
        skipped = {**unsigned, "seq": head["seq"] + 2, "offset": head["offset"] + 1,
                   "prev_hash": head["hash"]}  # fmt: skip
        skipped["hash"] = entry_hash(skipped)
        producer.send(
            audit_topic, key=chains[1].encode(), value=encode_entry(skipped), partition=partition
        ).get(30)
    producer.close()

    bad = audit_cli(broker, "verify", "--topic", audit_topic, app_id=app_id)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    out = bad.stdout
    assert f"{chains[0]}: " in out
    assert f"PROBLEM altered at seq {heads[chains[0]][1]['seq']}" in out
    assert "hash mismatch" in out
    if len(chains) > 1:
        assert f"PROBLEM removed at seq {heads[chains[1]][1]['seq'] + 2}" in out
        assert "seq gap" in out


def chain_lines(out: str, chain: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(f"{chain}: ")]


def test_an_outsider_without_the_key_cannot_forge_delete_or_drop_unnoticed(
    broker: Broker, tmp_path: Path
) -> None:
    """Whoever can write the audit topic (or run the admin API) but lacks the workers' key:
    an appended entry with the right seq, link and hash is rejected, with or without a real
    input record behind it; a deleted prefix is a truncated chain; an input record consumed
    without entry or dead letter is reported."""
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"f{tag}.", f"hub-forge-{tag}"
    worker = start_worker(broker, tmp_path / "w", prefix=prefix, app_id=app_id)
    audit_topic, inputs = f"{prefix}hub.audit", f"{prefix}dossier.events"
    start = datetime.now(VN) - timedelta(hours=6)
    # two dossiers on each of two input partitions: one chain to forge, another to truncate
    by_partition: dict[int, list[str]] = {}
    for n in range(1, 100):
        code = dossier_code(JUSTICE, start, n)
        by_partition.setdefault(partition_for(code.encode(), 3), []).append(code)
    forge_p, cut_p = sorted(p for p, codes in by_partition.items() if len(codes) >= 2)[:2]
    codes = by_partition[forge_p][:2] + by_partition[cut_p][:2]
    lives = [dossier_life(c, JUSTICE, CRIMINAL_RECORD, start, rating=None) for c in codes]
    publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
    try:
        for event in [e for life in lives for e in life]:
            assert publisher.publish(event) == []
        applied = sum(len(life) for life in lives)
        records = read_topic(broker.bootstrap, audit_topic, expect=applied)
        wait_for(
            lambda: committed_total(broker, app_id, inputs) >= applied, 60, "offsets committed"
        )
    finally:
        worker.stop()
    clean = audit_cli(broker, "verify", "--topic", audit_topic, app_id=app_id)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "signatures NOT checked" not in clean.stdout
    # the chains' records never expire (a chain must start at seq 1 to verify)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, audit_topic)])
    finally:
        admin.close()
    [configs] = [c for by_name in described.values() for c in by_name.values()]
    assert configs["retention.ms"]["value"] == "-1", configs

    # a record consumed and dropped: published while no worker runs, then the hub's group
    # offset moved past it (what a worker losing a record would leave behind)
    before = end_offsets(broker, inputs)
    # A dossier none of the lives above is (number 9 was one of them on some days: its first
    # event was then a redelivery of one applied, which is accounted for), on a partition
    # with a chain
    extra_code = next(
        code
        for code in (dossier_code(JUSTICE, start, n) for n in range(100, 200))
        if partition_for(code.encode(), 3) in (forge_p, cut_p)
    )
    extra = dossier_life(extra_code, JUSTICE, CRIMINAL_RECORD, start, rating=None)[0]
    assert publisher.publish(extra) == []
    publisher.close()
    after = end_offsets(broker, inputs)
    [(dropped_partition, dropped_offset)] = [(p, before[p]) for p in after if after[p] > before[p]]
    commit_offset(broker, app_id, inputs, dropped_partition, after[dropped_partition])
    dropped = audit_cli(broker, "verify", "--topic", audit_topic, app_id=app_id)
    assert dropped.returncode == 1, dropped.stdout
    dropped_chain = f"{inputs}:{dropped_partition}"
    assert any(
        f"input offset {dropped_offset} was consumed" in line and "PROBLEM" in line
        for line in chain_lines(dropped.stdout, dropped_chain)
    ), dropped.stdout

    # forged entries, appended after a chain's signed head with the next seq, its hash as
    # prev_hash and a correct hash of their own: first one describing a real input record
    # (the head's), then one describing a record that does not exist
    entries = [json.loads(r.value) for r in records]
    by_chain: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for record, entry in zip(records, entries, strict=True):
        by_chain.setdefault(entry["chain"], []).append((record.partition, entry))
    chain = f"{inputs}:{forge_p}"
    partition, head = by_chain[chain][-1]
    assert "sig" in head and "key_id" in head  # the worker signed its last checkpoint's head
    real = {k: v for k, v in head.items() if k not in ("key_id", "sig", "hash")}
    real = {**real, "seq": head["seq"] + 1, "prev_hash": head["hash"]}
    real["hash"] = entry_hash(real)
    made_up = {**real, "seq": real["seq"] + 1, "prev_hash": real["hash"], "offset": 99_999,
               "event_id": str(uuid.uuid4()), "event_type": "DossierProcessed"}  # fmt: skip
    del made_up["hash"]
    made_up["hash"] = entry_hash(made_up)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for forged in (real, made_up):
        producer.send(
            audit_topic, key=chain.encode(), value=encode_entry(forged), partition=partition
        ).get(30)
    producer.close()
    forged_out = audit_cli(broker, "verify", "--topic", audit_topic, app_id=app_id)
    assert forged_out.returncode == 1
    lines = chain_lines(forged_out.stdout, chain)
    assert any(f"PROBLEM forged at seq {head['seq'] + 2}" in line for line in lines), lines
    assert any("no input record at offset 99999" in line for line in lines), lines
    # ... and without the made-up one, the real-record entry alone is still not the workers'
    unsigned_head = audit_cli(broker, "verify", "--topic", audit_topic, "--unsigned",
                              app_id=app_id)  # fmt: skip
    assert "signatures NOT checked" in unsigned_head.stdout
    assert not any("PROBLEM forged" in line for line in chain_lines(unsigned_head.stdout, chain)), (
        unsigned_head.stdout
    )  # the hash links alone cannot tell

    # a deleted prefix (the admin API's DeleteRecords): the chain starts after seq 1
    target = f"{inputs}:{cut_p}"
    first_kept = next(
        r.offset for r, e in zip(records, entries, strict=True)
        if e["chain"] == target and e["seq"] == 3
    )  # fmt: skip
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.delete_records({TopicPartition(audit_topic, cut_p): first_kept})
    finally:
        admin.close()
    truncated = audit_cli(broker, "verify", "--topic", audit_topic, app_id=app_id)
    assert truncated.returncode == 1
    assert any(
        "PROBLEM truncated at seq 3" in line for line in chain_lines(truncated.stdout, target)
    ), truncated.stdout


def end_offsets(broker: Broker, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=READ_COMMITTED)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def committed_total(broker: Broker, group: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)


def commit_offset(broker: Broker, group: str, topic: str, partition: int, offset: int) -> None:
    """Move the hub's committed offset (its group has no members now) past a record."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    request = ConsumerGroupTopicPartitions(group, [ConfluentPartition(topic, partition, offset)])
    for future in admin.alter_consumer_group_offsets([request]).values():
        future.result(timeout=30)


def test_a_worker_stamps_its_chain_heads_on_a_schedule(broker: Broker, tmp_path: Path) -> None:
    """``HUB_AUDIT_STAMP_INTERVAL_S``: the worker time-stamps the heads it committed at the
    configured authority (a local ``openssl ts`` one here), and verify checks the stamps."""
    config, ca = make_authority(tmp_path)
    stamps = tmp_path / "stamps"
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"s{tag}.", f"hub-stamp-{tag}"
    worker = start_worker(
        broker, tmp_path / "w", prefix=prefix, app_id=app_id,
        extra={"HUB_AUDIT_STAMP_INTERVAL_S": "1", "HUB_AUDIT_TSA": str(config),
               "HUB_AUDIT_STAMP_DIR": str(stamps)},
    )  # fmt: skip
    audit_topic = f"{prefix}hub.audit"
    start = datetime.now(VN) - timedelta(hours=6)
    life = dossier_life(dossier_code(JUSTICE, start, 1), JUSTICE, CRIMINAL_RECORD, start)
    try:
        publisher = EventPublisher(broker.bootstrap, broker.registry_url, topic_prefix=prefix)
        for event in life:
            assert publisher.publish(event) == []
        publisher.close()
        records = read_topic(broker.bootstrap, audit_topic, expect=len(life))
        last = json.loads(records[-1].value)
        head_file = stamps / f"{file_stem(last['chain'])}.head.json"
        wait_for(
            lambda: head_file.exists() and json.loads(head_file.read_bytes())["seq"] == last["seq"],
            60,
            "the latest head stamped",
        )
    finally:
        worker.stop()
    assert (stamps / f"{file_stem(last['chain'])}.tsr").exists()
    checked = audit_cli(
        broker, "verify", "--topic", audit_topic, "--tsa", str(stamps), "--tsa-ca", str(ca),
        app_id=app_id,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "time-stamp: OK" in checked.stdout
