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
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
from aiohttp.web import Response as AioResponse
from aiohttp.web import json_response
from faust.app.base import BootStrategy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from hub.access.roles import Principal
from hub.access.store import AccessStore
from hub.audit.signing import KeyFileError, load_signer
from hub.audit.trail import audit_topic
from hub.audit.tsa import HeadStamper
from hub.contract.registry import SchemaRegistryClient
from hub.contract.schemas import SchemaKind, load_schema
from hub.contract.serde import AvroDeserializer, AvroSerializer
from hub.domain.lifecycle import DossierState
from hub.engine.changelog import changelog_topic, directory_topic
from hub.engine.cluster import ClusterError, check_cluster
from hub.engine.directory import Directory
from hub.engine.loop import CheckpointLoop, ViewSink, worker_id
from hub.reference import ReferenceData, load_reference
from hub.settings import HubSettings, settings_problems
from hub.topic_admin import TopicCreator
from hub.web.pages import Names
from hub.worker import metrics
from hub.worker.api import FORWARDED, Api, ApiError, presented_key
from hub.worker.archive import ArchiveDirectory, MemoryArchive
from hub.worker.figures import LocalView
from hub.worker.lag import LagSampler, refresh
from hub.worker.processor import Processor, Topics
from hub.worker.topics import hub_topics
from hub.worker.web import add_pages

__all__ = ["build", "main"]

log = logging.getLogger("hub.worker")


class AccessFileError(ValueError):
    """An access file that cannot be read at start: the worker does not start."""


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

    #: view updates posted and not yet applied, at most: each holds its checkpoint's
    #: decoded states (a few KiB each), and while the engine catches up on a backlog it
    #: outpaces the event loop, so without a bound they pile up and the resident memory
    #: keeps that high-water mark (the allocator does not give it back)
    MAX_PENDING = 4
    #: the engine waits at most this long for the loop to take an update (then posts anyway:
    #: a stopped loop must not stop the engine)
    PENDING_WAIT_S = 5.0

    def __init__(self, new_view: Callable[[], LocalView]) -> None:
        self.new_view = new_view
        self.view = new_view()
        metrics.FIGURES.watch(self.view)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._room = threading.Semaphore(self.MAX_PENDING)

    def rebuild(self, states: Iterable[DossierState]) -> int:
        fresh = self.new_view()
        count = fresh.rebuild(states)

        def install() -> None:
            old, self.view = self.view, fresh
            metrics.FIGURES.watch(fresh)
            old.archive.close()  # its rows are the fresh view's now
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
            return
        taken = self._room.acquire(timeout=self.PENDING_WAIT_S)

        def run() -> None:
            try:
                work()
            finally:
                if taken:
                    self._room.release()

        self.loop.call_soon_threadsafe(run)


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
    archives = ArchiveDirectory(settings.data_dir / "view") if settings.store == "rocksdb" else None
    sink = PostToLoop(
        lambda: LocalView(
            reference.calendar,
            settings.late_if_repeated_supplement,
            archive=archives.new() if archives is not None else MemoryArchive(),
        )
    )
    topic_creator = TopicCreator.for_settings(settings)
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
        f"{settings.app_id}-{worker_id(settings)}",
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
            await api.close()
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

    try:
        access = AccessStore(settings.access_file, settings.access_ingress_credentials)
    except ValueError as exc:
        raise AccessFileError(str(exc)) from None
    if access.size == 0:
        log.warning(
            "no API keys (HUB_ACCESS_FILE, HUB_ACCESS_INGRESS_CREDENTIALS): every call but "
            "/health and /ready answers 401 (README, Access by role; `hub access add`)"
        )
    api = Api(settings, reference, engine, directory, sink, access)
    names = Names(
        {code: reference.agencies.get(code).name for code in reference.agencies.codes},
        {code: procedure.name for code, procedure in reference.procedures.items()},
        {status.value: labels for status, labels in reference.portal_labels.items()},
    )

    def answer_json(work: Callable[[Principal, str, bool], Awaitable[Any]]) -> Any:
        """A JSON handler: the caller's key checked, ApiError answered with its status."""

        async def handle(request: Any) -> Any:
            try:
                principal = api.authenticate(request.headers, request.cookies)
                key = presented_key(request.headers, request.cookies) or ""
                body = await work(principal, key, bool(request.headers.get(FORWARDED)))
            except ApiError as exc:
                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                return json_response(exc.as_json(), status=exc.status, headers=headers)
            return json_response(body)

        return handle

    @app.page("/dossiers/{code}")
    async def get_dossier(web: Any, request: Any, code: str) -> Any:
        """A dossier's state, timeline, deadlines and late steps (its owner answers)."""
        return await answer_json(lambda who, key, _: api.dossier(who, key, code))(request)

    @app.page("/dossiers")
    async def search_dossiers(web: Any, request: Any) -> Any:
        """Dossiers by code prefix, agency, status, procedure and date received."""
        return await answer_json(
            lambda who, key, fwd: api.search(who, key, request.query, forwarded=fwd)
        )(request)

    @app.page("/overdue")
    async def overdue(web: Any, request: Any) -> Any:
        """Open dossiers past their appointment date, province-wide (filters, paged)."""
        return await answer_json(
            lambda who, key, fwd: api.overdue(who, key, request.query, forwarded=fwd)
        )(request)

    @app.page("/agencies/{code}/summary")
    async def get_agency_summary(web: Any, request: Any, code: str) -> Any:
        """An agency's figures, province-wide, in all and per procedure."""
        return await answer_json(
            lambda who, key, fwd: api.agency_summary(who, key, code, forwarded=fwd)
        )(request)

    @app.page("/province/summary")
    async def get_province_summary(web: Any, request: Any) -> Any:
        """Every agency's figures and weekly trend, and the province's total."""
        return await answer_json(
            lambda who, key, fwd: api.province_summary(who, key, forwarded=fwd)
        )(request)

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
        """Prometheus metrics, for any key (a scraper holds a figures key)."""
        try:
            api.authenticate(request.headers, request.cookies)
        except ApiError as exc:
            return json_response(
                exc.as_json(), status=exc.status, headers={"WWW-Authenticate": "Bearer"}
            )
        return AioResponse(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    add_pages(app, api, names)
    return app, topic_creator


def main() -> None:
    # `kill -USR1 <pid>` prints every thread's stack to stderr: where a stuck worker waits
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        settings = HubSettings()
    except ValidationError as exc:
        raise SystemExit(f"hub worker: {settings_problems(exc)}") from None
    try:
        app, topic_creator = build(settings)
    except (KeyFileError, AccessFileError) as exc:
        raise SystemExit(f"hub worker: {exc}") from None
    topics = hub_topics(Topics(settings.topic_prefix))
    try:
        check_cluster(
            {"bootstrap.servers": settings.kafka_bootstrap_servers,
             **settings.kafka_security().librdkafka_config()},
            [*topics, changelog_topic(settings.app_id), audit_topic(settings.topic_prefix)],
            replication_factor=settings.replication_factor,
            min_insync_replicas=settings.min_insync_replicas,
        )  # fmt: skip
    except ClusterError as exc:
        raise SystemExit(f"hub worker: the Kafka cluster cannot keep the settings: {exc}") from None
    topic_creator.ensure(topics)
    app.main()
