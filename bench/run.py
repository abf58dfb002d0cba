"""End-to-end benchmark of the hub on its own local stack.

    .venv/bin/python -m bench.run [--events N] [--partitions P] [--quick] [...]

Starts a local stack (Kafka + schema registry, free ports, a temporary state directory),
then, each step with progress lines:

1. load: N simulator dossier events (validated, Avro, Confluent framing) into
   ``<prefix>dossier.events`` with P partitions;
2. baseline: a plain aiokafka loop (consume, Avro-decode, produce one record per event): the
   ceiling of this stack on this machine;
3. hub: ``python -m hub worker`` processing the preloaded topic from the beginning, with 1
   and with 2 workers (fresh app id, prefix and data dir each run);
4. latency: live events at fixed offered loads into a running worker, p50/p95/p99 from each
   event's send time to the Kafka timestamp of its ``portal.outbox`` record;
5. recovery and memory: K dossiers in state, RSS before and after, ``kill -9``, restart on an
   empty data dir, time until ``/ready`` and until a dossier query answers;
6. replay: step 3's rate, extrapolated to 1M dossiers / 10M events.

Prints a markdown table, writes ``bench/results/<timestamp>.json``, stops the stack and every
process it started (also on Ctrl-C).
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

from bench.events import EncodedEvent, LiveEvents, dossier_serializer, preencode
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
def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
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


class AuditCount:
    """Events the hub has applied, read off Kafka: the sum of the end offsets of the audit
    topic, where the worker appends one acknowledged entry per applied event before it stores
    the new state. Costs the worker nothing, unlike rendering its /metrics page, which with
    thousands of ``hub_dossiers`` series took a fifth of the worker's time when the benchmark
    scraped it every 0.5 s (pyinstrument); /metrics is now read every 5 s, as a scrape would."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer

        self.topic = topic
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="bench-audit-count",
            isolation_level=READ_COMMITTED,
        )

    def __call__(self) -> int:
        from kafka import TopicPartition

        parts = self.consumer.partitions_for_topic(self.topic) or set()
        ends = self.consumer.end_offsets([TopicPartition(self.topic, p) for p in parts])
        return int(sum(ends.values()))

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

    def start_worker(
        self, prefix: str, app_id: str, data_dir: Path, extra: dict[str, str] | None = None
    ) -> Worker:
        from hub.stack.tools import free_port

        port = free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SCHEMA_REGISTRY_URL": self.registry_url,
            "HUB_TOPIC_PREFIX": prefix,
            "HUB_APP_ID": app_id,
            "HUB_DATA_DIR": str(data_dir),
            "HUB_WEB_PORT": str(port),
            "HUB_PARTITIONS": str(self.args.partitions),
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

    def stop_all(self) -> None:
        for w in self.workers:
            w.kill()
        self.workers.clear()


# --------------------------------------------------------------------------- Kafka helpers
def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-setup")
    try:
        admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
    finally:
        admin.close()


async def produce_all(bootstrap: str, topic: str, events: list[EncodedEvent]) -> float:
    """Write the events (acks=all, idempotent, as EventPublisher); returns seconds taken."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        started = time.monotonic()
        chunk = 5000
        for i in range(0, len(events), chunk):
            futures = [
                await producer.send(
                    topic, e.value, key=e.key, headers=[("event-type", e.event_type.encode())]
                )
                for e in events[i : i + chunk]
            ]
            await asyncio.gather(*futures)
            if (i // chunk) % 10 == 9:
                say(f"  loaded {i + chunk}/{len(events)}")
        return time.monotonic() - started
    finally:
        await producer.stop()


def load_copy(bench: Bench, prefix: str, events: list[EncodedEvent]) -> float:
    topic = f"{prefix}dossier.events"
    create_topics(bench.bootstrap, [topic], bench.args.partitions)
    return asyncio.run(produce_all(bench.bootstrap, topic, events))


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


# --------------------------------------------------------------------------- step 3: hub
def hub_run(bench: Bench, events: list[EncodedEvent], workers: int) -> dict[str, Any]:
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
    total: dict[str, float] = {}
    last_progress = last_change = last_scrape = time.monotonic()
    seen = 0.0
    applied = AuditCount(bench.bootstrap, f"{prefix}hub.audit")
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
    }


# --------------------------------------------------------------------------- step 4: latency
async def latency_phase(bench: Bench, rates: list[int], seconds: float) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

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

    deserializer = AvroDeserializer(registry)
    sent_at: dict[str, float] = {}  # event id -> occurred_at (= send time), epoch seconds
    latencies: dict[str, float] = {}  # event id -> output Kafka timestamp - occurred_at
    consumer = AIOKafkaConsumer(
        out_topic,
        bootstrap_servers=bench.bootstrap,
        group_id=f"{app_id}-probe",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=READ_COMMITTED,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bench.bootstrap, acks="all", enable_idempotence=True, linger_ms=1
    )
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()

    async def consume() -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batches.values():
                for rec in records:
                    try:
                        _, record = deserializer.decode(rec.value)
                    except Exception:
                        continue
                    cause = str(record.get("cause_event_id") or "")
                    if cause in sent_at and cause not in latencies:
                        latencies[cause] = rec.timestamp / 1000.0 - sent_at[cause]

    async def processed() -> float:
        counts = await asyncio.to_thread(worker.counts, in_topic)
        return sum(counts.values())

    consumer_task = asyncio.create_task(consume())
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
            }
            results.append(entry)
            say(
                f"  {rate}/s: sent {entry['achieved_send_rate']}/s, backlog {int(behind)}, "
                f"p50 {entry['p50_ms']} p95 {entry['p95_ms']} p99 {entry['p99_ms']} ms, "
                f"{'sustained' if sustained else 'NOT sustained'}"
            )
            if drained_in is None:
                say("  the worker did not drain in 120s; higher rates are not attempted")
                skip_rest = True
            elif not sustained:
                say("  not sustained; higher rates are not attempted")
                skip_rest = True
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer_task, 10)
        await consumer.stop()
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


def recovery_phase(bench: Bench, dossiers: int) -> dict[str, Any]:
    from hub.contract.registry import SchemaRegistryClient

    prefix, app_id = bench.fresh_names("rec")
    topic = f"{prefix}dossier.events"
    registry = SchemaRegistryClient(bench.registry_url)
    try:
        events = preencode(
            None, dossier_serializer(registry, prefix), dossiers=dossiers, seed=23, progress=say
        )
    finally:
        registry.close()
    codes = sorted({e.key for e in events})
    n = len(events)
    say(f"  {len(codes)} dossiers, {n} events; starting a worker on an empty topic")
    create_topics(bench.bootstrap, [topic], bench.args.partitions)
    data1 = bench.workdir / f"data-{app_id}-1"
    started = time.monotonic()
    worker = bench.start_worker(prefix, app_id, data1)
    ready = bench.wait_ready([worker])
    fresh_ready_s = ready - started
    time.sleep(2.0)
    rss_before = rss_bytes(worker.process.pid) or 0
    say(f"  ready in {fresh_ready_s:.1f}s, RSS {rss_before / 2**20:.0f} MiB; loading")
    load_s = asyncio.run(produce_all(bench.bootstrap, topic, events))
    say(f"  loaded in {load_s:.1f}s; waiting until the worker read them all")
    last = time.monotonic()
    while True:
        if not worker.alive():
            raise BenchError(f"hub worker died:\n{worker.log_tail()}")
        count = sum(worker.counts(topic).values())
        if count >= n:
            break
        if time.monotonic() - last >= 5:
            last = time.monotonic()
            say(f"  recovery load: {count:.0f}/{n}")
        time.sleep(0.5)
    counts = worker.counts(topic)
    time.sleep(2.0)
    rss_after = rss_bytes(worker.process.pid) or 0
    probe = codes[len(codes) // 2].decode()
    status, _ = http_get(f"{worker.url}/dossiers/{probe}")
    if status != 200:
        say(f"  warning: /dossiers/{probe} answered {status} before the kill")
    try:
        _, members_before = group_members(bench.bootstrap, app_id)
    except Exception as exc:
        say(f"  cannot describe the consumer group {app_id}: {exc}")
        members_before = set()
    say(f"  {len(codes)} dossiers in state, RSS {rss_after / 2**20:.0f} MiB; kill -9")
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait()
    bench.workers.remove(worker)
    data2 = bench.workdir / f"data-{app_id}-2"  # empty: state comes back from the changelog
    restarted = time.monotonic()
    worker2 = bench.start_worker(prefix, app_id, data2)
    joined: float | None = None
    ready2: float | None = None
    while ready2 is None:
        if not worker2.alive():
            raise BenchError(f"restarted worker exited:\n{worker2.log_tail()}")
        if joined is None and members_before:
            with contextlib.suppress(Exception):
                state, members = group_members(bench.bootstrap, app_id)
                if state == "Stable" and members and not members & members_before:
                    joined = time.monotonic()
        if worker2.ready():
            ready2 = time.monotonic()
        elif time.monotonic() - restarted > 600:
            raise BenchError(f"restarted worker not ready in 600s:\n{worker2.log_tail()}")
        else:
            time.sleep(0.2)
    answered: float | None = None
    while answered is None and time.monotonic() - restarted < 600:
        status, _ = http_get(f"{worker2.url}/dossiers/{probe}")
        if status == 200:
            answered = time.monotonic()
        else:
            time.sleep(0.1)
    rss_restored = rss_bytes(worker2.process.pid)
    changelog = changelog_records(bench.bootstrap, f"{app_id}-dossiers-changelog")
    worker2.kill()
    bench.workers.remove(worker2)
    per_dossier = (rss_after - rss_before) / max(1, len(codes))
    return {
        "dossiers": len(codes),
        "events": n,
        "outcomes": {k: int(v) for k, v in sorted(counts.items())},
        "fresh_start_ready_s": round(fresh_ready_s, 2),
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_after_restore_bytes": rss_restored,
        "rss_bytes_per_dossier": round(per_dossier, 1),
        "changelog_records": changelog,
        "restart_to_group_stable_s": None if joined is None else round(joined - restarted, 2),
        "restart_to_ready_s": round(ready2 - restarted, 2),
        "restart_to_query_s": None if answered is None else round(answered - restarted, 2),
        "session_timeout_s": 30.0,
    }


def changelog_records(bootstrap: str, topic: str) -> int | None:
    from kafka import KafkaConsumer, TopicPartition

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, client_id="bench-probe", isolation_level=READ_COMMITTED
        )
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            ends = consumer.end_offsets(tps)
            begins = consumer.beginning_offsets(tps)
            return int(sum(ends[tp] - begins[tp] for tp in tps))
        finally:
            consumer.close()
    except Exception:
        return None


# --------------------------------------------------------------------------- report
def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def build_report(res: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(markdown, targets)."""
    rows: list[tuple[str, str]] = []
    targets: list[dict[str, Any]] = []
    load = res.get("load") or {}
    base = res.get("baseline") or {}
    hub = res.get("hub") or {}
    h1, h2 = hub.get("1"), hub.get("2")
    if load:
        rows.append(
            (
                "load (producer, acks=all)",
                f"{load['events']} events in "
                f"{load['seconds']:.1f} s = {load['events_per_s']:.0f} events/s",
            )
        )
    if base:
        rows.append(
            (
                "baseline: aiokafka consume + Avro decode + produce",
                f"{base['events_per_s']:.0f} events/s",
            )
        )
    serial = res.get("baseline_serial") or {}
    if serial:
        rows.append(
            (
                "baseline, waiting for each output's ack before the next record",
                f"{serial['events_per_s']:.0f} events/s ({serial['events']} events)",
            )
        )
    for label, h in (("1 worker", h1), ("2 workers", h2)):
        if h:
            rows.append(
                (
                    f"hub, {label} (preloaded, from the beginning)",
                    f"{h['events_per_s']:.0f} events/s ({h['seconds_processing']:.1f} s "
                    f"after /ready; outcomes {h['outcomes']})",
                )
            )
    ratio = None
    if h1 and base:
        ratio = h1["events_per_s"] / base["events_per_s"]
        rows.append(("hub (1 worker) / baseline", f"{ratio:.1%}"))
    if h1 and serial:
        rows.append(
            (
                "hub (1 worker) / serial-ack baseline",
                f"{h1['events_per_s'] / serial['events_per_s']:.1%}",
            )
        )
    if h1 and h2:
        rows.append(("scaling 1 -> 2 workers", f"x{h2['events_per_s'] / h1['events_per_s']:.2f}"))
    lat = res.get("latency") or []
    at_2000: dict[str, Any] | None = None
    for entry in lat:
        if entry.get("skipped"):
            rows.append(
                (
                    f"latency at {entry['rate']} events/s",
                    "not sustained (a lower rate already was not; not run)",
                )
            )
            if entry["rate"] == 2000:
                at_2000 = entry
            continue
        text = (
            f"p50 {entry['p50_ms']} / p95 {entry['p95_ms']} / p99 {entry['p99_ms']} ms "
            f"(sent {entry['achieved_send_rate']:.0f}/s, backlog at end "
            f"{entry['backlog_at_end']})"
        )
        if not entry["sustained"]:
            text = "NOT sustained: " + text
        rows.append((f"latency at {entry['rate']} events/s, event -> portal.outbox", text))
        if entry["rate"] == 2000:
            at_2000 = entry
    rec = res.get("recovery") or {}
    if rec:
        rows.append(
            (
                f"RSS, {rec['dossiers']} dossiers ({rec['events']} events)",
                f"{rec['rss_before_bytes'] / 2**20:.0f} MiB -> "
                f"{rec['rss_after_bytes'] / 2**20:.0f} MiB = "
                f"{rec['rss_bytes_per_dossier']:.0f} bytes/dossier",
            )
        )
        rows.append(
            (
                "restart after kill -9, empty data dir: /ready",
                f"{rec['restart_to_ready_s']:.1f} s (group stable after "
                f"{rec['restart_to_group_stable_s']} s; changelog "
                f"{rec['changelog_records']} records)",
            )
        )
        rows.append(("restart: first dossier query answered", f"{rec['restart_to_query_s']} s"))
    replay = res.get("replay") or {}
    if replay:
        rows.append(
            ("replay (rebuild) rate = hub 1 worker", f"{replay['events_per_s']:.0f} events/s")
        )
        rows.append(
            (
                "EXTRAPOLATED: rebuild 1M dossiers / 10M events",
                f"{replay['seconds_10m_1w'] / 60:.0f} min with 1 worker"
                + (
                    f", {replay['seconds_10m_2w'] / 60:.0f} min with 2"
                    if replay.get("seconds_10m_2w")
                    else ""
                ),
            )
        )
    if rec.get("restart_extrapolated_1m_s") is not None:
        rows.append(
            (
                "EXTRAPOLATED: restart serving with 1M dossiers",
                f"{rec['restart_extrapolated_1m_s']:.0f} s",
            )
        )

    def target(name: str, value: str, ok: bool | None) -> None:
        targets.append({"target": name, "measured": value, "verdict": verdict(ok)})

    target(
        ">= 10,000 events/s per worker",
        f"{h1['events_per_s']:.0f}/s" if h1 else "-",
        None if not h1 else h1["events_per_s"] >= 10_000,
    )
    target(
        ">= 30% of baseline",
        f"{ratio:.1%}" if ratio is not None else "-",
        None if ratio is None else ratio >= 0.30,
    )
    unsustained = [e["rate"] for e in lat if not e.get("skipped") and not e["sustained"]]
    if at_2000 is None and unsustained and min(unsustained) < 2000:
        target(
            "p99 <= 100 ms at 2,000 events/s",
            f"not sustained (already not at {min(unsustained)} events/s)",
            False,
        )
    elif at_2000 is None:
        target("p99 <= 100 ms at 2,000 events/s", "not measured", None)
    elif at_2000.get("skipped") or not at_2000["sustained"]:
        target("p99 <= 100 ms at 2,000 events/s", "not sustained", False)
    else:
        target(
            "p99 <= 100 ms at 2,000 events/s",
            f"{at_2000['p99_ms']} ms",
            at_2000["p99_ms"] is not None and at_2000["p99_ms"] <= 100,
        )
    if replay:
        best = min(x for x in (replay["seconds_10m_1w"], replay.get("seconds_10m_2w")) if x)
        target("rebuild 1M dossiers <= 5 min (extrapolated)", f"{best / 60:.0f} min", best <= 300)
    else:
        target("rebuild 1M dossiers <= 5 min (extrapolated)", "-", None)
    ext = rec.get("restart_extrapolated_1m_s")
    target(
        "restart with 1M dossiers serving <= 60 s (extrapolated)",
        f"{ext:.0f} s" if ext is not None else "-",
        None if ext is None else ext <= 60,
    )
    per = rec.get("rss_bytes_per_dossier")
    target(
        "<= 1 KB RSS per dossier",
        f"{per:.0f} B" if per is not None else "-",
        None if per is None else per <= 1024,
    )

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
    lines += ["", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in targets]
    return "\n".join(lines), targets


def extrapolate(res: dict[str, Any]) -> None:
    hub = res.get("hub") or {}
    h1, h2 = hub.get("1"), hub.get("2")
    if h1:
        res["replay"] = {
            "events_per_s": h1["events_per_s"],
            "seconds_10m_1w": round(10_000_000 / h1["events_per_s"], 0),
            "seconds_10m_2w": round(10_000_000 / h2["events_per_s"], 0) if h2 else None,
            "note": "extrapolation: linear in events, measured at "
            f"{h1['events']} events; 1M dossiers taken as 10M events",
        }
    rec = res.get("recovery")
    if rec and rec.get("restart_to_query_s") is not None:
        # Restore work scales with the dossiers; the wait for the group (the killed member's
        # session expiring, a rebalance) and the process start do not.
        fixed = rec["restart_to_group_stable_s"]
        if fixed is None:  # not observed: the session timeout plus a fresh start
            fixed = min(rec["restart_to_query_s"], 30.0 + rec["fresh_start_ready_s"])
        variable = max(0.0, rec["restart_to_query_s"] - fixed)
        rec["restart_extrapolated_1m_s"] = round(fixed + variable * 1_000_000 / rec["dossiers"], 0)
        rec["restart_extrapolation_note"] = (
            "extrapolation: (query answered - group stable) scaled linearly to 1M dossiers, "
            "plus the fixed part measured here"
        )


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
    p.add_argument("--events", type=int, help="events to load (default 50000, quick 5000)")
    p.add_argument("--partitions", type=int, default=6, help="partitions of every topic (6)")
    p.add_argument(
        "--dossiers",
        type=int,
        help="dossiers in state for recovery/memory (default 5000, quick 1000)",
    )
    p.add_argument(
        "--rates", help="offered loads, events/s (default 100,200,500,1000,2000; quick 100,500)"
    )
    p.add_argument(
        "--rate-seconds", type=float, help="seconds per offered load (default 20, quick 5)"
    )
    p.add_argument(
        "--serial-events",
        type=int,
        default=5000,
        help="events for the serial-ack baseline (5000)",
    )
    p.add_argument("--workers", default="1,2", help="hub worker counts to run (1,2)")
    p.add_argument(
        "--profile-worker",
        action="store_true",
        help="run each hub worker under pyinstrument (pip install pyinstrument); reports in "
        "bench/results/profile-*.txt",
    )
    p.add_argument(
        "--skip", default="", help="comma list of steps to skip: baseline,hub,latency,recovery"
    )
    args = p.parse_args(argv)
    if args.events is None:
        args.events = 5_000 if args.quick else 50_000
    if args.dossiers is None:
        args.dossiers = 1_000 if args.quick else 5_000
    if args.rates is None:
        args.rates = "100,500" if args.quick else "100,200,500,1000,2000"
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
            "hub_store": "rocksdb (default)",
            "hub_log_level": "warn",
            "hub_session_timeout_s": 30,
            "hub_clock_interval_s": 60,
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
        say(f"step 1/6 load: encoding {args.events} simulator events")
        prefix, _ = bench.fresh_names("load")
        registry = SchemaRegistryClient(bench.registry_url)
        t = time.monotonic()
        events = preencode(args.events, dossier_serializer(registry, prefix), progress=say)
        registry.close()
        dossiers = len({e.key for e in events})
        say(f"  {len(events)} events of {dossiers} dossiers encoded in {time.monotonic() - t:.1f}s")
        seconds = load_copy(bench, prefix, events)
        res["load"] = {
            "events": len(events),
            "dossiers": dossiers,
            "seconds": round(seconds, 2),
            "events_per_s": round(len(events) / seconds, 1),
        }
        say(f"  loaded into {prefix}dossier.events: {len(events) / seconds:.0f} events/s")

        # 2. baseline
        if "baseline" not in skip:
            say("step 2/6 baseline: aiokafka consume + Avro decode + produce")
            out_topic = f"{prefix}bench.baseline.out"
            create_topics(bench.bootstrap, [out_topic], args.partitions)
            try:
                res["baseline"] = asyncio.run(
                    baseline_loop(
                        bench.bootstrap,
                        bench.registry_url,
                        f"{prefix}dossier.events",
                        out_topic,
                        len(events),
                        args.partitions,
                    )
                )
                say(f"  baseline: {res['baseline']['events_per_s']:.0f} events/s")
                serial_n = min(len(events), args.serial_events)
                say(f"  the same, waiting for each output's ack (first {serial_n} events)")
                res["baseline_serial"] = asyncio.run(
                    baseline_loop(
                        bench.bootstrap,
                        bench.registry_url,
                        f"{prefix}dossier.events",
                        out_topic,
                        serial_n,
                        args.partitions,
                        serial=True,
                    )
                )
                note_load(res, "baseline")
                say(f"  serial-ack baseline: {res['baseline_serial']['events_per_s']:.0f} events/s")
            except Exception as exc:
                res["errors"]["baseline"] = str(exc)
                say(f"  baseline failed: {exc}")

        # 3. hub
        res["hub"] = {}
        if "hub" not in skip:
            for count in [int(w) for w in args.workers.split(",")]:
                say(f"step 3/6 hub: {count} worker(s) over {len(events)} preloaded events")
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
        del events

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
            say(f"step 5/6 recovery and memory: {args.dossiers} dossiers")
            try:
                res["recovery"] = recovery_phase(bench, args.dossiers)
                note_load(res, "recovery")
                r = res["recovery"]
                say(
                    f"  {r['rss_bytes_per_dossier']:.0f} bytes RSS/dossier; restart: ready "
                    f"{r['restart_to_ready_s']}s, query {r['restart_to_query_s']}s"
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
