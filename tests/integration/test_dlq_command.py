"""``hub dlq list | replay`` on a real broker: filters, exact bytes back, dry runs, empty topics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer, TopicPartition

from hub.consumers import committed_consumer
from hub.dlq.headers import HEADER_ATTEMPT, HEADER_REPLAY_OF, DeadLetter, dlq_topic
from hub.dlq.publisher import DeadLetterPublisher
from tests.fixtures.stack import Broker, _delete_topics, create_topics, unique_topic

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
AGENCY_A = "000.00.12.H40"
AGENCY_B = "000.00.31.H40"


@dataclass(frozen=True)
class Sent:
    reason: str
    agency: str | None
    key: bytes | None
    value: bytes
    failed_at: datetime
    dlq_offset: int = -1


def hub_dlq(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", "dlq", *args],
        cwd=ROOT,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def json_lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = committed_consumer(bootstrap, client_id="test-dlq-reader")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        end = consumer.end_offsets(partitions)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


@dataclass(frozen=True)
class Topics:
    source: str
    dlq: str
    sent: list[Sent]


@pytest.fixture
def topics(broker: Broker) -> Iterator[Topics]:
    source = unique_topic("dlq.src")
    dlq = dlq_topic(source)
    create_topics(broker.bootstrap, [source, dlq])
    plan = [
        Sent("validation", AGENCY_A, b"000.00.12.H40-250805-0001", b"\x00\x00\x00\x00\x07\xff\x01",
             datetime(2025, 8, 5, 1, 0, tzinfo=UTC)),
        Sent("illegal_transition", AGENCY_B, b"000.00.31.H40-250805-0002", b"\x00\x00\x00\x00\x07a",
             datetime(2025, 8, 5, 2, 0, tzinfo=UTC)),
        Sent("validation", AGENCY_B, b"000.00.31.H40-250805-0003", b"\x00\x00\x00\x00\x08\x00\x00",
             datetime(2025, 8, 6, 3, 0, tzinfo=UTC)),
        Sent("bad-magic-byte", None, None, b"{\"not\": \"avro\"}",
             datetime(2025, 8, 7, 4, 0, tzinfo=UTC)),
    ]  # fmt: skip
    sent = []
    with DeadLetterPublisher(broker.bootstrap) as publisher:
        for number, item in enumerate(plan):
            letter = DeadLetter(
                reason=item.reason,
                detail=f"test failure {number} ({item.reason})",
                exception_class="tests.Failure",
                exception_message=f"failure {number}",
                source_topic=source,
                source_partition=0,
                source_offset=100 + number,
                processor="tests.dlq",
                agency_code=item.agency,
                event_type="DOSSIER_RECEIVED" if item.agency else None,
                dossier_code=item.key.decode() if item.key else None,
                failed_at=item.failed_at,
            )
            publisher.publish(letter, item.key, item.value, [("traceparent", b"00-abc-01")])
    for record in read_all(broker.bootstrap, dlq):
        item = plan[record.offset]
        sent.append(replace(item, dlq_offset=record.offset))
    assert [s.reason for s in sent] == [p.reason for p in plan]
    yield Topics(source, dlq, sent)
    _delete_topics(broker.bootstrap, [source, dlq])


def test_list_shows_every_dead_letter_with_its_headers(broker: Broker, topics: Topics) -> None:
    rows = json_lines(hub_dlq(broker, "list", "--topic", topics.dlq, "--json"))
    assert [r["dlq_offset"] for r in rows] == [s.dlq_offset for s in topics.sent]
    first = rows[0]
    assert first["reason"] == "validation"
    assert first["agency"] == AGENCY_A
    assert first["source_topic"] == topics.source
    assert (first["source_partition"], first["source_offset"]) == (0, 100)
    assert first["processor"] == "tests.dlq"
    assert first["failed_at"] == "2025-08-05T01:00:00+00:00"
    assert first["attempt"] == 1

    table = hub_dlq(broker, "list", "--topic", topics.dlq)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["OFFSET", "FAILED", "AT"]
    assert "illegal_transition" in lines[2]
    assert f"{topics.source}[0]@101" in lines[2]
    assert "test failure 1 (illegal_transition)" in lines[2]
    assert lines[-1] == f"4 of 4 dead letters in {topics.dlq}"


def test_list_filters_by_reason_agency_time_and_limit(broker: Broker, topics: Topics) -> None:
    def offsets(*args: str) -> list[int]:
        rows = json_lines(hub_dlq(broker, "list", "--topic", topics.dlq, "--json", *args))
        return [r["source_offset"] for r in rows]

    assert offsets("--reason", "validation") == [100, 102]
    assert offsets("--agency", AGENCY_B) == [101, 102]
    assert offsets("--reason", "validation", "--agency", AGENCY_B) == [102]
    assert offsets("--since", "2025-08-05T02:00:00Z", "--until", "2025-08-07") == [101, 102]
    assert offsets("--since", "2025-08-07") == [103]
    assert offsets("--limit", "2") == [100, 101]

    none = hub_dlq(broker, "list", "--topic", topics.dlq, "--reason", "unknown_dossier")
    assert none.returncode == 0
    assert none.stdout.strip() == f"no dead letters in {topics.dlq} match (4 read)"


def test_replay_by_reason_puts_exactly_the_original_bytes_back(
    broker: Broker, topics: Topics
) -> None:
    result = hub_dlq(broker, "replay", "--topic", topics.dlq, "--reason", "validation")
    assert result.returncode == 0, result.stderr
    assert "replayed 2/2" in result.stderr
    assert f"replayed 2 of 4 dead letters from {topics.dlq} to {topics.source}" in result.stdout

    replayed = read_all(broker.bootstrap, topics.source)
    expected = [s for s in topics.sent if s.reason == "validation"]
    assert [(r.key, r.value) for r in replayed] == [(s.key, s.value) for s in expected]
    for record, item in zip(replayed, expected, strict=True):
        headers = dict(record.headers)
        assert headers[HEADER_REPLAY_OF] == f"{topics.dlq}:0:{item.dlq_offset}".encode()
        assert headers[HEADER_ATTEMPT] == b"2"
        assert headers["traceparent"] == b"00-abc-01"
        assert not [
            n for n, _ in record.headers if n.startswith("hub.errors.") and n != HEADER_ATTEMPT
        ]

    by_offset = hub_dlq(
        broker, "replay", "--topic", topics.dlq, "--offset", str(topics.sent[3].dlq_offset)
    )
    assert by_offset.returncode == 0, by_offset.stderr
    last = read_all(broker.bootstrap, topics.source)[-1]
    assert (last.key, last.value) == (None, topics.sent[3].value)


def test_dry_run_publishes_nothing(broker: Broker, topics: Topics) -> None:
    result = hub_dlq(broker, "replay", "--topic", topics.dlq, "--agency", AGENCY_B, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "dry run: would replay 2 of 4" in result.stdout
    assert "nothing published" in result.stdout
    assert read_all(broker.bootstrap, topics.source) == []


def test_replay_without_a_choice_refuses(broker: Broker, topics: Topics) -> None:
    result = hub_dlq(broker, "replay", "--topic", topics.dlq)
    assert result.returncode == 1
    assert "--all" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert read_all(broker.bootstrap, topics.source) == []


def test_a_record_without_dead_letter_headers_is_listed_not_replayed(
    broker: Broker, topics: Topics
) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    producer.send(topics.dlq, key=b"k", value=b"stray").get(30)
    producer.close()
    rows = json_lines(hub_dlq(broker, "list", "--topic", topics.dlq, "--json"))
    stray = rows[-1]
    assert stray["reason"] is None
    assert "header hub.errors." in stray["detail"]

    result = hub_dlq(broker, "replay", "--topic", topics.dlq, "--offset", str(stray["dlq_offset"]))
    assert result.returncode == 1
    assert "skipped" in result.stderr
    assert read_all(broker.bootstrap, topics.source) == []


def test_list_ends_promptly_on_an_empty_or_missing_topic(broker: Broker) -> None:
    empty = unique_topic("dlq.empty") + ".dlq"
    create_topics(broker.bootstrap, [empty])
    try:
        started = time.monotonic()
        result = hub_dlq(broker, "list", "--topic", empty)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"no dead letters in {empty}"

        missing = unique_topic("dlq.missing") + ".dlq"
        result = hub_dlq(broker, "list", "--topic", missing)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"hub dlq list: topic {missing} does not exist on {broker.bootstrap}"
        )
        assert time.monotonic() - started < 60
        consumer = committed_consumer(broker.bootstrap, client_id="test-dlq-topics")
        try:
            assert missing not in consumer.topics()  # listing did not create it
        finally:
            consumer.close()
    finally:
        _delete_topics(broker.bootstrap, [empty])


def test_an_unreachable_broker_is_one_line_and_a_failure() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hub", "dlq", "list", "--topic", "x.dlq", "--timeout", "2",
         "--bootstrap-server", "127.0.0.1:1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "hub dlq list: cannot reach Kafka at 127.0.0.1:1 within 2s (KafkaTimeoutError)"
    )
