"""The hub worker with the checkpoint engine: a faust application around ``hub.engine``.

Run with ``hub worker`` (``HUB_ENGINE=checkpoint``). faust runs the process: its web server
answers the HTTP API, its timers sample the consumer lag, its sensors and the Prometheus
registry feed ``/metrics``. It starts no Kafka client of its own (:class:`NoKafka`): the
records are the engine's (``hub.engine.loop``), in a thread of its own, so a blocking client
call never stalls the event loop. The engine reports every committed state change to the
event loop, which keeps the local view (figures, open deadlines) that the HTTP API and the
metrics read.

Guarantee: exactly-once from the input topics to every output topic, the changelog and the
view, for read-committed consumers (see ``hub.engine.loop``).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
import faust
from aiohttp.web import Response as AioResponse
from faust.app.base import BootStrategy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub.audit.signing import KeyFileError, load_signer
from hub.audit.tsa import HeadStamper
from hub.contract.registry import SchemaRegistryClient
from hub.contract.schemas import SchemaKind, load_schema
from hub.contract.serde import AvroDeserializer, AvroSerializer
from hub.domain.deadlines import effective_deadline
from hub.domain.events import local_date
from hub.domain.lifecycle import DossierState
from hub.engine.changelog import directory_topic
from hub.engine.directory import Directory, partition_for
from hub.engine.loop import CheckpointLoop, ViewSink, worker_id
from hub.engine.store import META_KEY
from hub.reference import ReferenceData, load_reference
from hub.settings import HubSettings
from hub.worker import metrics
from hub.worker.figures import LocalView, agency_summary
from hub.worker.lag import LagSampler, refresh
from hub.worker.processor import Processor, Topics, decode_state, utc_now
from hub.worker.province import merge_overdue, merge_summaries
from hub.worker.query import MAX_PAGE, MAX_PAGE_SIZE, BadParameterError, overdue_query
from hub.worker.topics import TopicCreator, hub_topics

__all__ = ["build", "main"]

log = logging.getLogger("hub.worker")

#: set on a request a worker forwards to the partition's owner: the owner answers itself
FORWARDED = "X-Hub-Forwarded"


OUTPUT_KINDS = (SchemaKind.DOSSIER_STATUS, SchemaKind.DOSSIER_ALERT)


class NoKafka(BootStrategy):
    """faust without its own consumer, producer, tables or agents: the engine has them."""

    enable_kafka = False


class WorkerApp(faust.App):
    BootStrategy = NoKafka


class PostToLoop(ViewSink):
    """The engine's view updates, run on the event loop that serves the view. A rebuild
    (after a rebalance) fills a fresh view in the engine's thread, from states decoded one
    at a time, and the event loop swaps it in: the HTTP API never waits for it, and no list
    of decoded states is ever held."""

    def __init__(self, new_view: Callable[[], LocalView]) -> None:
        self.new_view = new_view
        self.view = new_view()
        metrics.FIGURES.watch(self.view)
        self.loop: asyncio.AbstractEventLoop | None = None

    def rebuild(self, states: Iterable[DossierState]) -> int:
        fresh = self.new_view()
        count = fresh.rebuild(states)

        def install() -> None:
            self.view = fresh
            metrics.FIGURES.watch(fresh)
            log.info("local view rebuilt from %d dossiers", count)

        self._post(install)
        return count

    def replace(self, changes: list[tuple[DossierState | None, DossierState]]) -> None:
        def apply() -> None:
            for before, after in changes:
                self.view.replace(before, after)

        self._post(apply)

    def _post(self, work: Callable[[], None]) -> None:
        if self.loop is None:
            work()  # not started yet: nothing reads the view concurrently
        else:
            self.loop.call_soon_threadsafe(work)


def _processor(settings: HubSettings, reference: ReferenceData) -> Processor:
    registry = SchemaRegistryClient(settings.schema_registry_url)

    def serializer_for(kind: SchemaKind) -> Any:
        schema = load_schema(kind)
        return lambda topic: AvroSerializer(registry, f"{topic}-value", schema)

    return Processor(
        settings,
        reference,
        AvroDeserializer(registry),
        {
            kind: serializer_for(kind)
            for kind in (SchemaKind.DOSSIER_STATUS, SchemaKind.DOSSIER_ALERT)
        },
    )


def build(settings: HubSettings) -> tuple[faust.App, TopicCreator]:
    """The worker's application, its engine and its HTTP API, from ``settings``."""
    reference = load_reference()
    topics = Topics(settings.topic_prefix)
    sink = PostToLoop(lambda: LocalView(reference.calendar, settings.late_if_repeated_supplement))
    topic_creator = TopicCreator(
        settings.kafka_bootstrap_servers, settings.partitions, settings.replication_factor
    )
    app = WorkerApp(
        settings.app_id,
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        canonical_url=settings.web_url(),
    )

    def fatal(exc: BaseException) -> None:
        loop = sink.loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(app.crash(exc), loop)

    security = settings.kafka_security().librdkafka_config()
    directory = Directory(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, **security},
        directory_topic(settings.app_id),
        f"{settings.app_id}-{worker_id(settings.data_dir)}",
        settings.web_url(),
    )
    signer = None
    if settings.audit_signing_key is not None:
        signer = load_signer(settings.audit_signing_key)  # KeyFileError: main() says why
        log.info("audit: chain heads signed with key %s", signer.key_id)
    else:
        log.warning(
            "HUB_AUDIT_SIGNING_KEY is not set: audit chain heads are not signed, so `hub audit "
            "verify` cannot tell this worker's entries from anyone else's (README, Audit trail)"
        )
    engine = CheckpointLoop(
        settings,
        _processor(settings, reference),
        view=sink,
        on_fatal=fatal,
        on_assigned=directory.announce,
        standbys=lambda: directory.standbys(settings.standby_replicas),
        signer=signer,
    )

    @app.service
    class Engine(faust.Service):
        async def on_start(self) -> None:
            sink.loop = asyncio.get_running_loop()
            await asyncio.to_thread(engine.create_topics)
            await asyncio.to_thread(
                engine.admin.ensure, [directory_topic(settings.app_id)], compact=True, partitions=1
            )
            directory.start()
            engine.start()

        async def on_stop(self) -> None:
            await asyncio.to_thread(engine.stop)
            await asyncio.to_thread(directory.stop)

    lag_sampler = LagSampler(
        settings.kafka_bootstrap_servers,
        settings.app_id,
        [topics.dossier_events, topics.feedback_events],
    )

    @app.timer(interval=15.0)  # type: ignore[untyped-decorator]
    async def sample_consumer_lag() -> None:
        """hub_consumer_lag_messages{topic} (hub/worker/lag.py), sampled in a thread."""
        await refresh(lag_sampler)

    if settings.audit_stamp_interval_s > 0:
        stamper = HeadStamper(
            settings.audit_stamp_dir or settings.data_dir / "audit-stamps", settings.audit_tsa
        )

        @app.timer(interval=settings.audit_stamp_interval_s)  # type: ignore[untyped-decorator]
        async def stamp_audit_heads() -> None:
            """RFC 3161 stamps of the chain heads this worker committed (hub/audit/tsa.py),
            in a thread: an authority may take seconds to answer."""
            await asyncio.to_thread(stamper.stamp, engine.committed_audit_heads())

    def mask(name: str | None) -> str | None:
        if name is None or settings.show_personal_data:
            return name
        return " ".join(part[0] + "*" * (len(part) - 1) for part in name.split())

    def dossier_json(state: DossierState) -> dict[str, Any]:
        data: dict[str, Any] = state.to_dict()
        data["applicant_name"] = mask(state.applicant_name)
        data["portal_status_code"] = reference.portal_codes[state.status]
        deadline = effective_deadline(state, reference.calendar)
        data["effective_deadline"] = deadline.isoformat() if deadline else None
        data.pop("alerts_emitted", None)
        # accountability: the first step that overran its deadline (all of them: late_steps)
        data["made_late_by"] = state.late_steps[0].to_dict() if state.late_steps else None
        return data

    session: dict[str, aiohttp.ClientSession] = {}

    def client() -> aiohttp.ClientSession:
        found = session.get("client")
        if found is None:
            found = session["client"] = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=5)
            )
        return found

    async def forward(request: Any, url: str) -> Any:
        async with client().get(f"{url}{request.rel_url}", headers={FORWARDED: "1"}) as resp:
            body = await resp.read()
            return AioResponse(body=body, status=resp.status, content_type="application/json")

    class Incomplete(Exception):  # noqa: N818 - not an error of the caller: a 503
        """A province-wide answer cannot be made now; the message says why."""

    async def peer_parts(request: Any, path: str, params: dict[str, str]) -> list[Any]:
        """The parts of a province-wide answer that other workers hold: each worker holding
        a partition this one does not is asked once (marked forwarded: it answers for its own
        partitions only). A request that is itself forwarded has none to ask."""
        if request.headers.get(FORWARDED):
            return []
        owners: set[str] = set()
        for partition in range(settings.partitions):
            if engine.owns(partition):
                continue
            owner = directory.owner(partition)
            if owner is None or owner == directory.url:
                raise Incomplete(f"partition {partition} has no owner now (rebalancing)")
            owners.add(owner)

        async def ask(url: str) -> Any:
            async with client().get(
                f"{url}{path}", params=params, headers={FORWARDED: "1"}
            ) as resp:
                if resp.status != 200:
                    raise Incomplete(f"the worker at {url} answered {resp.status}")
                return await resp.json()

        try:
            return list(await asyncio.gather(*(ask(url) for url in sorted(owners))))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Incomplete(f"a worker holding partitions did not answer: {exc!r}") from exc

    @app.page("/dossiers/{code}")
    async def get_dossier(web: Any, request: Any, code: str) -> Any:
        key = code.encode()
        if key.startswith(META_KEY[:1]):
            return web.json({"error": f"no dossier {code}"}, status=404)
        partition = partition_for(key, settings.partitions)
        if not engine.owns(partition):
            owner = directory.owner(partition)
            if owner is None or owner == directory.url or request.headers.get(FORWARDED):
                return web.json(
                    {"error": f"partition {partition} has no owner now (rebalancing)"},
                    status=503,
                )
            try:
                return await forward(request, owner)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return web.json(
                    {"error": f"the owner of partition {partition} did not answer: {exc!r}"},
                    status=503,
                )
        state = decode_state(engine.read(partition, key))
        if state is None:
            return web.json({"error": f"no dossier {code}"}, status=404)
        return web.json(dossier_json(state))

    @app.page("/overdue")
    async def overdue(web: Any, request: Any) -> Any:
        """Open dossiers past their appointment date, province-wide (filter: agency)."""
        forwarded = bool(request.headers.get(FORWARDED))
        try:
            query = overdue_query(
                request.query,
                reference.agencies,
                max_size=MAX_PAGE * MAX_PAGE_SIZE if forwarded else MAX_PAGE_SIZE,
            )
        except BadParameterError as exc:
            return web.json(exc.as_json(), status=400)
        agency, page, size = query.agency, query.page, query.size
        today = local_date(utc_now()).isoformat()
        rows = sorted(
            (deadline, code, holder)
            for code, (holder, deadline) in list(sink.view.open_deadlines.items())
            if deadline < today and (agency is None or holder == agency)
        )
        mine = {
            "total": len(rows),
            "items": [
                {"dossier_code": c, "agency_code": a, "deadline": d}
                for d, c, a in rows[: page * size]
            ],
        }
        # each other worker sends the first page * size rows of its own, all this page needs
        params = {"page": "1", "size": str(page * size)}
        if agency is not None:
            params["agency"] = agency
        try:
            parts = [mine, *await peer_parts(request, "/overdue", params)]
        except Incomplete as exc:
            return web.json({"error": str(exc)}, status=503)
        return web.json(merge_overdue(parts, page, size))

    @app.page("/agencies/{code}/summary")
    async def get_agency_summary(web: Any, request: Any, code: str) -> Any:
        """An agency's figures, province-wide, in all and per procedure."""
        if code not in reference.agencies:
            return web.json({"error": f"unknown agency code {code!r}"}, status=404)
        view = sink.view
        mine = agency_summary(dict(view.figures), code, dict(view.late_steps))
        try:
            parts = [mine, *await peer_parts(request, f"/agencies/{code}/summary", {})]
        except Incomplete as exc:
            return web.json({"error": str(exc)}, status=503)
        return web.json(merge_summaries(code, parts))

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """200 once the engine holds its partitions with their stores restored."""
        is_ready = engine.ready.is_set()
        return web.json({"ready": is_ready}, status=200 if is_ready else 503)

    @app.page("/metrics")
    async def prometheus_metrics(web: Any, request: Any) -> Any:
        return AioResponse(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return app, topic_creator


def main() -> None:
    # `kill -USR1 <pid>` prints every thread's stack to stderr: where a stuck worker waits
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    settings = HubSettings()
    try:
        app, topic_creator = build(settings)
    except KeyFileError as exc:
        raise SystemExit(f"hub worker: {exc}") from None
    topic_creator.ensure(hub_topics(Topics(settings.topic_prefix)))
    app.main()
