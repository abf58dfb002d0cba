"""Throughput of the JSON bridge: N valid JSON events through ``hub connector run``'s runtime.

    python -m bench.bridge [--events N] [--runs K] [--partitions P] [--bootstrap B --registry-url R]

Without ``--bootstrap`` it starts its own local stack (Kafka + Apicurio on free ports, as
``bench.run`` does) and stops it at the end. Each run creates fresh topics under a fresh
prefix, writes N valid JSON dossier events (keyed by dossier code) to
``<prefix>dossier.events.json``, starts ``ConnectorRuntime`` with the ``json-bridge``
connector and times it from the first Avro record on ``<prefix>dossier.events`` to the N-th:
group join and registry lookups are start-up, not throughput. It prints a markdown table.

The figure is bounded by the SDK sink contract: ``put`` returns only once Kafka acknowledged
its one record, so each record costs a produce round trip. Measured on the 2-core dev machine,
one local stack for all runs (issue #15, 2026-12-06):

=====================================================  ===============
path                                                   records/s
=====================================================  ===============
standalone ``JsonBridge`` (retired; 500 per ack)       5456 - 7001
SDK connector, ``put`` waiting out the 5 ms linger     143 - 154
SDK connector, ``put`` flushing its record (now)       679 - 833
=====================================================  ===============
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from connectors.scenarios import VN, dossier_code, dossier_life
from hub.consumers import committed_consumer
from hub.contract.inbound import InboundDossierEvent, validate_dossier_event
from hub.topic_admin import TopicCreator

__all__ = ["main"]

AGENCY = "000.00.03.H40"  # Sở Tư pháp
PROCEDURE = "2.000488"  # in force since 2010: every generated event validates


@dataclass(frozen=True)
class Result:
    path: str
    events: int
    seconds: float
    startup_s: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def valid_events(n: int) -> list[tuple[bytes, bytes]]:
    """``n`` (key, JSON value) pairs of valid dossier events, a few per dossier, in order."""
    start = datetime.now(VN) - timedelta(days=2)
    out: list[tuple[bytes, bytes]] = []
    number = 0
    while len(out) < n:
        number += 1
        code = dossier_code(AGENCY, start, number)
        for event in dossier_life(code, AGENCY, PROCEDURE, start, rating=None):
            # the generated life may run past now; those would be refused as in_future
            if not isinstance(validate_dossier_event(event), InboundDossierEvent):
                continue
            out.append((code.encode(), json.dumps(event, ensure_ascii=False).encode()))
            if len(out) == n:
                break
    return out


def output_count(consumer: KafkaConsumer, topic: str) -> int:
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    return sum(consumer.end_offsets(tps).values()) if tps else 0


def time_outputs(
    bootstrap: str, topic: str, n: int, started: float, timeout_s: float
) -> tuple[float, float]:
    """(seconds from the first output to the n-th, seconds from start to the first output)."""
    consumer = committed_consumer(bootstrap, client_id="bench-bridge-counter")
    try:
        deadline = time.monotonic() + timeout_s
        first: float | None = None
        while True:
            count = output_count(consumer, topic)
            now = time.monotonic()
            if count > 0 and first is None:
                first, first_count = now, count
            if count >= n:
                assert first is not None
                # the records already there at the first look came before ``first``: scale
                # the time to the records that came after it
                span = now - first
                rest = n - first_count
                return (span * n / rest if rest else span), first - started
            if now > deadline:
                raise TimeoutError(f"{count} of {n} records on {topic} after {timeout_s:g}s")
            time.sleep(0.02)
    finally:
        consumer.close()


def prepare(
    bootstrap: str, prefix: str, partitions: int, events: list[tuple[bytes, bytes]]
) -> None:
    json_topics = [f"{prefix}dossier.events.json", f"{prefix}feedback.events.json"]
    TopicCreator(bootstrap, partitions, 1).ensure(
        [
            *json_topics,
            *(f"{t}.dlq" for t in json_topics),
            f"{prefix}dossier.events",
            f"{prefix}feedback.events",
        ]
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    try:
        for key, value in events:
            producer.send(json_topics[0], key=key, value=value)
        producer.flush(60)
    finally:
        producer.close()


def run_sdk(bootstrap: str, registry_url: str, prefix: str) -> Callable[[], None]:
    """Start ``hub connector run``'s runtime with the bridge connector on a thread."""
    from connectors.sdk import parse_config
    from connectors.sdk.runtime import ConnectorRuntime

    config = parse_config(
        {
            "name": "json-bridge",
            "connector.class": "json-bridge",
            "topics": "dossier.events.json,feedback.events.json",
            "value.converter": "bytes",
            "errors.tolerance": "all",
            "bootstrap.servers": bootstrap,
            "schema.registry.url": registry_url,
            "topic.prefix": prefix,
        },
        "bench",
    )
    runtime = ConnectorRuntime(config)
    runtime.start_thread()

    def halt() -> None:
        runtime.request_stop()
        runtime.join(60)

    return halt


def measure(
    bootstrap: str, registry_url: str, partitions: int, events: list[tuple[bytes, bytes]]
) -> Result:
    path = "sdk"
    prefix = f"bench.bridge.{path}.{uuid.uuid4().hex[:8]}."
    prepare(bootstrap, prefix, partitions, events)
    started = time.monotonic()
    halt = run_sdk(bootstrap, registry_url, prefix)
    try:
        seconds, startup = time_outputs(
            bootstrap, f"{prefix}dossier.events", len(events), started, timeout_s=600
        )
    finally:
        halt()
    return Result(path, len(events), seconds, startup)


@contextmanager
def broker(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    if args.bootstrap:
        yield args.bootstrap, args.registry_url
        return
    from hub.stack.stack import LocalStack, StackConfig
    from hub.stack.tools import free_port

    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-bridge-"))
    stack = LocalStack(
        StackConfig(
            state_dir=workdir / "stack",
            kafka_port=free_port(),
            controller_port=free_port(),
            registry_port=free_port(),
            partitions=args.partitions,
        )
    )
    try:
        stack.up(progress=lambda msg: print(f"  {msg}", flush=True))
        yield stack.bootstrap, stack.registry_url
    finally:
        stack.down()


def table(results: list[Result]) -> str:
    lines = [
        "| path | events | seconds | records/s | start-up s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.path} | {r.events} | {r.seconds:.2f} | {r.rate:.0f} | {r.startup_s:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bridge", description=__doc__)
    parser.add_argument("--events", type=int, default=5000, help="events per path")
    parser.add_argument("--partitions", type=int, default=3, help="of the JSON input topic")
    parser.add_argument("--runs", type=int, default=1, help="runs, each on fresh topics")
    parser.add_argument("--bootstrap", help="an existing broker (else a local stack)")
    parser.add_argument("--registry-url", help="its schema registry (with --bootstrap)")
    args = parser.parse_args(argv)
    if bool(args.bootstrap) != bool(args.registry_url):
        parser.error("give both --bootstrap and --registry-url, or neither")
    events = valid_events(args.events)
    results = []
    with broker(args) as (bootstrap, registry_url):
        for run in range(1, args.runs + 1):
            print(f"run {run}: {len(events)} events ...", flush=True)
            results.append(measure(bootstrap, registry_url, args.partitions, events))
            print(f"  {results[-1].rate:.0f} records/s", flush=True)
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
