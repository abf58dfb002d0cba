"""End-to-end benchmark of the hub on its own local stack, against issue 12's targets.

    .venv/bin/python -m bench.run [--events N] [--dossiers D] [--quick] [...]

Starts a local stack (Kafka + schema registry, free ports, a temporary state directory),
then, each step with progress lines:

1. load: N simulator dossier events (validated, Avro, Confluent framing; encoded once into a
   file and streamed from it, so millions fit) into ``<prefix>dossier.events``, P partitions;
2. baselines, the ceiling of this stack on this machine: (A) a plain aiokafka loop (consume,
   Avro-decode, produce one record per event); (B) a confluent-kafka transactional loop
   (read_committed consume in batches of 2,000, fastavro decode, 3 outputs per event as the
   hub writes for a typical one plus one changelog-like record per key per transaction,
   ``send_offsets_to_transaction`` and commit every 100 ms, ``murmur2_random``); and (A) again
   waiting for each output's ack (``--serial-events``);
3. hub: ``python -m hub worker`` (the checkpoint engine) processing
   the preloaded topic from the beginning, with 1 and with 2 workers (fresh app id, prefix
   and data dir each run); done when the group's committed input offsets reach N;
4. latency: live events at fixed offered loads into a running worker, p50/p95/p99 from each
   event's send time (its ``occurred_at``) to when a ``read_committed`` consumer *receives*
   its ``portal.outbox`` record (not the record's Kafka timestamp: a transactional record is
   invisible until its transaction commits);
5. restart and memory: D dossiers (one submission each) into a fresh worker's state, RSS
   before and after; then SIGTERM and a restart on the kept data dir, then ``kill -9`` and
   a restart on an empty data dir (a restore from the changelog), then the same ``kill -9``
   and empty-disk restart of a named worker (``HUB_WORKER_NAME``, a static member), each
   timed from the process start to ``/ready`` and to the first answered ``/dossiers/{code}``;
6. rebuild: step 3's rate, extrapolated to 1M dossiers / 10M events (issue 12 asks for a run
   of at least 2M events: ``--events 2000000``).

Prints a markdown table (every measure, then each target of issue 12 with its verdict),
writes ``bench/results/<timestamp>.json``, stops the stack and every process it started
(also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from types import FrameType
from typing import Any

from bench.events import (
    EncodedEvent,
    EventFile,
    LiveEvents,
    dossier_serializer,
    encode_events,
    submissions,
)
from hub.consumers import READ_COMMITTED

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"

_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", flush=True)


class Stopped(KeyboardInterrupt):
    """SIGTERM: clean up as for Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stopped()


# --------------------------------------------------------------------------- machine, versions
def machine() -> dict[str, Any]:
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


def versions() -> dict[str, str]:
    from hub.stack.artifacts import APICURIO_VERSION, KAFKA_VERSION

    out = {
        "kafka": KAFKA_VERSION,
        "apicurio_registry": APICURIO_VERSION,
        "python": platform.python_version(),
    }
    for name in ("faust-streaming", "aiokafka", "fastavro", "rocksdict", "nghean-hub"):
        try:
            out[name] = package_version(name)
        except PackageNotFoundError:
            out[name] = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        out["java"] = (proc.stderr or proc.stdout).splitlines()[0].strip()
    return out


# --------------------------------------------------------------------------- HTTP, metrics
#: the benchmark's API key for the workers it starts (``Bench.access_file``): a province key
API_KEY: dict[str, str] = {}


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {API_KEY['key']}"} if "key" in API_KEY else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout_s
        ) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def events_in(metrics_text: str, topic: str) -> dict[str, float]:
    """``hub_events_in_total{topic=<topic>}`` by outcome."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "hub_events_in":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("topic") == topic:
                outcome = sample.labels.get("outcome", "?")
                out[outcome] = out.get(outcome, 0.0) + sample.value
    return out


def checkpoint_totals(metrics_text: str) -> tuple[float, float]:
    """(checkpoints committed, seconds spent committing them) from ``hub_checkpoint_seconds``."""
    from prometheus_client.parser import text_string_to_metric_families

    count = seconds = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "hub_checkpoint_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    count = sample.value
                elif sample.name.endswith("_sum"):
                    seconds = sample.value
    return count, seconds


class CommittedCount:
    """Events the checkpoint engine has committed: the sum of the consumer group's committed
    offsets on the input topic. The engine commits them in the transaction that carries the
    events' outputs (``send_offsets_to_transaction``), so this counts events whose outputs a
    read_committed reader can see. (The audit topic's end offsets would overcount here: each
    transaction adds a commit marker per partition.) An offset fetch costs the worker
    nothing."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        # never subscribes: only reads the group's offsets
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": READ_COMMITTED}
        )

    def __call__(self) -> int:
        from confluent_kafka import KafkaException

        try:
            offsets = self.consumer.committed(self.tps, timeout=10)
        except KafkaException:
            return 0
        return int(sum(tp.offset for tp in offsets if tp.offset >= 0))

    def close(self) -> None:
        self.consumer.close()


def publish(res: dict[str, Any], table: str, name: str) -> Path:
    """Write the results as JSON to ``bench/results/<name>``; print the table, any errors and
    where the JSON went."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / name
    out.write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str) + "\n")
    print()
    print(table)
    print()
    if res["errors"]:
        print(f"errors: {json.dumps(res['errors'], ensure_ascii=False)[:2000]}")
    print(f"results: {out}")
    return out


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores, from /proc/stat:
    whether a step was limited by the machine (every core busy) rather than by the hub."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    tck = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / tck, sum(ticks) / tck


# --------------------------------------------------------------------------- hub workers
@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started: float  # monotonic

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        status, _ = http_get(f"{self.url}/ready", timeout_s=2)
        return status == 200

    def counts(self, topic: str) -> dict[str, float]:
        status, body = http_get(f"{self.url}/metrics", timeout_s=10)
        if status != 200:
            return {}
        return events_in(body.decode(errors="replace"), topic)

    def checkpoints(self) -> tuple[float, float]:
        status, body = http_get(f"{self.url}/metrics", timeout_s=10)
        return checkpoint_totals(body.decode(errors="replace")) if status == 200 else (0.0, 0.0)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class BenchError(Exception):
    pass


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    bootstrap: str = ""
    registry_url: str = ""
    workers: list[Worker] = field(default_factory=list)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    runs: int = 0

    def fresh_names(self, what: str) -> tuple[str, str]:
        """(topic prefix, app id) no earlier run used."""
        self.runs += 1
        return f"b{self.tag}{what}{self.runs}.", f"bench-{self.tag}-{what}{self.runs}"

    def audit_key(self) -> Path:
        from hub.audit.signing import generate_key

        path = self.workdir / "audit-signing.key"
        if not path.exists():
            generate_key(path)
        return path

    def access_file(self) -> Path:
        """The workers' API keys: one province key, which ``http_get`` presents."""
        from hub.access.commands import add_key
        from hub.access.roles import Role

        path = self.workdir / "access.json"
        if "key" not in API_KEY:
            path.unlink(missing_ok=True)
            API_KEY["key"] = add_key(path, "bench", Role.PROVINCE)
        return path

    def start_worker(
        self, prefix: str, app_id: str, data_dir: Path, extra: dict[str, str] | None = None
    ) -> Worker:
        from hub.stack.tools import free_port

        port = free_port()
        env = {
            # a name exported in the shell would make every worker started here the same
            # static member, each fencing the last (only ``extra`` names a worker)
            **{k: v for k, v in os.environ.items() if k != "HUB_WORKER_NAME"},
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SCHEMA_REGISTRY_URL": self.registry_url,
            "HUB_TOPIC_PREFIX": prefix,
            "HUB_APP_ID": app_id,
            "HUB_DATA_DIR": str(data_dir),
            "HUB_WEB_PORT": str(port),
            "HUB_PARTITIONS": str(self.args.partitions),
            # heads signed, as in production (hub/audit/signing.py)
            "HUB_AUDIT_SIGNING_KEY": str(self.audit_key()),
            "HUB_ACCESS_FILE": str(self.access_file()),
            **(extra or {}),
        }
        log_path = self.workdir / f"worker-{app_id}-{port}.log"
        command = [sys.executable, "-m", "hub", "worker", "-l", "warn"]
        if getattr(self.args, "profile_worker", False):  # bench.soak has no such option
            # pyinstrument (not a project dependency) writes its report when the worker stops
            report = RESULTS / f"profile-{app_id}-{port}.txt"
            say(f"  profiling the worker with pyinstrument into {report}")
            command[1:2] = ["-m", "pyinstrument", "-r", "text", "-o", str(report), "-m"]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        worker = Worker(proc, port, log_path, time.monotonic())
        self.workers.append(worker)
        return worker

    def wait_ready(self, workers: Iterable[Worker], timeout_s: float = 240.0) -> float:
        """Seconds (monotonic stamp) when every worker answered /ready."""
        pending = list(workers)
        deadline = time.monotonic() + timeout_s
        while pending:
            for w in list(pending):
                if not w.alive():
                    raise BenchError(f"hub worker exited while starting:\n{w.log_tail()}")
                if w.ready():
                    pending.remove(w)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise BenchError(
                    f"hub worker not ready in {timeout_s:.0f}s:\n{pending[0].log_tail()}"
                )
            time.sleep(0.1)
        return time.monotonic()

    def applied_counter(self, prefix: str, app_id: str) -> CommittedCount:
        """What counts the events a run of workers has done, off Kafka."""
        return CommittedCount(
            self.bootstrap, app_id, f"{prefix}dossier.events", self.args.partitions
        )

    def stop_all(self) -> None:
        for w in self.workers:
            w.kill()
        self.workers.clear()


# --------------------------------------------------------------------------- Kafka helpers
def create_topics(
    bootstrap: str, names: list[str], partitions: int, replication_factor: int = 1
) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-setup")
    try:
        admin.create_topics(
            [
                NewTopic(n, num_partitions=partitions, replication_factor=replication_factor)
                for n in names
            ]
        )
    finally:
        admin.close()


def produce_all(
    bootstrap: str, topic: str, events: Iterable[EncodedEvent], total: int | None = None
) -> float:
    """Write the events (acks=all, idempotent, keys placed by murmur2 as every client of the
    hub places them), streaming: nothing is held beyond the producer's queue. Returns the
    seconds taken."""
    from confluent_kafka import KafkaException, Producer

    failed: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None and len(failed) < 5:
            failed.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "partitioner": "murmur2_random",
        }
    )
    started = time.monotonic()
    last = started
    for sent, e in enumerate(events, 1):
        headers: list[tuple[str, str | bytes | None]] = [("event-type", e.event_type.encode())]
        while True:
            try:
                producer.produce(topic, e.value, e.key, headers=headers, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.05)
        if sent % 1000 == 0:
            producer.poll(0)
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                say(f"  loaded {sent}/{total if total is not None else '?'}")
    if producer.flush(120):
        raise KafkaException("events not delivered within 120s of the last send")
    if failed:
        raise BenchError(f"events not delivered: {failed}")
    return time.monotonic() - started


def load_copy(bench: Bench, prefix: str, events: EventFile) -> float:
    topic = f"{prefix}dossier.events"
    create_topics(bench.bootstrap, [topic], bench.args.partitions)
    return produce_all(bench.bootstrap, topic, events, len(events))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --------------------------------------------------------------------------- step 2: baseline
async def baseline_loop(
    bootstrap: str,
    registry_url: str,
    topic: str,
    out_topic: str,
    n: int,
    partitions: int,
    *,
    serial: bool = False,
) -> dict[str, Any]:
    """Consume, decode, produce one record per event. ``serial``: wait for each output's
    acknowledgement before the next record (what the hub's guarantee asks for, without
    faust), with linger 0 as faust's producer has; else pipelined with 5 ms linger."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from hub.contract.registry import SchemaRegistryClient
    from hub.contract.serde import AvroDeserializer

    deserializer = AvroDeserializer(SchemaRegistryClient(registry_url))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=READ_COMMITTED,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=0 if serial else 5
    )
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        done = 0
        futures: list[Any] = []
        started = time.monotonic()
        last = started
        while done < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for records in batches.values():
                for rec in records:
                    if done >= n:
                        break
                    _, record = deserializer.decode(rec.value)
                    future = await producer.send(
                        out_topic, str(record["event_id"]).encode(), key=rec.key
                    )
                    if serial:
                        await future
                    else:
                        futures.append(future)
                    done += 1
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                rate = done / (last - started)
                say(f"  baseline{' (serial acks)' if serial else ''}: {done}/{n} ({rate:.0f}/s)")
        await asyncio.gather(*futures)
        elapsed = time.monotonic() - started
    finally:
        await consumer.stop()
        await producer.stop()
        deserializer.registry.close()
    return {"events": done, "seconds": round(elapsed, 3), "events_per_s": round(done / elapsed, 1)}


#: what the hub writes for a typical event: dossier.status, portal.outbox, a hub.audit entry
TXN_BASELINE_OUTPUTS = ("status", "outbox", "audit")


def txn_baseline(
    bootstrap: str,
    registry_url: str,
    topic: str,
    out_prefix: str,
    n: int,
    *,
    batch: int = 2000,
    commit_interval_ms: float = 100.0,
) -> dict[str, Any]:
    """The checkpoint engine's loop without the hub: a confluent-kafka consumer in a group,
    ``read_committed``, batches of ``batch``; each event Avro-decoded (fastavro, as the
    aiokafka baseline) and written as the hub writes a typical event (status, outbox, audit:
    3 records) into a Kafka transaction; at each commit (every ``commit_interval_ms``) one
    changelog-like record per distinct key of the transaction, the input offsets with the
    consumer's group metadata (``send_offsets_to_transaction``), commit."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    from hub.contract.registry import SchemaRegistryClient
    from hub.contract.serde import AvroDeserializer

    deserializer = AvroDeserializer(SchemaRegistryClient(registry_url))
    group = f"{out_prefix}txn-baseline-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": group,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,  # as the hub's engine
            "partitioner": "murmur2_random",
        }
    )
    outputs = [f"{out_prefix}{name}" for name in TXN_BASELINE_OUTPUTS]
    changelog = f"{out_prefix}changelog"
    interval = commit_interval_ms / 1000

    def produce(out: str, value: bytes | None, key: bytes | None) -> None:
        while True:
            try:
                producer.produce(out, value, key)
                return
            except BufferError:
                producer.poll(0.05)

    producer.init_transactions(60)
    consumer.subscribe([topic])
    done = commits = written = 0
    started: float | None = None
    in_txn = False
    txn_started = 0.0
    last_record = last_say = time.monotonic()
    positions: dict[tuple[str, int], int] = {}
    changed: dict[bytes | None, bytes | None] = {}
    try:
        while done < n:
            wait = max(0.001, txn_started + interval - time.monotonic()) if in_txn else 1.0
            for msg in consumer.consume(batch, timeout=wait):
                if msg.error() is not None or done >= n:
                    continue
                if started is None:
                    started = time.monotonic()
                if not in_txn:
                    producer.begin_transaction()
                    in_txn, txn_started = True, time.monotonic()
                value, key = msg.value(), msg.key()
                deserializer.decode(value or b"")
                for out in outputs:
                    produce(out, value, key)
                changed[key] = value
                positions[(str(msg.topic()), int(msg.partition() or 0))] = int(msg.offset() or 0)
                done += 1
                last_record = time.monotonic()
            if in_txn and (time.monotonic() - txn_started >= interval or done >= n):
                for key, value in changed.items():
                    produce(changelog, value, key)
                written += len(changed)
                producer.send_offsets_to_transaction(
                    [TopicPartition(t, p, o + 1) for (t, p), o in positions.items()],
                    consumer.consumer_group_metadata(),
                    30,
                )
                producer.commit_transaction(30)
                positions.clear()
                changed.clear()
                in_txn = False
                commits += 1
            now = time.monotonic()
            if now - last_record > 60:
                raise BenchError(f"transactional baseline stalled at {done}/{n}")
            if started is not None and now - last_say >= 5:
                last_say = now
                rate = done / (now - started)
                say(f"  transactional baseline: {done}/{n} ({rate:.0f}/s)")
        elapsed = time.monotonic() - (started or time.monotonic())
    except KafkaException as exc:
        raise BenchError(f"transactional baseline: {exc}") from exc
    finally:
        consumer.close()
        producer.flush(10)
        deserializer.registry.close()
    return {
        "events": done,
        "seconds": round(elapsed, 3),
        "events_per_s": round(done / elapsed, 1),
        "transactions": commits,
        "outputs_per_event": len(outputs),
        "changelog_records": written,
        "batch": batch,
        "commit_interval_ms": commit_interval_ms,
    }


# --------------------------------------------------------------------------- step 3: hub
def hub_run(bench: Bench, events: EventFile, workers: int) -> dict[str, Any]:
    prefix, app_id = bench.fresh_names(f"h{workers}w")
    topic = f"{prefix}dossier.events"
    n = len(events)
    say(f"  loading a copy of the {n} events into {topic}")
    load_copy(bench, prefix, events)
    say(f"  starting {workers} hub worker(s), app id {app_id}")
    started = time.monotonic()
    ws = [
        bench.start_worker(prefix, app_id, bench.workdir / f"data-{app_id}-{i}")
        for i in range(workers)
    ]
    first_ready: float | None = None
    rss_at_ready: int | None = None
    while first_ready is None:
        for w in ws:
            if not w.alive():
                raise BenchError(f"hub worker exited while starting:\n{w.log_tail()}")
            if w.ready():
                first_ready = time.monotonic()
                rss_at_ready = rss_bytes(w.process.pid)
                break
        else:
            if time.monotonic() - started > 240:
                raise BenchError(f"no hub worker ready in 240s:\n{ws[0].log_tail()}")
            time.sleep(0.1)
    all_ready = bench.wait_ready(ws)
    cpu_start = [cpu_seconds(w.process.pid) or 0.0 for w in ws]
    busy_start = machine_busy()
    total: dict[str, float] = {}
    last_progress = last_change = last_scrape = time.monotonic()
    seen = 0.0
    applied = bench.applied_counter(prefix, app_id)
    try:
        while True:
            count = float(applied())
            now = time.monotonic()
            if count >= n:
                break
            if now - last_scrape >= 5:
                last_scrape = now
                total = {}
                for w in ws:
                    if not w.alive():
                        raise BenchError(f"hub worker died:\n{w.log_tail()}")
                    for outcome, value in w.counts(topic).items():
                        total[outcome] = total.get(outcome, 0.0) + value
                # events that are not applied (duplicates, dead letters) leave no audit entry
                count = max(count, sum(total.values()))
                if count >= n:
                    break
            if count > seen:
                seen, last_change = count, now
            elif now - last_change > 120:
                raise BenchError(f"hub stalled at {count:.0f}/{n} for 120s:\n{ws[0].log_tail()}")
            if now - last_progress >= 5:
                last_progress = now
                rate = count / max(1e-9, now - first_ready)
                say(f"  hub x{workers}: {count:.0f}/{n} ({rate:.0f} events/s)")
            time.sleep(0.2)
    finally:
        applied.close()
    done = now
    busy_end = machine_busy()
    cpu_end = [cpu_seconds(w.process.pid) or 0.0 for w in ws]
    deadline = now + 30  # the counters move after the audit entry: wait for them to agree
    while sum(total.values()) < n and time.monotonic() < deadline:
        total = {}
        for w in ws:
            for outcome, value in w.counts(topic).items():
                total[outcome] = total.get(outcome, 0.0) + value
        time.sleep(0.5)
    rss_after = max((rss_bytes(w.process.pid) or 0) for w in ws)
    for w in ws:
        w.stop()
        bench.workers.remove(w)
    seconds = done - first_ready
    return {
        "workers": workers,
        "events": n,
        "seconds_to_first_ready": round(first_ready - started, 2),
        "seconds_to_all_ready": round(all_ready - started, 2),
        "seconds_processing": round(seconds, 2),
        "events_per_s": round(n / seconds, 1),
        "outcomes": {k: int(v) for k, v in sorted(total.items())},
        "rss_at_ready_bytes": rss_at_ready,
        "rss_after_bytes_max_worker": rss_after,
        # CPU while processing: each worker's own (user + system, all its threads) per event,
        # and the whole machine's busy share (the broker and the registry included)
        "worker_cpu_us_per_event": round(
            sum(e - b for b, e in zip(cpu_start, cpu_end, strict=True)) / n * 1e6, 1
        ),
        "machine_busy_share": round(
            (busy_end[0] - busy_start[0]) / max(1e-9, busy_end[1] - busy_start[1]), 3
        ),
    }


# --------------------------------------------------------------------------- step 4: latency
class OutboxProbe:
    """Reads ``portal.outbox`` as the portal must, ``read_committed``, in a thread of its
    own (so the event sender's loop never delays a read), and times each output by when it
    was *received*: a transactional record is invisible until its transaction commits, so
    its Kafka timestamp (when it was produced) would understate what a reader waits."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        deserializer: Any,
        sent_at: dict[str, float],
    ) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-probe-{uuid.uuid4().hex[:6]}",  # assigned: never joins
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,  # a fetch returns as soon as records are visible
            }
        )
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self.deserializer = deserializer
        self.sent_at = sent_at
        self.latencies: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.consumer.close()
        with contextlib.suppress(Exception):
            self.deserializer.registry.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            # one record at a time: a batch call waits for its count or its timeout, and
            # would stamp records that arrived early with the batch's end
            msg = self.consumer.poll(0.05)
            received = time.time()
            if msg is None or msg.error() is not None:
                continue
            try:
                _, record = self.deserializer.decode(msg.value() or b"")
            except Exception:
                continue
            cause = str(record.get("cause_event_id") or "")
            sent = self.sent_at.get(cause)
            if sent is not None and cause not in self.latencies:
                self.latencies[cause] = received - sent


async def latency_phase(bench: Bench, rates: list[int], seconds: float) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaProducer

    from hub.contract.registry import SchemaRegistryClient
    from hub.contract.serde import AvroDeserializer
    from hub.reference import load_reference

    prefix, app_id = bench.fresh_names("lat")
    in_topic, out_topic = f"{prefix}dossier.events", f"{prefix}portal.outbox"
    registry = SchemaRegistryClient(bench.registry_url)
    live = LiveEvents(dossier_serializer(registry, prefix), load_reference())
    create_topics(bench.bootstrap, [in_topic, out_topic], bench.args.partitions)
    worker = bench.start_worker(prefix, app_id, bench.workdir / f"data-{app_id}")
    await asyncio.to_thread(bench.wait_ready, [worker])
    say(f"  worker ready (app id {app_id}); consuming {out_topic}")

    sent_at: dict[str, float] = {}  # event id -> occurred_at (= send time), epoch seconds
    probe = OutboxProbe(
        bench.bootstrap,
        out_topic,
        bench.args.partitions,
        AvroDeserializer(SchemaRegistryClient(bench.registry_url)),  # its own: another thread
        sent_at,
    )
    latencies = probe.latencies  # event id -> seen by a read_committed reader - occurred_at
    producer = AIOKafkaProducer(
        bootstrap_servers=bench.bootstrap, acks="all", enable_idempotence=True, linger_ms=1
    )
    await producer.start()
    probe.start()

    async def processed() -> float:
        counts = await asyncio.to_thread(worker.counts, in_topic)
        return sum(counts.values())

    results: list[dict[str, Any]] = []
    total_sent = 0
    try:
        # Warm up: a few lives end to end, so the first rate does not pay for first sends.
        for _ in range(50):
            ev, stamp = live.take()
            await producer.send_and_wait(in_topic, ev.value, key=ev.key)
            total_sent += 1
        await wait_processed(processed, total_sent, 60)
        skip_rest = False
        for rate in rates:
            if skip_rest:
                results.append({"rate": rate, "sustained": False, "skipped": True})
                continue
            ids: list[str] = []
            say(f"  offering {rate} events/s for {seconds:.0f}s")
            checkpoints_before = await asyncio.to_thread(worker.checkpoints)
            start = time.monotonic()
            interval = 1.0 / rate
            next_at = start
            pending: list[Any] = []
            while True:
                now = time.monotonic()
                if now - start >= seconds:
                    break
                # send everything due now (catch up after a slow loop turn), then sleep
                while next_at <= now:
                    ev, stamp = live.take()
                    sent_at[ev.event_id] = stamp.timestamp()
                    ids.append(ev.event_id)
                    pending.append(await producer.send(in_topic, ev.value, key=ev.key))
                    next_at += interval
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*pending)
            window = time.monotonic() - start
            total_sent += len(ids)
            at_end = await processed()
            checkpoints_after = await asyncio.to_thread(worker.checkpoints)
            behind = total_sent - at_end
            drained_in = await wait_processed(processed, total_sent, 120)
            await asyncio.sleep(1.0)  # let the probe read the last outputs
            lat = [latencies[i] * 1000 for i in ids if i in latencies]
            sustained = behind <= rate * 1.0 and drained_in is not None and drained_in <= 5.0
            entry = {
                "rate": rate,
                "offered_events": len(ids),
                "achieved_send_rate": round(len(ids) / window, 1),
                "seconds": round(window, 1),
                "backlog_at_end": int(behind),
                "drain_seconds": None if drained_in is None else round(drained_in, 2),
                "outputs_matched": len(lat),
                "p50_ms": round(percentile(lat, 0.50), 1) if lat else None,
                "p95_ms": round(percentile(lat, 0.95), 1) if lat else None,
                "p99_ms": round(percentile(lat, 0.99), 1) if lat else None,
                "max_ms": round(max(lat), 1) if lat else None,
                "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
                "sustained": sustained,
                # the engine's checkpoints during the window: how many, and the mean time one
                # took to commit (flush, offsets, commit, store write), in which no record moves
                "checkpoints": int(checkpoints_after[0] - checkpoints_before[0]),
                "checkpoint_mean_ms": round(
                    (checkpoints_after[1] - checkpoints_before[1])
                    / max(1.0, checkpoints_after[0] - checkpoints_before[0])
                    * 1000,
                    1,
                ),
            }
            results.append(entry)
            say(
                f"  {rate}/s: sent {entry['achieved_send_rate']}/s, backlog {int(behind)}, "
                f"p50 {entry['p50_ms']} p95 {entry['p95_ms']} p99 {entry['p99_ms']} ms, "
                f"{entry['checkpoints']} checkpoints of {entry['checkpoint_mean_ms']} ms, "
                f"{'sustained' if sustained else 'NOT sustained'}"
            )
            if drained_in is None:
                say("  the worker did not drain in 120s; higher rates are not attempted")
                skip_rest = True
            elif not sustained:
                say("  not sustained; higher rates are not attempted")
                skip_rest = True
    finally:
        await asyncio.to_thread(probe.stop)
        await producer.stop()
        worker.kill()
        bench.workers.remove(worker)
        registry.close()
    return results


async def wait_processed(
    processed: Callable[[], Any], target: int, timeout_s: float
) -> float | None:
    """Seconds until the worker has read ``target`` events, None if not within timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await processed() >= target:
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    return None


# --------------------------------------------------------------------------- step 5: recovery
def group_members(bootstrap: str, group: str) -> tuple[str, set[str]]:
    """(state, member ids) of a consumer group, as the broker describes it."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-probe")
    try:
        info: Any = admin.describe_groups([group])
        if isinstance(info, dict):
            info = info.get(group, {})
        elif isinstance(info, list):
            info = info[0]
        if not isinstance(info, dict):
            info = info._asdict() if hasattr(info, "_asdict") else vars(info)
        state = str(info.get("group_state") or info.get("state") or "")
        members = set()
        for m in info.get("members") or []:
            member_id = m.get("member_id") if isinstance(m, dict) else m.member_id
            members.add(str(member_id))
        return state, members
    finally:
        admin.close()


def changelog_name(bench: Bench, prefix: str, app_id: str) -> str:
    """The worker's state changelog (hub.engine.changelog)."""
    from hub.engine.changelog import changelog_topic

    return changelog_topic(app_id)


def restart_timing(
    bench: Bench,
    worker: Worker,
    app_id: str,
    probe: str,
    members_before: set[str],
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Seconds from ``worker``'s start until the group is stable without the members of
    before, until ``/ready`` answers 200 and until ``GET /dossiers/<probe>`` does."""
    started = worker.started
    joined = ready = answered = None
    while ready is None or answered is None:
        if not worker.alive():
            raise BenchError(f"restarted worker exited:\n{worker.log_tail()}")
        now = time.monotonic()
        if now - started > timeout_s:
            raise BenchError(f"restarted worker not serving in {timeout_s:.0f}s")
        if joined is None and members_before:
            with contextlib.suppress(Exception):
                state, members = group_members(bench.bootstrap, app_id)
                if state == "Stable" and members and not members & members_before:
                    joined = time.monotonic()
        if ready is None and worker.ready():
            ready = time.monotonic()
        if answered is None and http_get(f"{worker.url}/dossiers/{probe}")[0] == 200:
            answered = time.monotonic()
        time.sleep(0.1)
    return {
        "to_group_stable_s": None if joined is None else round(joined - started, 2),
        "to_ready_s": round(ready - started, 2),
        "to_query_s": round(answered - started, 2),
    }


def members_of(bench: Bench, app_id: str) -> set[str]:
    try:
        return group_members(bench.bootstrap, app_id)[1]
    except Exception as exc:
        say(f"  cannot describe the consumer group {app_id}: {exc}")
        return set()


def recovery_phase(bench: Bench, dossiers: int) -> dict[str, Any]:
    """``dossiers`` dossiers (one submission each) into a fresh worker's state, RSS before
    and after; then (a) SIGTERM and a restart on the kept data dir, (b) ``kill -9`` and a
    restart on an empty one (restore from the changelog), each timed to ``/ready`` and to
    the first answered dossier query."""
    from hub.contract.registry import SchemaRegistryClient

    prefix, app_id = bench.fresh_names("rec")
    topic = f"{prefix}dossier.events"
    create_topics(bench.bootstrap, [topic], bench.args.partitions)
    data1 = bench.workdir / f"data-{app_id}-1"
    worker = bench.start_worker(prefix, app_id, data1)
    ready = bench.wait_ready([worker])
    fresh_ready_s = ready - worker.started
    time.sleep(2.0)
    rss_before = rss_bytes(worker.process.pid) or 0
    say(f"  ready in {fresh_ready_s:.1f}s, RSS {rss_before / 2**20:.0f} MiB; loading")
    registry = SchemaRegistryClient(bench.registry_url)
    probe_at = dossiers // 2
    probe = ""

    def stream() -> Iterable[EncodedEvent]:
        nonlocal probe
        for i, event in enumerate(submissions(dossiers, dossier_serializer(registry, prefix))):
            if i == probe_at:
                probe = event.key.decode()
            yield event

    try:
        load_s = produce_all(bench.bootstrap, topic, stream(), dossiers)
    finally:
        registry.close()
    say(f"  {dossiers} submissions loaded in {load_s:.1f}s; waiting until the worker applied them")
    applied = bench.applied_counter(prefix, app_id)
    last = last_change = time.monotonic()
    seen = 0
    try:
        while (count := applied()) < dossiers:
            if not worker.alive():
                raise BenchError(f"hub worker died:\n{worker.log_tail()}")
            now = time.monotonic()
            if count > seen:
                seen, last_change = count, now
            elif now - last_change > 120:
                raise BenchError(f"hub stalled at {count}/{dossiers}:\n{worker.log_tail()}")
            if now - last >= 5:
                last = now
                say(f"  recovery load: {count}/{dossiers}")
            time.sleep(0.5)
    finally:
        applied.close()
    applied_s = time.monotonic() - ready
    counts = worker.counts(topic)
    time.sleep(2.0)
    rss_after = rss_bytes(worker.process.pid) or 0
    status, _ = http_get(f"{worker.url}/dossiers/{probe}")
    if status != 200:
        say(f"  warning: /dossiers/{probe} answered {status} before the restarts")

    # (a) SIGTERM, restart on the kept data dir
    members = members_of(bench, app_id)
    say(f"  {dossiers} dossiers in state, RSS {rss_after / 2**20:.0f} MiB; SIGTERM")
    stopping = time.monotonic()
    worker.stop()
    stop_s = time.monotonic() - stopping
    bench.workers.remove(worker)
    kept = bench.start_worker(prefix, app_id, data1)
    kept_times = restart_timing(bench, kept, app_id, probe, members)
    say(
        f"  kept data dir: /ready {kept_times['to_ready_s']}s, "
        f"query {kept_times['to_query_s']}s after the start"
    )

    # (b) kill -9, restart on an empty data dir: the state comes back from the changelog
    changelog = changelog_contents(bench.bootstrap, changelog_name(bench, prefix, app_id))
    members = members_of(bench, app_id)
    say(f"  changelog {changelog}; kill -9")
    kept.process.send_signal(signal.SIGKILL)
    kept.process.wait()
    bench.workers.remove(kept)
    empty = bench.start_worker(prefix, app_id, bench.workdir / f"data-{app_id}-2")
    empty_times = restart_timing(bench, empty, app_id, probe, members)
    say(
        f"  empty data dir: /ready {empty_times['to_ready_s']}s, "
        f"query {empty_times['to_query_s']}s after the start"
    )
    rss_restored = rss_bytes(empty.process.pid)
    empty.kill()
    bench.workers.remove(empty)

    # (c) the same for a named worker (HUB_WORKER_NAME: a static member, as compose runs
    # them): started once under its name (a new member, so after the killed one's session),
    # then killed and restarted under that name on another empty data dir
    named_env = {"HUB_WORKER_NAME": "bench-named"}
    first = bench.start_worker(prefix, app_id, bench.workdir / f"data-{app_id}-3", named_env)
    restart_timing(bench, first, app_id, probe, set())
    members = members_of(bench, app_id)
    say("  named worker serving; kill -9")
    first.kill()
    bench.workers.remove(first)
    named = bench.start_worker(prefix, app_id, bench.workdir / f"data-{app_id}-4", named_env)
    named_times = restart_timing(bench, named, app_id, probe, members)
    say(
        f"  named, empty data dir: /ready {named_times['to_ready_s']}s, "
        f"query {named_times['to_query_s']}s after the start"
    )
    named.kill()
    bench.workers.remove(named)
    per_dossier = (rss_after - rss_before) / max(1, dossiers)
    return {
        "dossiers": dossiers,
        "events": dossiers,
        "outcomes": {k: int(v) for k, v in sorted(counts.items())},
        "fresh_start_ready_s": round(fresh_ready_s, 2),
        "load_applied_s": round(applied_s, 2),
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_after_restore_bytes": rss_restored,
        "rss_bytes_per_dossier": round(per_dossier, 1),
        "sigterm_stop_s": round(stop_s, 2),
        "kept_disk": kept_times,
        "changelog": changelog,
        "empty_disk": empty_times,
        "named_empty_disk": named_times,
        "session_timeout_s": float(
            os.environ.get("HUB_SESSION_TIMEOUT_S") or default_setting("session_timeout_s")
        ),
    }


def default_setting(name: str) -> Any:
    from hub.settings import HubSettings

    return HubSettings.model_fields[name].default


def changelog_contents(bootstrap: str, topic: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Records a read_committed reader of the changelog sees, from its beginning (what a
    restore on an empty disk replays): dossier states and meta records (the checkpoint
    engine writes one per partition and checkpoint)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from hub.engine.store import META_KEY

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-changelog-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    states = meta = 0
    started = time.monotonic()
    try:
        info = consumer.list_topics(topic, timeout=30).topics.get(topic)
        parts = sorted(info.partitions) if info is not None and info.partitions else []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        pending = set(parts)
        while pending and time.monotonic() - started < timeout_s:
            for msg in consumer.consume(10_000, timeout=1.0):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                    continue
                if msg.key() == META_KEY:
                    meta += 1
                else:
                    states += 1
        return {
            "records": states + meta,
            "state_records": states,
            "meta_records": meta,
            "complete": not pending,
            "seconds_to_read": round(time.monotonic() - started, 2),
        }
    finally:
        consumer.close()


# --------------------------------------------------------------------------- report
def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def build_report(res: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(markdown, targets): every measure, then each target of issue 12 with its verdict."""
    rows: list[tuple[str, str]] = []
    targets: list[dict[str, Any]] = []
    load = res.get("load") or {}
    base = res.get("baseline") or {}
    txn = res.get("baseline_txn") or {}
    serial = res.get("baseline_serial") or {}
    hub = res.get("hub") or {}
    h1, h2 = hub.get("1"), hub.get("2")
    engine = (res.get("settings") or {}).get("engine", "?")
    if load:
        rows.append(
            (
                "load (producer, acks=all)",
                f"{load['events']} events of {load['dossiers']} dossiers in "
                f"{load['seconds']:.1f} s = {load['events_per_s']:.0f} events/s",
            )
        )
    if base:
        rows.append(
            (
                "baseline A: aiokafka consume + Avro decode + produce 1 record",
                f"{base['events_per_s']:.0f} events/s",
            )
        )
    if txn:
        rows.append(
            (
                "baseline B: confluent-kafka, read_committed batches of "
                f"{txn['batch']}, Avro decode, {txn['outputs_per_event']} outputs/event + "
                f"1 changelog record/key, transaction every {txn['commit_interval_ms']:.0f} ms",
                f"{txn['events_per_s']:.0f} events/s ({txn['transactions']} transactions, "
                f"{txn['changelog_records']} changelog records)",
            )
        )
    if serial:
        rows.append(
            (
                "baseline A, waiting for each output's ack before the next record",
                f"{serial['events_per_s']:.0f} events/s ({serial['events']} events)",
            )
        )
    faster = max((b for b in (base, txn) if b), key=lambda b: b["events_per_s"], default=None)
    for label, h in (("1 worker", h1), ("2 workers", h2)):
        if h:
            rows.append(
                (
                    f"hub ({engine} engine), {label} (preloaded, from the beginning)",
                    f"{h['events_per_s']:.0f} events/s ({h['events']} events, "
                    f"{h['seconds_processing']:.1f} s after /ready; outcomes {h['outcomes']})",
                )
            )
            if "machine_busy_share" in h:
                rows.append(
                    (
                        f"... CPU, {label}",
                        f"workers {h['worker_cpu_us_per_event']:.0f} µs/event (all threads); "
                        f"machine {h['machine_busy_share']:.0%} busy (broker and registry "
                        "included)",
                    )
                )
    ratio = None
    if h1 and faster:
        ratio = h1["events_per_s"] / faster["events_per_s"]
        name = "B" if faster is txn else "A"
        rows.append((f"hub (1 worker) / faster baseline ({name})", f"{ratio:.1%}"))
    scaling = None
    if h1 and h2:
        scaling = h2["events_per_s"] / h1["events_per_s"]
        rows.append(("scaling 1 -> 2 workers", f"x{scaling:.2f}"))
    lat = res.get("latency") or []
    at_2000: dict[str, Any] | None = None
    for entry in lat:
        if entry["rate"] == 2000:
            at_2000 = entry
        if entry.get("skipped"):
            rows.append(
                (
                    f"latency at {entry['rate']} events/s",
                    "not sustained (a lower rate already was not; not run)",
                )
            )
            continue
        text = (
            f"p50 {entry['p50_ms']} / p95 {entry['p95_ms']} / p99 {entry['p99_ms']} ms "
            f"(sent {entry['achieved_send_rate']:.0f}/s, {entry['outputs_matched']} outputs "
            f"timed, backlog at end {entry['backlog_at_end']})"
        )
        if not entry["sustained"]:
            text = "NOT sustained: " + text
        rows.append(
            (
                f"latency at {entry['rate']} events/s, event time -> portal.outbox record "
                "received by a read_committed consumer",
                text,
            )
        )
    rec = res.get("recovery") or {}
    kept, empty = rec.get("kept_disk") or {}, rec.get("empty_disk") or {}
    if rec:
        rows.append(
            (
                f"RSS, {rec['dossiers']} dossiers (one submission each)",
                f"{rec['rss_before_bytes'] / 2**20:.0f} MiB -> "
                f"{rec['rss_after_bytes'] / 2**20:.0f} MiB = "
                f"{rec['rss_bytes_per_dossier']:.0f} bytes/dossier",
            )
        )
        rows.append(
            (
                "restart after SIGTERM, kept data dir (from the process start)",
                f"/ready {kept['to_ready_s']} s, first dossier query {kept['to_query_s']} s "
                f"(group stable {kept['to_group_stable_s']} s; stop took "
                f"{rec['sigterm_stop_s']} s)",
            )
        )
        log = rec.get("changelog") or {}
        rows.append(
            (
                "restart after kill -9, empty data dir (from the process start)",
                f"/ready {empty['to_ready_s']} s, first dossier query {empty['to_query_s']} s "
                f"(group stable {empty['to_group_stable_s']} s, session timeout "
                f"{rec['session_timeout_s']:.0f} s)",
            )
        )
        named = rec.get("named_empty_disk")
        if named:
            rows.append(
                (
                    "restart after kill -9 of a named worker (HUB_WORKER_NAME), empty data dir",
                    f"/ready {named['to_ready_s']} s, first dossier query "
                    f"{named['to_query_s']} s (group stable {named['to_group_stable_s']} s)",
                )
            )
        rows.append(
            (
                "changelog restored on the empty data dir",
                f"{log.get('records')} records ({log.get('state_records')} states, "
                f"{log.get('meta_records')} meta)"
                + ("" if log.get("complete", True) else " (count incomplete)"),
            )
        )
    replay = res.get("replay") or {}
    if replay:
        rows.append(
            (
                "EXTRAPOLATED: rebuild 1M dossiers / 10M events",
                f"{replay['seconds_10m_1w'] / 60:.1f} min with 1 worker"
                + (
                    f", {replay['seconds_10m_2w'] / 60:.1f} min with 2"
                    if replay.get("seconds_10m_2w")
                    else ""
                )
                + f" (from a run of {replay['from_events']} events)",
            )
        )

    def target(name: str, value: str, ok: bool | None) -> None:
        targets.append({"target": name, "measured": value, "verdict": verdict(ok)})

    rate1 = h1["events_per_s"] if h1 else None
    target(
        "hub, 1 worker >= 5,000 events/s",
        f"{rate1:.0f}/s" if rate1 else "-",
        None if rate1 is None else rate1 >= 5_000,
    )
    target(
        "hub, 1 worker >= 30% of the faster baseline",
        f"{ratio:.1%}" if ratio is not None else "-",
        None if ratio is None else ratio >= 0.30,
    )
    target(
        "goal: 10,000 events/s per worker",
        f"{rate1:.0f}/s" if rate1 else "-",
        None if rate1 is None else rate1 >= 10_000,
    )
    target(
        "2 workers >= 1.6 x 1 worker",
        f"x{scaling:.2f}" if scaling is not None else "-",
        None if scaling is None else scaling >= 1.6,
    )
    unsustained = [e["rate"] for e in lat if not e.get("skipped") and not e["sustained"]]
    name = "p99 <= 100 ms at 2,000 events/s (read_committed, received)"
    if at_2000 is None and unsustained and min(unsustained) < 2000:
        target(name, f"not sustained (already not at {min(unsustained)} events/s)", False)
    elif at_2000 is None:
        target(name, "not measured", None)
    elif at_2000.get("skipped") or not at_2000["sustained"]:
        target(name, "not sustained", False)
    else:
        p99 = at_2000["p99_ms"]
        target(name, f"{p99} ms", None if p99 is None else p99 <= 100)
    size = ""
    if rec and rec["dossiers"] < 200_000:
        size = f" (only {rec['dossiers']} dossiers: the target asks >= 200,000)"
    for label, times, limit in (("kept disk", kept, 10.0), ("empty disk", empty, 60.0)):
        served = times.get("to_query_s") if times else None
        target(
            f"restart, {label}, serving (dossier query answered) <= {limit:.0f} s, "
            ">= 200,000 dossiers",
            f"{served} s{size}" if served is not None else "-",
            None if served is None or size else served <= limit,
        )
    per = rec.get("rss_bytes_per_dossier")
    target(
        "<= 1 KB RSS per dossier",
        f"{per:.0f} B{size}" if per is not None else "-",
        None if per is None or size else per <= 1024,
    )
    if replay:
        best = min(x for x in (replay["seconds_10m_1w"], replay.get("seconds_10m_2w")) if x)
        short = replay["from_events"] < 2_000_000
        target(
            "rebuild 1M dossiers / 10M events <= 5 min, extrapolated from >= 2M events",
            f"{best / 60:.1f} min"
            + (f" (from only {replay['from_events']} events)" if short else ""),
            None if short else best <= 300,
        )
    else:
        target("rebuild 1M dossiers / 10M events <= 5 min, extrapolated", "-", None)

    loads = res.get("load_average_after_step") or {}
    if loads:
        rows.append(
            (
                "1-min load average after each step (2 cores)",
                ", ".join(f"{k} {v}" for k, v in loads.items()),
            )
        )
    lines = ["| measure | result |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines += ["", "| target (issue 12) | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in targets]
    return "\n".join(lines), targets


def extrapolate(res: dict[str, Any]) -> None:
    """Rebuilding the view of 1M dossiers is reading their 10M events from the beginning,
    which step 3 measures: scaled linearly from its rate."""
    hub = res.get("hub") or {}
    h1, h2 = hub.get("1"), hub.get("2")
    if h1:
        res["replay"] = {
            "events_per_s": h1["events_per_s"],
            "from_events": h1["events"],
            "seconds_10m_1w": round(10_000_000 / h1["events_per_s"], 0),
            "seconds_10m_2w": round(10_000_000 / h2["events_per_s"], 0) if h2 else None,
            "note": "extrapolation: linear in events, measured at "
            f"{h1['events']} events; 1M dossiers taken as 10M events",
        }


# --------------------------------------------------------------------------- main
def note_load(res: dict[str, Any], step: str) -> None:
    """The 1-minute load average after a step: other work on the machine skews results."""
    res.setdefault("load_average_after_step", {})[step] = round(os.getloadavg()[0], 2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument(
        "--events",
        type=int,
        help="events to load (default 50000, quick 5000; issue 12's run: 2000000); "
        "streamed through a file in the temporary dir, not held in memory",
    )
    p.add_argument("--partitions", type=int, default=6, help="partitions of every topic (6)")
    p.add_argument(
        "--dossiers",
        type=int,
        help="dossiers in state (one submission each) for restart/memory "
        "(default 200000, quick 2000)",
    )
    p.add_argument(
        "--rates", help="offered loads, events/s (default 100,200,500,1000,2000; quick 100,2000)"
    )
    p.add_argument(
        "--rate-seconds", type=float, help="seconds per offered load (default 20, quick 5)"
    )
    p.add_argument(
        "--serial-events",
        type=int,
        default=5000,
        help="events for the serial-ack baseline (5000; 0 or --skip serial: not run)",
    )
    p.add_argument("--workers", default="1,2", help="hub worker counts to run (1,2)")
    p.add_argument(
        "--profile-worker",
        action="store_true",
        help="run each hub worker under pyinstrument (pip install pyinstrument); reports in "
        "bench/results/profile-*.txt",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma list of steps to skip: baseline (A and B), serial, hub, latency, recovery",
    )
    args = p.parse_args(argv)
    if args.events is None:
        args.events = 5_000 if args.quick else 50_000
    if args.dossiers is None:
        args.dossiers = 2_000 if args.quick else 200_000
    if args.rates is None:
        args.rates = "100,2000" if args.quick else "100,200,500,1000,2000"
    if args.rate_seconds is None:
        args.rate_seconds = 5.0 if args.quick else 20.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    from hub.contract.registry import SchemaRegistryClient
    from hub.stack.stack import LocalStack, StackConfig
    from hub.stack.tools import free_port

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    res: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "command": " ".join([".venv/bin/python -m bench.run", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "versions": versions(),
        "settings": {
            "events": args.events,
            "partitions": args.partitions,
            "dossiers": args.dossiers,
            "rates": [int(r) for r in args.rates.split(",")],
            "rate_seconds": args.rate_seconds,
            "serial_events": args.serial_events,
            "workers": args.workers,
            "quick": args.quick,
            "engine": "checkpoint",
            "hub_store": "rocksdb (default)",
            "hub_log_level": "warn",
            "hub_session_timeout_s": default_setting("session_timeout_s"),
            "hub_commit_interval_ms": default_setting("commit_interval_ms"),
            "hub_batch_max": default_setting("batch_max"),
            "txn_baseline": {"batch": 2000, "commit_interval_ms": 100},
        },
        "errors": {},
    }
    m = res["machine"]
    say(
        f"machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}; "
        f"load average {m['load_average_at_start'][0]:.2f}"
    )
    say(f"versions: {res['versions']}")
    stack = LocalStack(
        StackConfig(
            state_dir=workdir / "stack",
            kafka_port=free_port(),
            controller_port=free_port(),
            registry_port=free_port(),
            partitions=args.partitions,
        )
    )
    bench = Bench(args, workdir)
    code = 0
    try:
        say(f"starting the local stack in {workdir / 'stack'}")
        stack.up(progress=lambda msg: say(f"  {msg}"))
        bench.bootstrap, bench.registry_url = stack.bootstrap, stack.registry_url
        say(f"stack ready: {bench.bootstrap}, {bench.registry_url}")

        # 1. load
        say(f"step 1/6 load: encoding {args.events} simulator events into a file")
        prefix, _ = bench.fresh_names("load")
        registry = SchemaRegistryClient(bench.registry_url)
        t = time.monotonic()
        events = EventFile(workdir / "events.bin").write(
            encode_events(args.events, dossier_serializer(registry, prefix), progress=say)
        )
        registry.close()
        say(
            f"  {len(events)} events of {events.dossiers} dossiers encoded in "
            f"{time.monotonic() - t:.1f}s"
        )
        seconds = load_copy(bench, prefix, events)
        res["load"] = {
            "events": len(events),
            "dossiers": events.dossiers,
            "seconds": round(seconds, 2),
            "events_per_s": round(len(events) / seconds, 1),
        }
        say(f"  loaded into {prefix}dossier.events: {len(events) / seconds:.0f} events/s")
        in_topic = f"{prefix}dossier.events"

        # 2. baselines
        if "baseline" not in skip:
            say("step 2/6 baseline A: aiokafka consume + Avro decode + produce")
            out_topic = f"{prefix}bench.baseline.out"
            create_topics(bench.bootstrap, [out_topic], args.partitions)
            try:
                res["baseline"] = asyncio.run(
                    baseline_loop(
                        bench.bootstrap,
                        bench.registry_url,
                        in_topic,
                        out_topic,
                        len(events),
                        args.partitions,
                    )
                )
                say(f"  baseline A: {res['baseline']['events_per_s']:.0f} events/s")
            except Exception as exc:
                res["errors"]["baseline"] = str(exc)
                say(f"  baseline A failed: {exc}")
            say(
                "step 2/6 baseline B: confluent-kafka transactions (read_committed, "
                "batches of 2000, Avro decode, 3 outputs/event + changelog, commit every 100 ms)"
            )
            out_prefix = f"{prefix}bench.txn."
            create_topics(
                bench.bootstrap,
                [f"{out_prefix}{n}" for n in (*TXN_BASELINE_OUTPUTS, "changelog")],
                args.partitions,
            )
            try:
                res["baseline_txn"] = txn_baseline(
                    bench.bootstrap, bench.registry_url, in_topic, out_prefix, len(events)
                )
                say(f"  baseline B: {res['baseline_txn']['events_per_s']:.0f} events/s")
            except Exception as exc:
                res["errors"]["baseline_txn"] = str(exc)
                say(f"  baseline B failed: {exc}")
            serial_n = min(len(events), args.serial_events)
            if "serial" not in skip and serial_n > 0:
                say(f"  baseline A waiting for each output's ack (first {serial_n} events)")
                try:
                    res["baseline_serial"] = asyncio.run(
                        baseline_loop(
                            bench.bootstrap,
                            bench.registry_url,
                            in_topic,
                            out_topic,
                            serial_n,
                            args.partitions,
                            serial=True,
                        )
                    )
                    say(f"  serial-ack: {res['baseline_serial']['events_per_s']:.0f} events/s")
                except Exception as exc:
                    res["errors"]["baseline_serial"] = str(exc)
                    say(f"  serial-ack baseline failed: {exc}")
            note_load(res, "baseline")

        # 3. hub
        res["hub"] = {}
        if "hub" not in skip:
            for count in [int(w) for w in args.workers.split(",")]:
                say(
                    f"step 3/6 hub (checkpoint engine): {count} worker(s) over "
                    f"{len(events)} preloaded events"
                )
                try:
                    run = hub_run(bench, events, count)
                    res["hub"][str(count)] = run
                    note_load(res, f"hub{count}")
                    say(
                        f"  hub x{count}: {run['events_per_s']:.0f} events/s "
                        f"({run['seconds_processing']:.1f}s after first /ready at "
                        f"{run['seconds_to_first_ready']:.1f}s; outcomes {run['outcomes']})"
                    )
                except Exception as exc:
                    res["errors"][f"hub{count}"] = str(exc)
                    say(f"  hub x{count} failed: {exc}")
                    bench.stop_all()
        events.path.unlink(missing_ok=True)

        # 4. latency
        if "latency" not in skip:
            rates = [int(r) for r in args.rates.split(",")]
            say(f"step 4/6 latency: offered loads {rates} events/s, {args.rate_seconds:.0f}s each")
            try:
                res["latency"] = asyncio.run(latency_phase(bench, rates, args.rate_seconds))
                note_load(res, "latency")
            except Exception as exc:
                res["errors"]["latency"] = str(exc)
                say(f"  latency failed: {exc}")
                bench.stop_all()

        # 5. recovery and memory
        if "recovery" not in skip:
            say(f"step 5/6 restart and memory: {args.dossiers} dossiers")
            try:
                res["recovery"] = recovery_phase(bench, args.dossiers)
                note_load(res, "recovery")
                r = res["recovery"]
                say(
                    f"  {r['rss_bytes_per_dossier']:.0f} bytes RSS/dossier; serving after "
                    f"{r['kept_disk']['to_query_s']}s (kept disk), "
                    f"{r['empty_disk']['to_query_s']}s (empty disk)"
                )
            except Exception as exc:
                res["errors"]["recovery"] = str(exc)
                say(f"  recovery failed: {exc}")
                bench.stop_all()

        # 6. replay
        say("step 6/6 replay: the hub rate of step 3, extrapolated")
        extrapolate(res)
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        code = 130
    except Exception as exc:  # report what was measured so far
        res["errors"]["fatal"] = f"{type(exc).__name__}: {exc}"
        say(f"failed: {type(exc).__name__}: {exc}")
        code = 1
    finally:
        bench.stop_all()
        say("stopping the local stack")
        with contextlib.suppress(Exception):
            stack.down()
        shutil.rmtree(workdir, ignore_errors=True)

    res["finished_at"] = datetime.now(UTC).isoformat()
    res["machine"]["load_average_at_end"] = list(os.getloadavg())
    table, targets = build_report(res)
    res["targets"] = targets
    res["table_markdown"] = table
    publish(res, table, f"{stamp}.json")
    return code


if __name__ == "__main__":
    sys.exit(main())
