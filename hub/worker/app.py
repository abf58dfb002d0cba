"""The faust application: topics, the dossiers table, the agent, the clock, the HTTP views.

Run with ``hub worker`` (or ``python -m hub.worker.app worker``). Configuration comes from
``HubSettings`` (environment variables); see README.

Guarantee: effectively-once. The agent runs with concurrency 1 (faust-streaming#606: with
more, offsets can be committed past events still in flight) and at-least-once delivery
(not faust's exactly_once mode, given faust-streaming#517/#323). For each record it writes the
outputs, waits until Kafka acknowledged them, and only then stores the new state; the state
remembers every applied event id. A crash before the state is stored replays the record and
re-sends outputs with the same deterministic ids; a crash after it finds the event id in the
state and sends nothing. So no acknowledged input is lost, the view and the figures count each
event once, and downstream consumers drop repeated output ids.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date
from typing import Any

import faust
from aiohttp.web import Response as AioResponse
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from hub.audit.trail import AuditTrail, audit_topic  # [audit]
from hub.contract.errors import RegistryUnavailableError
from hub.contract.registry import SchemaRegistryClient
from hub.contract.schemas import SchemaKind, load_schema
from hub.contract.serde import AvroDeserializer, AvroSerializer
from hub.dlq.publisher import count_dead_letter, dead_letter_record
from hub.domain.deadlines import effective_deadline
from hub.domain.events import local_date
from hub.reference import load_reference
from hub.security.client import faust_credentials
from hub.settings import HubSettings
from hub.worker import metrics
from hub.worker.figures import LocalView
from hub.worker.lag import LagSampler, refresh
from hub.worker.processor import Effects, Processor, Topics, decode_state, encode_state, utc_now
from hub.worker.topics import TopicCreator, hub_topics

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

app = faust.App(
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
)


@app.agent(inputs, concurrency=1)
async def process(stream: Any) -> None:
    async for event in stream.events():
        message = event.message
        key: bytes | None = message.key
        raw_state = dossiers.get(key) if key is not None else None
        before = decode_state(raw_state)
        now = utc_now()
        while True:
            try:
                if message.topic == topics.clock:
                    effects = processor.tick(before, now)
                else:
                    effects = processor.handle(
                        topic=message.topic,
                        partition=message.partition,
                        offset=message.offset,
                        key=key,
                        value=message.value,
                        headers=list(message.headers or []),
                        state=before,
                        now=now,
                    )
                break
            except RegistryUnavailableError as exc:
                # Not the record's fault: hold this partition (back-pressure) and retry,
                # rather than dead-letter good records while the registry is down.
                log.warning("%s; retrying in %.0fs", exc, settings.registry_retry_s)
                await asyncio.sleep(settings.registry_retry_s)
        pending = []
        inboxes = [o.topic for o in effects.outputs if o.topic not in topic_creator.known]
        if inboxes:
            topic_creator.ensure(inboxes)  # once per agency inbox; blocking but rare
        for out in effects.outputs:
            pending.append(
                await app.producer.send(
                    out.topic, out.key, out.value, partition=None, timestamp=None,
                    headers=out.headers,
                )
            )  # fmt: skip
        letter = effects.dead_letter
        if letter is not None:
            dead = dead_letter_record(letter, key, message.value, list(message.headers or []))
            pending.append(
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
            pending.extend(await _send_audit_entry(message, key, effects))  # [audit]
        for future in pending:
            await future  # acknowledged before the state moves on: nothing is lost on a crash
        if letter is not None:
            count_dead_letter(letter)
        if effects.state is not None and key is not None:
            dossiers[key] = encode_state(effects.state)
            view.replace(before, effects.state)
        event_type = effects.event_type or (
            "DeadlineTick" if message.topic == topics.clock else "unknown"
        )
        metrics.EVENTS_IN.labels(message.topic, event_type, effects.outcome).inc()
        for out in effects.outputs:
            metrics.EVENTS_OUT.labels(_kind(out.topic), _output_type(out.topic)).inc()
        if effects.lag_s is not None:
            metrics.EVENT_LATENCY.observe(max(0.0, effects.lag_s))


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


# --- [audit] end ---------------------------------------------------------------------------


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
        state for raw in dossiers.values() if (state := decode_state(raw)) is not None
    )
    log.info("local view rebuilt from %d dossiers", count)


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


@app.page("/dossiers/{code}")
@app.table_route(table=dossiers, match_info="code")
async def get_dossier(web: Any, request: Any, code: str) -> Any:
    state = decode_state(dossiers.get(code.encode()))
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
