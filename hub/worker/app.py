"""The faust application: topics, the dossiers table, the agent, the clock, the HTTP views.

Run with ``hub worker`` (or ``python -m hub.worker.app worker``). Configuration comes from
``HubSettings`` (environment variables); see README.

Guarantee: effectively-once. The agent runs with concurrency 1 (faust-streaming#606: with
more, offsets can be committed past events still in flight) and at-least-once delivery
(not faust's exactly_once mode, given faust-streaming#517/#323). It takes the records in
batches (``HUB_BATCH_MAX``, ``HUB_BATCH_WAIT_MS``); for each batch it writes every record's
outputs in order, waits until Kafka acknowledged them all, and only then stores the new
states and acknowledges the records; a state remembers every applied event id. A crash before
the states are stored replays the batch and re-sends outputs with the same deterministic ids;
a crash after it finds the event ids in the states and sends nothing. Records fetched before a
rebalance are neither stored nor acknowledged (``hub.worker.transport``), and when a rebalance
ends every input partition is sought to where its stored state says (``hub.worker.order``).
So no acknowledged input is lost, the view and the figures count each event once, and
downstream consumers drop repeated output ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date
from typing import Any

from aiohttp.web import Response as AioResponse
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from hub.audit.trail import AuditTrail, audit_topic  # [audit]
from hub.contract.errors import RegistryUnavailableError
from hub.contract.registry import SchemaRegistryClient
from hub.contract.schemas import SchemaKind, load_schema
from hub.contract.serde import AvroDeserializer, AvroSerializer
from hub.dlq.publisher import count_dead_letter, dead_letter_record
from hub.domain.deadlines import effective_deadline
from hub.domain.events import local_date
from hub.domain.lifecycle import DossierState
from hub.reference import load_reference
from hub.security.client import faust_credentials
from hub.settings import HubSettings
from hub.worker import metrics
from hub.worker.figures import LocalView
from hub.worker.lag import LagSampler, refresh
from hub.worker.order import (
    PartitionOrder,
    Verdict,
    is_internal_key,
    next_offset_key,
    start_offset,
)
from hub.worker.processor import Effects, Processor, Topics, decode_state, encode_state, utc_now
from hub.worker.topics import TopicCreator, hub_topics
from hub.worker.transport import HubApp, HubConsumer, acting_for, reading_partition

log = logging.getLogger("hub.worker")

settings = HubSettings()
reference = load_reference()
registry = SchemaRegistryClient(settings.schema_registry_url)
topics = Topics(settings.topic_prefix)


def _serializer_for(kind: SchemaKind) -> Any:
    schema = load_schema(kind)
    return lambda topic: AvroSerializer(registry, f"{topic}-value", schema)


processor = Processor(
    settings,
    reference,
    AvroDeserializer(registry),
    {
        SchemaKind.DOSSIER_STATUS: _serializer_for(SchemaKind.DOSSIER_STATUS),
        SchemaKind.DOSSIER_ALERT: _serializer_for(SchemaKind.DOSSIER_ALERT),
    },
)
view = LocalView(reference.calendar, settings.late_if_repeated_supplement)
metrics.FIGURES.watch(view)  # hub_dossiers and the ratios, computed at each scrape
topic_creator = TopicCreator(
    settings.kafka_bootstrap_servers, settings.partitions, settings.replication_factor
)
# [audit] one hash-chained entry per applied event (hub/audit/trail.py)
audit = AuditTrail(
    settings.kafka_bootstrap_servers, audit_topic(settings.topic_prefix), topic_creator.ensure
)

app = HubApp(
    settings.app_id,
    broker=f"kafka://{settings.kafka_bootstrap_servers}",
    broker_credentials=faust_credentials(),  # None (plain) unless HUB_KAFKA_SECURITY_PROTOCOL
    store="rocksdb://" if settings.store == "rocksdb" else "memory://",
    datadir=str(settings.data_dir),
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    table_standby_replicas=settings.standby_replicas,
    processing_guarantee="at_least_once",
    consumer_auto_offset_reset="earliest",
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_bind=settings.web_host,
    canonical_url=f"http://{settings.web_host}:{settings.web_port}",
    stream_wait_empty=False,
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
)
# faust's own sensor metrics (hub_faust_*) in the default registry, served by our /metrics
# (not setup_prometheus_sensors: it would add a second /metrics page)
app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(REGISTRY, "hub_faust"))

inputs = app.topic(
    topics.dossier_events,
    topics.feedback_events,
    topics.clock,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
)
dossiers = app.Table(
    "dossiers",
    default=None,
    key_type=bytes,
    value_type=bytes,
    partitions=settings.partitions,
    options={  # RocksDB memory bounds per partition (ignored by the memory store)
        "write_buffer_size": settings.rocksdb_write_buffer_mb * 1024 * 1024,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_block_cache_mb * 1024 * 1024,
    },
)


order = PartitionOrder()  # each input partition's records once, in order (hub/worker/order.py)
INPUT_TOPICS = frozenset({topics.dossier_events, topics.feedback_events, topics.clock})
batch_started: float | None = None  # monotonic time the batch under way began, if any


@app.agent(inputs, concurrency=1)
async def process(stream: Any) -> None:
    # A batch, not a record at a time: one wait for Kafka's acknowledgements per batch instead
    # of one round trip per record, which was the hub's largest cost (bench/RESULTS.md).
    async for events in stream.noack_take(settings.batch_max, within=settings.batch_wait_ms / 1e3):
        for event in await apply_batch(events):
            await stream.ack(event)  # after the states are stored; stale ones are refused


async def apply_batch(events: list[Any]) -> list[Any]:
    """Decide every record in order against the batch's own states, send all outputs, wait
    once until Kafka acknowledged them all, and only then store the new states together with
    each input partition's next offset. Returns the records that may be acknowledged.

    The guarantee is the per-record one, batched: nothing is stored or acknowledged before its
    outputs are, and a batch replayed after a crash re-sends byte-identical outputs with the
    same ids (the states remember every applied event id)."""
    global batch_started
    batch_started = time.monotonic()
    try:
        batch = Batch()
        assigned = app.consumer.assignment()
        for event in events:
            if event.message.tp not in assigned:
                # no longer ours (faust may deliver such records): its owner reads it
                metrics.RECORDS_SET_ASIDE.labels("not_assigned").inc()
            elif not consumer().settled:
                # tables may be recovering: the rebalance's end seeks the partition again
                metrics.RECORDS_SET_ASIDE.labels("rebalancing").inc()
            elif consumer().is_stale(event.message):
                metrics.RECORDS_SET_ASIDE.labels("fetched_before_rebalance").inc()
                await batch.drop(event)  # fetched before a rebalance: fetched again after it
            else:
                await batch.take(event)
        for future in batch.pending:
            await future  # acknowledged before the states move on: nothing is lost on a crash
        batch.store()
        batch.count()
        return batch.done
    finally:
        batch_started = None


class Batch:
    """The records of one batch, their effects, and the states and next offsets as they go."""

    def __init__(self) -> None:
        self.states: dict[bytes, DossierState | None] = {}  # dossier key -> state so far
        self.stored: dict[bytes, DossierState | None] = {}  # ... as the table had it
        self.last_event: dict[bytes, Any] = {}  # ... the event whose state is to be stored
        self.next_offsets: dict[tuple[str, int], int | None] = {}  # input partition -> next
        self.next_event: dict[tuple[str, int], Any] = {}  # ... the last record applied
        self.decided: list[tuple[Any, Effects]] = []
        self.pending: list[Any] = []  # futures of every send, acknowledged together
        self.done: list[Any] = []  # records applied or applied before: to acknowledge

    def state_of(self, event: Any, key: bytes) -> DossierState | None:
        if key not in self.states:
            with acting_for(event):  # the table reads the event's partition
                self.states[key] = self.stored[key] = decode_state(dossiers.get(key))
        return self.states[key]

    async def next_offset_of(self, event: Any) -> int | None:
        """The partition's stored next offset; for a partition nothing was applied from yet,
        the first offset the broker has: faust commits a run of acknowledged records even if
        records before it (from an uncommitted start) were never processed."""
        message = event.message
        tp = (message.topic, message.partition)
        if tp not in self.next_offsets:
            stored = _stored_next(message.tp)
            self.next_offsets[tp] = stored if stored is not None else await _log_start(message.tp)
        return self.next_offsets[tp]

    async def drop(self, event: Any) -> None:
        message = event.message
        wanted = await self.next_offset_of(event)
        if wanted is not None and message.offset >= wanted:
            order.expect(message.topic, message.partition, wanted, time.monotonic())

    async def take(self, event: Any) -> None:
        message = event.message
        tp = (message.topic, message.partition)
        wanted = await self.next_offset_of(event)
        verdict = order.judge(*tp, message.offset, wanted, time.monotonic())
        if verdict is Verdict.SEEK:
            assert wanted is not None
            gap = order.gap(*tp, wanted, await _log_start(message.tp))
            if gap is None:
                log.warning(
                    "%s[%s]: the consumer is at %s but the state needs %s next: seeking back",
                    message.topic, message.partition, message.offset, wanted,
                )  # fmt: skip
                await _seek_back(message.tp, wanted, "gap")
                metrics.RECORDS_SET_ASIDE.labels("after_gap").inc()
                return
            log.warning(
                "%s[%s]: offsets %s to %s were deleted (retention) before they were applied",
                gap.topic, gap.partition, gap.first, gap.last,
            )  # fmt: skip
            self.next_offsets[tp] = wanted = gap.last + 1
            verdict = order.judge(*tp, message.offset, wanted, time.monotonic())
            if verdict is Verdict.SEEK:  # still ahead of the log's start
                await _seek_back(message.tp, wanted, "gap")
                metrics.RECORDS_SET_ASIDE.labels("after_gap").inc()
                return
        if verdict is Verdict.HOLD:
            metrics.RECORDS_SET_ASIDE.labels("after_gap").inc()
            return
        self.done.append(event)
        if verdict is Verdict.DONE:
            return
        await self.decide(event)
        self.next_offsets[tp] = message.offset + 1
        self.next_event[tp] = event

    async def decide(self, event: Any) -> None:
        message = event.message
        key: bytes | None = message.key
        if is_internal_key(key):
            key = None  # not a dossier code: dead-lettered by the processor's key rule
        before = self.state_of(event, key) if key is not None else None
        effects = await _effects_of(message, key, before)
        await self._send(message, key, effects)
        if effects.state is not None and key is not None:
            self.states[key] = effects.state
            self.last_event[key] = event
        self.decided.append((message, effects))

    async def _send(self, message: Any, key: bytes | None, effects: Effects) -> None:
        inboxes = [o.topic for o in effects.outputs if o.topic not in topic_creator.known]
        if inboxes:
            topic_creator.ensure(inboxes)  # once per agency inbox; blocking but rare
        for out in effects.outputs:
            self.pending.append(
                await app.producer.send(
                    out.topic, out.key, out.value, partition=None, timestamp=None,
                    headers=out.headers,
                )
            )  # fmt: skip
        letter = effects.dead_letter
        if letter is not None:
            dead = dead_letter_record(letter, key, message.value, list(message.headers or []))
            self.pending.append(
                await app.producer.send(
                    dead.topic, dead.key, dead.value, partition=None, timestamp=None,
                    headers=dead.headers,
                )
            )  # fmt: skip
            log.warning(
                "dead letter: %s from %s[%s]@%s (%s)",
                letter.reason, message.topic, message.partition, message.offset, letter.detail,
            )  # fmt: skip
        if effects.outcome == "applied" and effects.state is not None and key is not None:
            self.pending.extend(await _send_audit_entry(message, key, effects))  # [audit]

    def store(self) -> None:
        """One table write per dossier (its state after the batch's last record for it), then
        each input partition's next offset, in the same changelog partitions: a crash between
        the two replays records whose ids the states already hold."""
        assigned = app.consumer.assignment()
        for key, event in self.last_event.items():
            state = self.states[key]
            if state is None or not _current(event.message, assigned):
                continue  # revoked while waiting: another worker stores it, from Kafka
            with acting_for(event):  # the changelog partition is the record's partition
                dossiers[key] = encode_state(state)
            view.replace(self.stored[key], state)
        for tp, event in self.next_event.items():
            if not _current(event.message, assigned):
                continue
            with acting_for(event):
                dossiers[next_offset_key(*tp)] = str(self.next_offsets[tp]).encode()

    def count(self) -> None:
        for message, effects in self.decided:
            if effects.dead_letter is not None:
                count_dead_letter(effects.dead_letter)
            event_type = effects.event_type or (
                "DeadlineTick" if message.topic == topics.clock else "unknown"
            )
            metrics.EVENTS_IN.labels(message.topic, event_type, effects.outcome).inc()
            for out in effects.outputs:
                metrics.EVENTS_OUT.labels(_kind(out.topic), _output_type(out.topic)).inc()
            if effects.lag_s is not None:
                metrics.EVENT_LATENCY.observe(max(0.0, effects.lag_s))


def _current(message: Any, assigned: set[Any]) -> bool:
    """The record's partition is still this worker's and it was fetched since the last
    rebalance: its effects may be stored."""
    return message.tp in assigned and consumer().settled and not consumer().is_stale(message)


def _stored_next(tp: Any) -> int | None:
    """The next offset the state of ``tp``'s partition holds for it (None: nothing applied)."""
    with reading_partition(tp.partition):
        raw = dossiers.get(next_offset_key(tp.topic, tp.partition))
    return int(raw) if raw is not None else None


async def place_partitions(committed: Any) -> dict[Any, int]:
    """At the end of every rebalance: where each assigned input partition must be read from
    (``hub.worker.order.start_offset``, else its committed offset). All are sought there,
    also those faust just seeked: records fetched until then are given up."""
    stored: dict[Any, int | None] = {}
    for tp in committed:
        if tp.topic not in INPUT_TOPICS:
            continue
        try:
            stored[tp] = _stored_next(tp)
        except Exception as exc:  # the watchdog (keep_partitions_moving) tries again later
            log.warning("%s[%s]: not placed after the rebalance: %s", tp.topic, tp.partition, exc)
    # one request for every partition that needs its log's start, not one each
    unknown = [
        tp for tp, next_offset in stored.items() if next_offset is None and committed[tp] is None
    ]
    starts = await _log_starts(unknown) if unknown else {}
    targets: dict[Any, int] = {}
    for tp, next_offset in stored.items():
        offset = committed[tp]
        target = start_offset(next_offset, offset, starts.get(tp))
        if target is None:
            target = offset
        elif target != offset:
            metrics.PARTITION_SEEKS.labels("placed").inc()
            log.info("%s[%s]: placed at %s (committed: %s)", tp.topic, tp.partition, target, offset)
        if target is not None:
            targets[tp] = target
    return targets


app.place_partitions = place_partitions


async def _seek_back(tp: Any, offset: int, reason: str) -> None:
    """Seek ``tp`` to ``offset`` if it is still assigned here: a rebalance may have started
    meanwhile, and then its own seek follows (and the order's seeks are forgotten)."""
    if tp not in app.consumer.assignment():
        return
    metrics.PARTITION_SEEKS.labels(reason).inc()
    try:
        await app.consumer.seek(tp, offset)
    except Exception as exc:  # revoked between the check and the seek
        log.warning("seek of %s to %s not done: %s", tp, offset, exc)


async def _log_start(tp: Any) -> int | None:
    """The first offset the broker still has for ``tp`` (None if it cannot tell)."""
    return (await _log_starts([tp])).get(tp)


async def _log_starts(tps: list[Any]) -> dict[Any, int]:
    """The first offset the broker still has for each of ``tps``, in one request; those it
    cannot tell are left out."""
    try:
        found = await asyncio.wait_for(app.consumer.earliest_offsets(*tps), timeout=15)
    except Exception as exc:  # a broker hiccup: keep seeking rather than guess
        log.warning("log start of %s unknown: %r", ", ".join(map(str, tps)), exc)
        return {}
    return {tp: offset for tp, offset in found.items() if offset is not None}


async def _effects_of(message: Any, key: bytes | None, before: DossierState | None) -> Effects:
    now = utc_now()
    while True:
        try:
            if message.topic == topics.clock:
                return processor.tick(before, now)
            return processor.handle(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=key,
                value=message.value,
                headers=list(message.headers or []),
                state=before,
                now=now,
            )
        except RegistryUnavailableError as exc:
            # Not the record's fault: hold this partition (back-pressure) and retry,
            # rather than dead-letter good records while the registry is down.
            log.warning("%s; retrying in %.0fs", exc, settings.registry_retry_s)
            await asyncio.sleep(settings.registry_retry_s)


# --- [audit] begin: the audit entry, sent and acknowledged with the outputs -------------------
async def _send_audit_entry(message: Any, key: bytes, effects: Effects) -> list[Any]:
    record = await audit.record_for(
        topic=message.topic, partition=message.partition, offset=message.offset,
        event_id=effects.event_id or "", event_type=effects.event_type,
        dossier_code=key.decode(), record=message.value or b"",
    )  # fmt: skip
    if record is None:
        return []  # chained before a crash
    return [
        await app.producer.send(
            record.topic, record.key, record.value, partition=record.partition, timestamp=None,
            headers=None,
        )
    ]  # fmt: skip


@app.on_partitions_revoked.connect
def _forget_audit_heads(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    audit.forget()  # another worker may extend these chains; read the heads back on next use
    order.forget()  # the seeks it asked for are void: faust seeks every partition now


# --- [audit] end ---------------------------------------------------------------------------


def consumer() -> HubConsumer:
    return app.consumer  # type: ignore[return-value]  # HubApp's transport makes HubConsumers


def _output_type(topic: str) -> str:
    return "DossierAlert" if topic == topics.alerts else "DossierStatusChanged"


def _kind(topic: str) -> str:
    for kind in ("dossier.status", "portal.outbox", "dossier.alerts", "agency.inbox"):
        if kind in topic:
            return kind
    return "other"


@dossiers.on_recover
async def rebuild_view() -> None:
    count = view.rebuild(
        state
        for key, raw in dossiers.items()
        if not is_internal_key(key) and (state := decode_state(raw)) is not None
    )
    log.info("local view rebuilt from %d dossiers", count)
    consumer().tables_recovered()  # faust's seek that ends the rebalance comes next


@app.timer(interval=settings.clock_interval_s)  # type: ignore[untyped-decorator]
async def deadline_clock() -> None:
    """Ticks open dossiers whose deadline is near, so alerts fire without new events.

    Ticks go through Kafka (``hub.clock``, keyed by dossier code) rather than straight into
    the table: only a stream event may change a table key, and the tick then shares the
    dossier's partition, order and exactly-once bookkeeping."""
    today = local_date(utc_now())
    sent = 0
    for code, (_agency, appointment) in list(view.open_deadlines.items()):
        if reference.calendar.working_days_between(today, date.fromisoformat(appointment)) <= (
            settings.due_soon_working_days
        ):
            await app.producer.send(
                topics.clock, code.encode(), b"tick", partition=None, timestamp=None, headers=None
            )
            sent += 1
    if sent:
        log.info("deadline clock: ticked %d dossiers", sent)


@app.timer(interval=1.0)  # type: ignore[untyped-decorator]
async def keep_partitions_moving() -> None:
    """A seek back whose record has not come within a second is asked again, also when no
    other record of the partition arrives to trigger it; and a partition that made no
    progress for a while although its consumer is past its next offset (records fetched and
    never applied) is sought back too (hub/worker/order.py)."""
    now = time.monotonic()
    assigned = app.consumer.assignment()
    for topic, partition, wanted in order.overdue(now):
        tp = TP(topic, partition)
        if tp in assigned:
            log.warning("%s[%s]: still waiting for offset %s: seeking back", *tp, wanted)
            await _seek_back(tp, wanted, "overdue")
        else:
            order.drop(topic, partition)
    await _revive_recovery(now)
    busy = batch_started is not None and now - batch_started >= order.quiet_after_s
    if busy or not consumer().settled:
        return  # a batch stuck (e.g. waiting for the registry) or a rebalance: nothing to judge
    inputs = [(tp.topic, tp.partition) for tp in assigned if tp.topic in INPUT_TOPICS]
    for topic, partition in order.quiet(inputs, now):
        tp = TP(topic, partition)
        try:
            next_offset = _stored_next(tp)
            if next_offset is None:
                next_offset = await _log_start(tp)
            position = await asyncio.wait_for(app.consumer.position(tp), timeout=5)
        except Exception as exc:  # e.g. revoked meanwhile: the rebalance places it
            log.info("%s[%s]: position not checked: %r", topic, partition, exc)
            continue
        if next_offset is not None and position is not None and position > next_offset:
            log.warning(
                "%s[%s]: read up to %s but applied only up to %s, and nothing moved for %.0fs: "
                "seeking back", topic, partition, position, next_offset, order.quiet_after_s,
            )  # fmt: skip
            await _seek_back(tp, next_offset, "stalled")
            order.expect(topic, partition, next_offset, now)


#: a changelog partition of a table under recovery that got no record for this long is read
#: again from where recovery stands (see _revive_recovery)
RECOVERY_STALL_S = 15.0


async def _revive_recovery(now: float) -> None:
    """A workaround for faust 0.15: the table recovery can wait for ever for a changelog
    partition whose records the consumer has already passed (seen twice in ~30 storm runs:
    "No event received for active tp ... since recovery start", the worker never ready).
    The records were fetched and dropped on the way, as faust does with input records
    (hub/worker/order.py); recovery does not ask again. So a changelog partition that got
    nothing for RECOVERY_STALL_S while records remain, and whose consumer is past where
    recovery stands, is sought back there (re-reading a changelog is harmless: each record
    sets a key to a value). This reads faust's Recovery internals; a faust upgrade must check
    them (tests/integration/test_faults.py, the storm)."""
    recovery: Any = getattr(app.tables, "recovery", None)
    if recovery is None:
        return
    started = getattr(recovery, "_recovery_started_at", None)
    received = getattr(recovery, "_active_events_received_at", None)
    if not recovery.in_recovery or started is None or received is None:
        return
    for tp, remaining in list(recovery.active_remaining().items()):
        last = received.get(tp, started)
        if remaining <= 0 or now - last < RECOVERY_STALL_S:
            continue
        received[tp] = now  # one try per period
        target = max(int(recovery.active_offsets[tp]) + 1, 0)
        try:
            position = await asyncio.wait_for(app.consumer.position(tp), timeout=5)
            if position is not None and position > target:
                log.warning(
                    "%s[%s]: table recovery got nothing for %.0fs, %d records left, though "
                    "the consumer is at %s: reading again from %s",
                    tp.topic, tp.partition, now - last, remaining, position, target,
                )  # fmt: skip
                await app.consumer.seek_wait({tp: target})
            else:
                log.warning(
                    "%s[%s]: table recovery got nothing for %.0fs, %d records left; the "
                    "consumer is at %s (active: %s)",
                    tp.topic, tp.partition, now - last, remaining, position,
                    tp in getattr(app.consumer, "_active_partitions", ()),
                )  # fmt: skip
        except Exception as exc:  # a rebalance again: its recovery starts afresh
            log.info("%s[%s]: recovery not revived: %r", tp.topic, tp.partition, exc)


lag_sampler = LagSampler(
    settings.kafka_bootstrap_servers,
    settings.app_id,
    [topics.dossier_events, topics.feedback_events],
)


@app.timer(interval=15.0)  # type: ignore[untyped-decorator]
async def sample_consumer_lag() -> None:
    """hub_consumer_lag_messages{topic} (hub/worker/lag.py), sampled in a thread."""
    await refresh(lag_sampler)


def _mask(name: str | None) -> str | None:
    if name is None or settings.show_personal_data:
        return name
    return " ".join(part[0] + "*" * (len(part) - 1) for part in name.split())


def _dossier_json(state: Any) -> dict[str, Any]:
    data: dict[str, Any] = state.to_dict()
    data["applicant_name"] = _mask(state.applicant_name)
    data["portal_status_code"] = reference.portal_codes[state.status]
    deadline = effective_deadline(state, reference.calendar)
    data["effective_deadline"] = deadline.isoformat() if deadline else None
    data.pop("alerts_emitted", None)
    return data


def read_state(key: bytes) -> DossierState | None:
    """A dossier's state from the store of its partition (as faust's router finds it)."""
    tp = app.producer.key_partition(dossiers.changelog_topic.get_topic_name(), key)
    with reading_partition(tp.partition):
        return decode_state(dossiers.get(key))


@app.page("/dossiers/{code}")
@app.table_route(table=dossiers, match_info="code")
async def get_dossier(web: Any, request: Any, code: str) -> Any:
    key = code.encode()
    state = None if is_internal_key(key) else read_state(key)
    if state is None:
        return web.json({"error": f"no dossier {code}"}, status=404)
    return web.json(_dossier_json(state))


@app.page("/overdue")
async def overdue(web: Any, request: Any) -> Any:
    """Open dossiers past their appointment date held by this worker (filter: agency)."""
    agency = request.query.get("agency")
    page = max(1, int(request.query.get("page", "1")))
    size = min(500, max(1, int(request.query.get("size", "50"))))
    today = local_date(utc_now()).isoformat()
    rows = sorted(
        (deadline, code, holder)
        for code, (holder, deadline) in view.open_deadlines.items()
        if deadline < today and (agency is None or holder == agency)
    )
    chunk = rows[(page - 1) * size : page * size]
    return web.json(
        {
            "total": len(rows),
            "page": page,
            "size": size,
            "items": [{"dossier_code": c, "agency_code": a, "deadline": d} for d, c, a in chunk],
        }
    )


@app.page("/agencies/{code}/summary")
async def agency_summary(web: Any, request: Any, code: str) -> Any:
    from hub.domain.supervision import Figures

    total = Figures()
    for key, figures in view.figures.items():
        if key.agency_code == code:
            total = total + figures
    return web.json(
        {
            "agency_code": code,
            "counts": total.to_dict(),
            "on_time_rate": total.on_time_rate,
            "online_share": total.online_share,
            "satisfaction": total.satisfaction,
        }
    )


@app.page("/health")
async def health(web: Any, request: Any) -> Any:
    return web.json({"status": "ok"})


@app.page("/ready")
async def ready(web: Any, request: Any) -> Any:
    is_ready = bool(not app.rebalancing and app.tables.recovery.completed.is_set())  # type: ignore[attr-defined]
    return web.json({"ready": is_ready}, status=200 if is_ready else 503)


@app.page("/metrics")
async def prometheus_metrics(web: Any, request: Any) -> Any:
    return AioResponse(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def main() -> None:
    topic_creator.ensure(hub_topics(topics))
    app.main()


if __name__ == "__main__":
    main()
