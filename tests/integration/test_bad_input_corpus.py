"""A corpus of bad inputs, each between good records: every bad one ends in the right dead-letter
topic with the right reason, every good one around it is processed, nothing is lost.

Two doors into the hub are covered, on a real broker, registry and hub worker:

* the JSON door: the ``json-bridge`` connector (``hub connector run``) consumes
  ``<prefix>dossier.events.json`` / ``<prefix>feedback.events.json`` and dead-letters to
  ``<json topic>.dlq``;
* the Avro door: any Kafka client may write to ``<prefix>dossier.events``; the hub worker
  dead-letters to ``<prefix>dossier.events.dlq``.

For every bad input the dead letter must carry the reason, the source topic/partition/offset
the input was written at, the original key and value bytes, and no personal data in any header.
Good records are "processed" when their status shows up on ``<prefix>portal.outbox`` (dossier
events) or in the dossier's timeline (feedback), and no dead letter names them.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer, TopicPartition

from connectors.scenarios import VN, dossier_code, dossier_life
from connectors.sdk import parse_config
from connectors.sdk.runtime import ConnectorRuntime
from hub.consumers import committed_consumer
from hub.contract.inbound import InboundDossierEvent, to_avro_record, validate_dossier_event
from hub.contract.registry import SchemaRegistryClient
from hub.contract.schemas import SchemaKind, load_schema
from hub.contract.serde import AvroDeserializer, AvroSerializer, frame
from hub.dlq.headers import DeadLetter
from hub.topic_admin import TopicCreator
from tests.fixtures.stack import Broker
from tests.fixtures.worker import Worker

pytestmark = pytest.mark.broker

JUSTICE = "000.00.03.H40"  # Sở Tư pháp
CRIMINAL_RECORD = "2.000488"  # Cấp Phiếu lý lịch tư pháp (in force since 2010)
NEW_PROCEDURE = "1.012790"  # in force from 2024-08-01

# Personal data planted in the bad inputs: none of it may appear in a dead letter's headers.
SECRET_NAME = "Trần Thị Bí Mật"
SECRET_ID = "040199009876"
SECRET_COMMENT = "Cán bộ Lê Văn Tám đòi tiền bồi dưỡng"
PII = [SECRET_NAME, SECRET_ID, SECRET_COMMENT, "Nguyễn Văn An", "Nguyễn Thị Ánh", "Lê Văn Tám"]


@dataclass
class Bad:
    """One bad input: where it was written and what the dead letter must say."""

    path: str  # "json" (bridge) or "avro" (worker)
    name: str
    reason: str
    detail: str  # a substring the dead letter's detail must contain
    key: bytes | None
    value: bytes | None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    letter: DeadLetter | None = None


@dataclass
class Good:
    """A good record and the evidence that it was processed."""

    path: str
    dossier: str
    expect: str  # the status on the portal outbox, or "timeline:<event type>"
    processed: bool = False


@dataclass
class Corpus:
    bad: list[Bad] = field(default_factory=list)
    good: list[Good] = field(default_factory=list)


class TopicReader:
    """Reads a topic from its beginning, without a group; keeps what it read."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.records: list[Any] = []
        self._consumer = committed_consumer(bootstrap, client_id="test-bad-input-reader")
        deadline = time.monotonic() + 30
        parts = self._consumer.partitions_for_topic(topic)
        while not parts and time.monotonic() < deadline:
            time.sleep(0.5)
            parts = self._consumer.partitions_for_topic(topic)
        assert parts, f"topic {topic} does not exist"
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)

    def read(self) -> list[Any]:
        for batch in self._consumer.poll(timeout_ms=300).values():
            self.records.extend(batch)
        return self.records

    def wait_for(self, done: Callable[[list[Any]], bool], timeout_s: float = 90) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while not done(self.read()) and time.monotonic() < deadline:
            pass
        return self.records

    def settle(self, quiet_s: float = 3.0) -> list[Any]:
        """Read until nothing new came for ``quiet_s`` (catches extra, unexpected records)."""
        last, since = len(self.records), time.monotonic()
        while time.monotonic() - since < quiet_s:
            if len(self.read()) != last:
                last, since = len(self.records), time.monotonic()
        return self.records

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def at_least(n: int) -> Callable[[list[Any]], bool]:
    return lambda records: len(records) >= n


def _json(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


def _life(code: str, **kwargs: Any) -> list[dict[str, Any]]:
    start = datetime.now(VN) - timedelta(hours=6)
    return dossier_life(code, JUSTICE, CRIMINAL_RECORD, start, rating=None, **kwargs)


def _code(n: int) -> str:
    return dossier_code(JUSTICE, datetime.now(VN) - timedelta(hours=6), n)


def _with(event: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    changed["event_id"] = str(uuid.uuid4())
    change(changed)
    return changed


class Writer:
    """Writes records in order, each acknowledged before the next, and notes where they went."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")

    def write(self, topic: str, key: bytes | None, value: bytes | None) -> tuple[int, int]:
        meta = self.producer.send(topic, key=key, value=value).get(30)
        return meta.partition, meta.offset

    def bad(self, corpus: Corpus, topic: str, bad: Bad) -> None:
        bad.topic = topic
        bad.partition, bad.offset = self.write(topic, bad.key, bad.value)
        corpus.bad.append(bad)

    def close(self) -> None:
        self.producer.close()


# --- the JSON door --------------------------------------------------------------------------


def json_bad_inputs(code: str) -> list[Bad]:
    """Bad JSON for dossier ``code`` (each built from a good submission of it)."""
    sub = _life(code, applicant=SECRET_NAME)[0]
    sub["payload"]["applicant_id_number"] = SECRET_ID
    key = code.encode()
    future = (datetime.now(VN) + timedelta(days=2)).isoformat()

    def bad(name: str, reason: str, detail: str, value: bytes | None, k: bytes = key) -> Bad:
        return Bad("json", name, reason, detail, k, value)

    def v(change: Callable[[dict[str, Any]], None]) -> bytes:
        return _json(_with(sub, change))

    def set_(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def change(event: dict[str, Any]) -> None:
            *parents, leaf = path.split(".")
            target = event
            for p in parents:
                target = target[p]
            target[leaf] = value

        return change

    def drop(*paths: str) -> Callable[[dict[str, Any]], None]:
        def change(event: dict[str, Any]) -> None:
            for path in paths:
                *parents, leaf = path.split(".")
                target = event
                for p in parents:
                    target = target[p]
                del target[leaf]

        return change

    def before_procedure(event: dict[str, Any]) -> None:
        event["payload"]["procedure_code"] = NEW_PROCEDURE
        event["occurred_at"] = event["payload"]["submitted_at"] = "2023-06-01T09:00:00+07:00"

    def wrong_types(event: dict[str, Any]) -> None:
        event["event_id"] = 42
        event["payload"]["channel"] = [2]

    def extra(event: dict[str, Any]) -> None:
        event["priority"] = "high"
        event["payload"]["applicant_phone"] = "0912345678"

    return [
        bad("not UTF-8 (UTF-16 from a .NET system)", "undecodable", "not UTF-8",
            json.dumps(_with(sub, lambda e: None), ensure_ascii=False).encode("utf-16")),
        bad("not JSON (XML)", "undecodable", "not JSON",
            f"<event><applicant>{SECRET_NAME}</applicant></event>".encode()),
        bad("not JSON (cut off)", "undecodable", "not JSON", _json(sub)[: len(_json(sub)) // 2]),
        bad("JSON, not an object (double-encoded)", "validation", "<event>: type",
            json.dumps(json.dumps(sub)).encode()),
        bad("tombstone (no value)", "empty-value", "no value", None),
        bad("wrong types", "validation", "event_id: type",
            v(wrong_types)),
        bad("missing fields", "validation", "payload.applicant_name: missing",
            v(drop("occurred_at", "payload.applicant_name"))),
        bad("oversized applicant name", "validation", "payload.applicant_name: too_long",
            v(set_("payload.applicant_name", (SECRET_NAME + " ") * 20))),
        bad("oversized source system", "validation", "source_system: too_long",
            v(set_("source_system", "x" * 101))),
        bad("malformed dossier code", "validation", "dossier_code: pattern",
            v(set_("dossier_code", f"{JUSTICE}-251399-0001")),
            f"{JUSTICE}-251399-0001".encode()),
        bad("malformed agency code", "validation", "agency_code: pattern",
            v(set_("agency_code", "H40.03"))),
        bad("malformed procedure code", "validation", "payload.procedure_code: pattern",
            v(set_("payload.procedure_code", "1.1193"))),
        bad("timestamp two days ahead", "validation", "occurred_at: in_future",
            v(set_("occurred_at", future))),
        bad("before the procedure existed", "validation", "occurred_at: before_procedure",
            v(before_procedure)),
        bad("before 2015", "validation", "occurred_at: before_floor",
            v(set_("occurred_at", "2014-06-01T09:00:00+07:00"))),
        bad("timestamp without offset", "validation", "occurred_at: timezone",
            v(set_("occurred_at", "2025-08-05T08:00:00"))),
        bad("unknown event type", "validation", "event_type: unknown_event_type",
            v(set_("event_type", "DossierTeleported"))),
        bad("extra fields", "validation", "payload.applicant_phone: extra", v(extra)),
        bad("key is not the dossier code", "validation", "key: key_mismatch", v(lambda e: None),
            _code(999).encode()),
    ]  # fmt: skip


def json_bad_feedback(code: str) -> list[Bad]:
    rated = {
        "event_id": str(uuid.uuid4()),
        "event_type": "ServiceRated",
        "occurred_at": datetime.now(VN).isoformat(),
        "source_system": "portal",
        "agency_code": JUSTICE,
        "dossier_code": code,
        "payload": {"score": 6, "comment": SECRET_COMMENT},
    }
    too_long = copy.deepcopy(rated)
    too_long["payload"] = {"score": 4, "comment": SECRET_COMMENT * 200}
    submitted = _life(code)[0]
    key = code.encode()
    return [
        Bad("json", "score out of range", "validation", "payload.score: out_of_range", key,
            _json(rated)),
        Bad("json", "oversized comment", "validation", "payload.comment: too_long", key,
            _json(too_long)),
        Bad("json", "dossier event on the feedback topic", "validation",
            "event_type: wrong_topic", key, _json(submitted)),
    ]  # fmt: skip


def feedback(code: str, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": datetime.now(VN).isoformat(),
        "source_system": "portal",
        "agency_code": JUSTICE,
        "dossier_code": code,
        "payload": payload,
    }


# --- the Avro door --------------------------------------------------------------------------


class AvroEncoder:
    def __init__(self, registry_url: str, topic: str) -> None:
        self.registry = SchemaRegistryClient(registry_url)
        self.serializer = AvroSerializer(
            self.registry, f"{topic}-value", load_schema(SchemaKind.DOSSIER_EVENT)
        )

    def __call__(self, event: dict[str, Any], *, now: datetime | None = None) -> bytes:
        """Encode a valid event; ``now`` lets a test encode what the contract would refuse."""
        model = validate_dossier_event(event, now=now)
        assert isinstance(model, InboundDossierEvent), model
        return self.serializer(
            to_avro_record(model, recorded_at=datetime.now(UTC), schema_version=1)
        )

    def foreign(self, subject: str, code: str) -> bytes:
        """A record of a different registered schema, framed like any other."""
        schema = {
            "type": "record",
            "name": "CitizenContact",
            "namespace": "vn.gov.nghean.test",
            "fields": [
                {"name": "dossier_code", "type": "string"},
                {"name": "phone", "type": "string"},
            ],
        }
        serializer = AvroSerializer(self.registry, subject, schema)
        return serializer({"dossier_code": code, "phone": SECRET_ID})


def avro_bad_inputs(encode: AvroEncoder, code: str, subject: str) -> list[Bad]:
    sub = _life(code, applicant=SECRET_NAME)[0]
    key = code.encode()
    valid = encode(_with(sub, lambda e: None))
    foreign = encode.foreign(subject, code)
    as_json = _json(sub)
    later = datetime.now(UTC) + timedelta(days=1)  # to encode what the contract refuses today

    def bad(name: str, reason: str, detail: str, value: bytes | None, k: bytes = key) -> Bad:
        return Bad("avro", name, reason, detail, k, value)

    def ahead(event: dict[str, Any]) -> None:
        event["occurred_at"] = (datetime.now(VN) + timedelta(hours=3)).isoformat()

    return [
        bad("fewer than 5 bytes", "truncated", "shorter than the 5-byte", b"\x00\x00\x01"),
        bad("valid header, body cut in half", "truncated", "ended early",
            valid[: 5 + (len(valid) - 5) // 2]),
        bad("JSON written to the Avro topic", "bad-magic-byte", "not the magic byte", as_json),
        bad("wrong magic byte", "bad-magic-byte", "first byte is 7", b"\x07" + valid[1:]),
        bad("unknown schema id", "unknown-schema-id", "unknown", frame(987_654_321, valid[5:])),
        bad("another registered schema", "invalid-shape", "event_type", foreign),
        bad("tombstone (no value)", "empty-value", "no value", None),
        bad("key is not the dossier code", "validation", "key", valid, _code(998).encode()),
        bad("event 3 hours ahead", "validation", "occurred_at",
            encode(_with(sub, ahead), now=later)),
    ]  # fmt: skip


# --- the test ---------------------------------------------------------------------------------


def _bridge_config(broker: Broker, prefix: str, group: str) -> dict[str, Any]:
    """The bridge as ``hub connector run`` runs it (connectors/examples/json-bridge.toml),
    on the test's broker, prefix and group."""
    return {
        "name": "json-bridge",
        "connector.class": "json-bridge",
        "topics": "dossier.events.json,feedback.events.json",
        "value.converter": "bytes",
        "errors.tolerance": "all",
        "bootstrap.servers": broker.bootstrap,
        "schema.registry.url": broker.registry_url,
        "topic.prefix": prefix,
        "group.id": group,
    }


def _start_bridge(broker: Broker, prefix: str, group: str) -> ConnectorRuntime:
    # the JSON topics and their dead-letter topics with 3 partitions, as a deployment would
    # create them; the bridge finds them there
    inputs = [f"{prefix}dossier.events.json", f"{prefix}feedback.events.json"]
    TopicCreator(broker.bootstrap, 3, 1).ensure([*inputs, *(f"{t}.dlq" for t in inputs)])
    runtime = ConnectorRuntime(parse_config(_bridge_config(broker, prefix, group), "test"))
    runtime.start_thread()
    assert runtime.started.wait(60), "the bridge did not start"
    assert runtime.state == "running", runtime.error
    return runtime


def _statuses(decode: AvroDeserializer, records: list[Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for message in records:
        record = decode(message.value)
        found.setdefault(record["dossier_code"], []).append(record["status"])
    return found


def test_every_bad_input_is_dead_lettered_and_every_good_one_processed(
    broker: Broker, hub_worker: Worker, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    prefix = hub_worker.env["HUB_TOPIC_PREFIX"]
    avro_topic = f"{prefix}dossier.events"
    json_topic = f"{prefix}dossier.events.json"
    feedback_json = f"{prefix}feedback.events.json"
    group = f"{prefix}json-bridge-test"
    corpus = Corpus()
    writer = Writer(broker.bootstrap)
    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    bridge = _start_bridge(broker, prefix, group)
    outbox = TopicReader(broker.bootstrap, f"{prefix}portal.outbox")

    # 1. JSON door, dossier topic: each bad input between a good submission and reception.
    bad_json = json_bad_inputs(_code(100))
    good_json = [_code(101 + i) for i in range(len(bad_json))]
    nfd_code = _code(150)
    nfd_name = unicodedata.normalize("NFD", "Nguyễn Thị Ánh")
    assert nfd_name != unicodedata.normalize("NFC", nfd_name)
    for code, bad in zip(good_json, bad_json, strict=True):
        life = _life(code)
        writer.write(json_topic, code.encode(), _json(life[0]))
        corpus.good.append(Good("json", code, "NEW"))
        writer.bad(corpus, json_topic, bad)
        writer.write(json_topic, code.encode(), _json(life[1]))
        corpus.good.append(Good("json", code, "RECEIVED"))
    nfd_life = _life(nfd_code, applicant=nfd_name)
    writer.write(json_topic, nfd_code.encode(), _json(nfd_life[0]))
    corpus.good.append(Good("json", nfd_code, "NEW"))
    writer.bad(
        corpus,
        json_topic,
        Bad("json", "feedback event on the dossier topic", "validation",
            "event_type: wrong_topic", nfd_code.encode(),
            _json(feedback(nfd_code, "ServiceRated", {"score": 5, "comment": SECRET_COMMENT}))),
    )  # fmt: skip
    writer.write(json_topic, nfd_code.encode(), _json(nfd_life[1]))
    corpus.good.append(Good("json", nfd_code, "RECEIVED"))

    # 2. Avro door, straight onto dossier.events: the same pattern, and an illegal transition.
    encode = AvroEncoder(broker.registry_url, avro_topic)
    bad_avro = avro_bad_inputs(encode, _code(200), f"{prefix}corpus.contact-value")
    good_avro = [_code(201 + i) for i in range(len(bad_avro))]
    for code, bad in zip(good_avro, bad_avro, strict=True):
        life = _life(code)
        writer.write(avro_topic, code.encode(), encode(life[0]))
        corpus.good.append(Good("avro", code, "NEW"))
        writer.bad(corpus, avro_topic, bad)
        writer.write(avro_topic, code.encode(), encode(life[1]))
        corpus.good.append(Good("avro", code, "RECEIVED"))
    orphan = _life(_code(250))
    writer.bad(
        corpus, avro_topic,
        Bad("avro", "event for an unknown dossier", "unknown_dossier", "not seen",
            _code(250).encode(), encode(orphan[2])),
    )  # fmt: skip
    jumpy = _life(_code(260))
    for event, status in ((jumpy[0], "NEW"), (jumpy[1], "RECEIVED")):
        writer.write(avro_topic, _code(260).encode(), encode(event))
        corpus.good.append(Good("avro", _code(260), status))
    returned = next(e for e in jumpy if e["event_type"] == "ResultReturned")
    writer.bad(
        corpus, avro_topic,
        Bad("avro", "ResultReturned right after DossierReceived", "illegal_transition",
            "not allowed in status RECEIVED", _code(260).encode(), encode(returned)),
    )  # fmt: skip
    writer.write(avro_topic, _code(260).encode(), encode(jumpy[2]))  # StepStarted
    corpus.good.append(Good("avro", _code(260), "PROCESSING"))

    # Every good dossier event shows up on the outbox.
    expected: dict[str, list[str]] = {}
    for good in corpus.good:
        expected.setdefault(good.dossier, []).append(good.expect)
    total = sum(len(v) for v in expected.values())
    outbox.wait_for(at_least(total), timeout_s=120)
    seen = _statuses(decode, outbox.settle())

    # 3. JSON door, feedback topic, once the dossiers exist (the topics are not ordered together).
    rated = good_json[:4]
    bad_feedback = json_bad_feedback(rated[0])
    good_feedback = [
        feedback(rated[0], "ServiceRated", {"score": 5, "comment": None}),
        feedback(rated[1], "ServiceRated", {"score": 4, "comment": "Cán bộ nhiệt tình"}),
        feedback(rated[2], "ComplaintFiled", {"subject": "Chậm trả", "content": SECRET_COMMENT}),
    ]
    for event, bad in zip(good_feedback, bad_feedback, strict=True):
        writer.write(feedback_json, event["dossier_code"].encode(), _json(event))
        corpus.good.append(Good("json", event["dossier_code"], f"timeline:{event['event_type']}"))
        writer.bad(corpus, feedback_json, bad)
    last = feedback(rated[3], "ServiceRated", {"score": 3, "comment": None})
    writer.write(feedback_json, rated[3].encode(), _json(last))
    corpus.good.append(Good("json", rated[3], "timeline:ServiceRated"))

    dlq = {
        topic: TopicReader(broker.bootstrap, f"{topic}.dlq")
        for topic in (json_topic, feedback_json, avro_topic)
    }
    by_topic = {t: sum(1 for b in corpus.bad if b.topic == t) for t in dlq}
    for topic, reader in dlq.items():
        reader.wait_for(at_least(by_topic[topic]), timeout_s=120)
    timelines = _wait_for_timelines(hub_worker, corpus)

    # 4. Restarted as `hub connector run --config` in its own process, same group: only what
    # came after the committed offsets is bridged (a re-read would dead-letter twice).
    bridge.request_stop()
    bridge.join(60)  # raises if it did not stop, or re-raises what made it fail
    assert bridge.state == "stopped"
    once_code = good_json[4]
    writer.write(json_topic, once_code.encode(), _json(_life(once_code)[2]))  # StepStarted
    corpus.good.append(Good("json", once_code, "PROCESSING"))
    writer.bad(
        corpus, json_topic,
        Bad("json", "not JSON (after a restart)", "undecodable", "not JSON",
            once_code.encode(), b"\x00\x00\x00\x00\x01Avro to the JSON topic"),
    )  # fmt: skip
    by_topic[json_topic] += 1
    config_file = tmp_path / "json-bridge.json"
    config_file.write_text(json.dumps(_bridge_config(broker, prefix, group)))
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "connector", "run", "--config", str(config_file)],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        expected.setdefault(once_code, []).append("PROCESSING")
        total += 1
        outbox.wait_for(at_least(total), timeout_s=90)
        seen = _statuses(decode, outbox.settle())
        letters: dict[str, list[Any]] = {}
        for topic, reader in dlq.items():
            reader.wait_for(at_least(by_topic[topic]), timeout_s=60)
            letters[topic] = reader.settle()
        assert process.poll() is None, process.communicate()[0]
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # SIGTERM drains the batch in hand, commits it and exits 0
    assert process.returncode == 0, output
    feedback_dlq = TopicReader(broker.bootstrap, f"{prefix}feedback.events.dlq")
    stray_feedback_letters = feedback_dlq.settle(2.0)

    # --- the checks ---------------------------------------------------------------------------
    problems: list[str] = []
    positions = {(b.topic, b.partition, b.offset): b for b in corpus.bad}
    for topic, records in letters.items():
        for message in records:
            letter = DeadLetter.from_headers(message.headers)
            where = (letter.source_topic, letter.source_partition, letter.source_offset)
            found = positions.get(where)
            if found is None:
                problems.append(f"unexpected dead letter on {topic}: {letter.reason} {where}")
                continue
            bad = found
            if bad.letter is not None:
                problems.append(f"{bad.name}: dead-lettered twice")
            bad.letter = letter
            assert message.topic == f"{bad.topic}.dlq", bad.name
            assert message.value == bad.value, f"{bad.name}: value bytes changed"
            assert message.key == bad.key, f"{bad.name}: key bytes changed"
            assert letter.processor == (
                "connector:json-bridge" if bad.path == "json" else "hub-worker"
            )
            for name, raw in message.headers:
                text = (raw or b"").decode("utf-8", errors="replace")
                for secret in PII:
                    for form in {secret, unicodedata.normalize("NFD", secret)}:
                        assert form not in text, f"{bad.name}: personal data in header {name}"
    for bad in corpus.bad:
        if bad.letter is None:
            continue
        if bad.letter.reason != bad.reason:
            problems.append(f"{bad.name}: reason {bad.letter.reason}, expected {bad.reason}")
        elif bad.detail not in bad.letter.detail:
            problems.append(f"{bad.name}: detail {bad.letter.detail!r} lacks {bad.detail!r}")
    assert not stray_feedback_letters, "a good feedback event was dead-lettered by the worker"

    for good in corpus.good:
        if good.expect.startswith("timeline:"):
            good.processed = good.expect.removeprefix("timeline:") in timelines.get(
                good.dossier, []
            )
        else:
            statuses = seen.get(good.dossier, [])
            good.processed = statuses.count(good.expect) >= expected[good.dossier].count(
                good.expect
            )
    for code, statuses in seen.items():
        if statuses != expected.get(code):
            problems.append(f"{code}: outbox {statuses}, expected {expected.get(code)}")

    # The NFD name went in decomposed and came out of the bridge composed.
    nfd_key = nfd_code.encode()
    events = TopicReader(broker.bootstrap, avro_topic)
    events.wait_for(lambda records: any(m.key == nfd_key for m in records), timeout_s=30)
    submitted = [
        record
        for message in events.settle(1.0)
        if message.key == nfd_key
        for record in [decode(message.value)]
        if record["event_type"] == "DossierSubmitted"
    ]
    assert len(submitted) == 1
    assert submitted[0]["payload"][1]["applicant_name"] == unicodedata.normalize("NFC", nfd_name)

    lost = _report(corpus, capsys)
    assert not problems, "\n".join(problems)
    assert lost == 0
    writer.close()
    outbox.close()
    for reader in dlq.values():
        reader.close()


def _wait_for_timelines(worker: Worker, corpus: Corpus) -> dict[str, list[str]]:
    wanted = {
        g.dossier: g.expect.removeprefix("timeline:")
        for g in corpus.good
        if g.expect.startswith("timeline:")
    }
    found: dict[str, list[str]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for code in wanted:
            status, view = worker.get(f"/dossiers/{code}")
            if status == 200:
                found[code] = [entry[1] for entry in view["timeline"]]
        if all(wanted[c] in found.get(c, []) for c in wanted):
            break
        time.sleep(0.5)
    return found


def _report(corpus: Corpus, capsys: pytest.CaptureFixture[str]) -> int:
    rows = [("door", "bad input", "expected", "dead-lettered as")]
    for bad in corpus.bad:
        got = bad.letter.reason if bad.letter else "—  (LOST)"
        rows.append((bad.path, bad.name, bad.reason, got))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    bad_lost = sum(1 for b in corpus.bad if b.letter is None)
    good_lost = sum(1 for g in corpus.good if not g.processed)
    right = sum(1 for b in corpus.bad if b.letter and b.letter.reason == b.reason)
    lines += [
        "",
        f"{'':6}{'tried':>8}{'handled':>9}{'right reason':>14}{'lost':>6}",
        f"{'bad':6}{len(corpus.bad):>8}{len(corpus.bad) - bad_lost:>9}{right:>14}{bad_lost:>6}",
        f"{'good':6}{len(corpus.good):>8}{len(corpus.good) - good_lost:>9}{'':>14}{good_lost:>6}",
    ]
    with capsys.disabled():
        print("\n\nBad-input corpus\n\n" + "\n".join(lines) + "\n")
    return bad_lost + good_lost


def test_the_example_bridge_config_is_valid_for_hub_connector_run() -> None:
    """What the bridge's own --help used to promise: one command runs it, from its config."""
    example = Path(__file__).resolve().parents[2] / "connectors" / "examples" / "json-bridge.toml"
    result = subprocess.run(
        [sys.executable, "-m", "hub", "connector", "validate", "--config", str(example)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("ok (sink json-bridge)"), result.stdout
    described = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert described["topics"] == ["dossier.events.json", "feedback.events.json"]
    assert described["value_converter"] == "bytes"
    assert described["errors_tolerance"] == "all"
    assert described["group_id"] == "json-bridge"  # the standalone bridge's committed offsets
