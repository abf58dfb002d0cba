"""The worker's engine: a checkpoint loop over Kafka transactions (exactly-once).

One thread of the worker process runs it (the faust application around it serves HTTP and
metrics and never waits for it). The loop, after the design of Kafka Streams' exactly-once v2
and quix-streams' checkpoints:

1. consume the input topics in batches, ``isolation.level=read_committed``, no auto-commit;
   a partition number ``p`` is one *task*: ``dossier.events[p]`` and ``feedback.events[p]``
   (co-partitioned by dossier code, assigned together by the range assignor) and the store
   of partition ``p`` (``hub.engine.store``);
2. apply each record to its dossier's state (``hub.worker.processor``; a state is read from
   the store once per checkpoint, then kept in memory until the checkpoint ends) and produce
   its outputs (status, portal outbox, agency inbox, alerts, audit entry, dead letter) into
   the open transaction;
3. every ``HUB_COMMIT_INTERVAL_MS`` (or ``HUB_BATCH_MAX`` records): produce one changelog
   record per changed dossier and one meta record per task read from, send the input offsets
   with the consumer's group metadata (``send_offsets_to_transaction``, KIP-447: a member the
   group has fenced cannot commit), commit; then write the states and the meta into each
   store in one write batch;
4. on any failure of the transaction: abort, forget the checkpoint's states, seek every
   input partition back to its committed offset; nothing of the aborted transaction is
   visible to a read-committed consumer;
5. on revocation: commit the open checkpoint (or abort it); on assignment: read the group's
   committed offsets, bring each store up to date from the changelog (read committed, from
   the store's own changelog offset: seconds on a kept disk, a replay on an empty one), check
   that the store's input offsets are the committed ones, and start each input partition
   there.

The deadline clock runs in the loop too: each task keeps a due index (the next date an alert
may fall due for each open dossier, ``hub.domain.deadlines.next_alert_date``), and only the
dossiers due are looked at, in the same transactions as everything else.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from hub.audit.chain import access_chain, access_entry, chain_key, entry_for
from hub.audit.signing import HeadSigner
from hub.audit.trail import audit_topic, encode_entry
from hub.consumer_group import Record, record_of
from hub.contract.errors import RegistryUnavailableError
from hub.dlq.publisher import count_dead_letter, dead_letter_record
from hub.domain.events import local_date
from hub.domain.lifecycle import DossierState
from hub.engine.changelog import changelog_topic
from hub.engine.feedback_gate import FeedbackGate
from hub.engine.store import (
    META_KEY,
    BlockCache,
    DiskFullError,
    Meta,
    PartitionStore,
    open_store,
)
from hub.engine.topics import EngineTopics
from hub.settings import HubSettings
from hub.worker import metrics
from hub.worker.processor import Effects, Processor, Topics, decode_state, encode_state, utc_now

__all__ = ["CheckpointLoop", "EngineError", "ViewSink"]

log = logging.getLogger("hub.engine")

#: how often a standby replica reads its partitions' changelog on
STANDBY_EVERY_S = 2.0
#: how long an assignment may keep failing (broker away) before the worker gives up and
#: exits, to be restarted by its supervisor
ASSIGN_PATIENCE_S = 300.0
#: how long the changelog may stay behind the group's committed offsets (a transaction's
#: markers still being written) before the worker says they disagree
RESTORE_PATIENCE_S = 30.0
#: the timeout given to each transactional call of the producer
TXN_CALL_S = 15.0
#: how long a commit whose outcome the broker has not told us yet is called again
COMMIT_RETRY_S = 120.0
#: how long the producer may hold an output to batch it (see the producer's settings)
PRODUCER_LINGER_MS = 20
#: Transactional producers a worker takes in turn, one checkpoint each. After a commit returns,
#: the coordinator still writes the transaction's markers; a new transaction of the same
#: transactional id that adds a partition meanwhile is refused (CONCURRENT_TRANSACTIONS) and
#: librdkafka asks again 20 ms later, which was the tail of the checkpoint time. With two ids
#: the next checkpoint never waits for the last one's markers. Each id is fenced like the
#: first: a restart on the same disk fences both, and both commit offsets with the group's
#: metadata (KIP-447).
PRODUCER_SLOTS = 2
#: void entries the due index's heap may hold beyond twice its live ones before compaction
DUE_SLACK = 1024
#: the consumer's prefetch bound, KiB: about 13,000 events of the simulator's size, over a
#: second of the loop's full rate
CONSUMER_QUEUE_KB = 8192
#: how often a store write waiting for disk space is tried again
DISK_RETRY_S = 5.0


T = TypeVar("T")


class ProducerStuck(KafkaException):
    """A producer call did not return within its deadline (see :func:`_within`)."""


def _within(deadline_s: float, what: str, call: Callable[[], object]) -> None:
    """Run ``call`` in a thread of its own and give up on it after ``deadline_s``.

    librdkafka's ``send_offsets_to_transaction`` can block for ever, past its own timeout,
    when the group coordinator went away during the transaction (librdkafka #5456, #5511,
    open; seen here when the broker restarted under load). The engine must not hang with it:
    it abandons that producer (the thread stays blocked in it) and makes a new one."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the engine's thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"hub-{what}", daemon=True).start()
    if not done.wait(deadline_s):
        raise ProducerStuck(
            KafkaError(KafkaError._TIMED_OUT, f"{what} did not return within {deadline_s:.0f}s")
        )
    if failure:
        raise failure[0]


def unwrapped(call: Callable[[], T]) -> T:
    """``call()`` (a producer's ``flush`` or ``poll``), raising the :class:`KafkaException` a
    fatal error really is.

    confluent-kafka raises a fatal error met while serving callbacks (a producer fenced by a
    newer one with its transactional id) as a KafkaException and then calls the next delivery
    callback with it still pending, which Python turns into ``SystemError: <function ...>
    returned a result with an exception set``, caused by that KafkaException. Seen once in the
    30-minute cluster soak: the worker crashed instead of starting over from its checkpoint
    with a new producer, which is what a fatal error calls for."""
    try:
        return call()
    except SystemError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, KafkaException):
            raise cause from exc
        raise


#: a checkpoint under a backlog holds up to this many fetched batches (see
#: HubSettings.catchup_commit_interval_ms)
CATCHUP_BATCHES = 5


def checkpoint_due(settings: HubSettings, open_s: float, records: int, *, backlog: bool) -> bool:
    """Whether the open checkpoint ends now: open ``open_s`` seconds with ``records`` input
    records in it, the last fetch ``backlog`` (a full batch) or not. A full batch, not less:
    at 2,000 events/s half a batch piles up in a half-second stall, and a 250 ms checkpoint
    would then land on the very events that make the latency's tail (with half a batch, one
    2M-event run measured p99 105 ms at 2,000/s where the run before the change had 87)."""
    if backlog and settings.catchup_commit_interval_ms > settings.commit_interval_ms:
        return (
            open_s * 1000 >= settings.catchup_commit_interval_ms
            or records >= settings.batch_max * CATCHUP_BATCHES
        )
    return open_s * 1000 >= settings.commit_interval_ms or records >= settings.batch_max


def fetch_batch(consumer: Consumer, most: int, wait_s: float) -> list[Message]:
    """What ``consumer`` has, up to ``most`` records, waiting at most ``wait_s`` for the
    first one only. librdkafka's batch ``consume`` waits out its whole timeout unless the
    batch fills, end-of-partition events included: at low rates that added the timeout to
    every event's latency, and a restore waited it out once per partition at its end (six
    seconds of every kept-disk restart with six partitions)."""
    batch = consumer.consume(most, timeout=0)
    if batch:
        return batch
    first = consumer.poll(wait_s)
    if first is None:
        return []
    return [first, *consumer.consume(most - 1, timeout=0)]


class EngineError(RuntimeError):
    """The engine cannot go on (e.g. its producer was fenced by a copy of this worker)."""


class ViewSink:
    """Where the loop reports what the HTTP view and the figures must know. The default
    does nothing; the worker's application posts these to its event loop."""

    def rebuild(self, states: Iterable[DossierState]) -> int:
        """The states of every partition now held (after a rebalance), decoded one at a time
        as the iterable is consumed (never all at once: a decoded state is some KB); returns
        how many there were."""
        return sum(1 for _ in states)

    def replace(self, changes: list[tuple[DossierState | None, DossierState]]) -> None:
        """States a checkpoint committed: (before, after)."""


@dataclass
class Task:
    """One partition number: its store and what the open checkpoint did to it."""

    partition: int
    store: PartitionStore
    meta: Meta  # as committed: what the store holds
    dirty: dict[bytes, DossierState] = field(default_factory=dict)
    before: dict[bytes, DossierState | None] = field(default_factory=dict)
    next_inputs: dict[str, int] = field(default_factory=dict)  # topic -> next offset
    audit_heads: dict[str, dict[str, Any]] = field(default_factory=dict)  # changed heads
    #: this checkpoint's audit entries (chain, entry), written when it commits, heads signed
    audit_pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changelog_last: int = -1  # highest changelog offset delivered in this checkpoint
    due: list[tuple[date, bytes]] = field(default_factory=list)  # heap, lazily pruned
    due_at: dict[bytes, date] = field(default_factory=dict)

    @property
    def touched(self) -> bool:
        return bool(self.dirty or self.next_inputs or self.audit_heads)

    def state(self, key: bytes) -> DossierState | None:
        if key in self.dirty:
            return self.dirty[key]
        if key in self.before:
            return self.before[key]
        state = decode_state(self.store.get(key))
        self.before[key] = state
        return state

    def forget_checkpoint(self) -> None:
        self.dirty.clear()
        self.before.clear()
        self.next_inputs.clear()
        self.audit_heads.clear()
        self.audit_pending.clear()
        self.changelog_last = -1

    def delivered(self, err: Any, msg: Message) -> None:
        offset = msg.offset()
        if err is None and offset is not None:
            self.changelog_last = max(self.changelog_last, offset)

    def index_due(self, key: bytes, state: DossierState | None, when: date | None) -> None:
        if state is None or when is None:
            self.due_at.pop(key, None)
            return
        if self.due_at.get(key) != when:
            self.due_at[key] = when
            heapq.heappush(self.due, (when, key))
            if len(self.due) > 2 * len(self.due_at) + DUE_SLACK:
                self._compact_due()

    def _compact_due(self) -> None:
        """Drop the heap's void entries. A dossier's next alert date moves with most of its
        events and a finished one leaves the index; each left an entry behind in the heap
        until its date came, days later: at 500 events/s that was most of a worker's memory
        growth (the 30-minute soak). Rebuilt from ``due_at`` once void entries are over half,
        so a push stays amortised O(log n)."""
        self.due = [(when, key) for key, when in self.due_at.items()]
        heapq.heapify(self.due)

    def due_keys(self, today: date) -> list[bytes]:
        keys: list[bytes] = []
        while self.due and self.due[0][0] <= today:
            when, key = heapq.heappop(self.due)
            if self.due_at.get(key) == when:
                del self.due_at[key]
                keys.append(key)
        return keys


def worker_id(settings: HubSettings) -> str:
    """This worker's stable id: its name (``HUB_WORKER_NAME``), else an id kept on its disk.
    Its client and transactional ids are made from it, so a restart under the same id fences
    its own previous incarnation and aborts what that left open at once; with a name, that
    holds for a restart on an empty disk too."""
    if settings.worker_name is not None:
        return settings.worker_name
    data_dir = settings.data_dir
    path = data_dir / "worker-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        value = uuid.uuid4().hex[:12]
        path.write_text(value + "\n")
        return value


class CheckpointLoop:
    def __init__(
        self,
        settings: HubSettings,
        processor: Processor,
        *,
        view: ViewSink | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        on_assigned: Callable[[frozenset[int]], None] | None = None,
        standbys: Callable[[], frozenset[int]] = frozenset,
        signer: HeadSigner | None = None,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.topics = Topics(settings.topic_prefix)
        self.inputs = [self.topics.dossier_events, self.topics.feedback_events]
        self._gate = FeedbackGate(settings.feedback_wait_s)
        self.changelog = changelog_topic(settings.app_id)
        self.audit_topic = audit_topic(settings.topic_prefix)
        self._inbox_prefix = self.topics.inbox("")
        self.view = view or ViewSink()
        self.on_fatal = on_fatal
        self.on_assigned = on_assigned  # told the partitions held after each rebalance
        self.standbys = standbys  # partitions to keep warm for other workers
        self._locks: dict[int, threading.Lock] = {}  # per store: restore vs. standby
        self._restorers: dict[str, Consumer] = {}  # changelog readers, one per thread
        self.worker_id = worker_id(settings)
        #: signs each chain's head at every checkpoint; None: heads go unsigned (warned)
        self.signer: HeadSigner | None = signer
        self.tasks: dict[int, Task] = {}
        self._stores: dict[int, PartitionStore] = {}  # kept across rebalances
        self._block_cache = BlockCache(settings.rocksdb_block_cache_mb)  # shared by all
        metrics.BLOCK_CACHE.set_function(self._block_cache.usage)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_txn = False
        self._txn_records = 0
        self._txn_started = 0.0
        self._next_clock = 0.0
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._out_counts: Counter[tuple[str, str]] = Counter()
        #: output topic -> its metric labels; a topic is in it once it is known to exist
        self._out_labels: dict[str, tuple[str, str]] = {}
        self._latencies: list[float] = []
        #: personal-data reads to record (``log_access``), from the HTTP API's thread
        self._access: deque[tuple[int, dict[str, str], Future[None]]] = deque()
        #: reads recorded in the open transaction: answered once it commits
        self._access_waiting: list[Future[None]] = []
        self.ready = threading.Event()
        self._disk_full = False  # a store write is waiting for disk space
        self._ready_before_disk_full = False
        self.checkpoints = 0
        self.aborts = 0
        security = settings.kafka_security().librdkafka_config()
        common = {"bootstrap.servers": settings.kafka_bootstrap_servers, **security}
        self._consumer_config = {
            **common,
            "group.id": settings.app_id,
            "client.id": f"{settings.app_id}-{self.worker_id}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # co-partitioned inputs: partition p of every input topic to the same member
            "partition.assignment.strategy": "range",
            "session.timeout.ms": int(settings.session_timeout_s * 1000),
            # a named worker is a static member: its restart takes its partitions back
            # without a rebalance and without waiting out the session of the one it replaces
            **({"group.instance.id": settings.worker_name} if settings.worker_name else {}),
            "heartbeat.interval.ms": int(min(3.0, settings.session_timeout_s / 3) * 1000),
            # an assignment restores its stores inside the rebalance callback
            "max.poll.interval.ms": 900_000,
            "fetch.wait.max.ms": 50,
            # librdkafka prefetches up to 64 MiB by default; after an outage the backlog
            # arrives at once and the worker's resident memory keeps that high-water mark
            # (the allocator does not give it back). A few batches ahead is all the loop
            # needs: CONSUMER_QUEUE_KB holds several seconds at its full rate
            "queued.max.messages.kbytes": CONSUMER_QUEUE_KB,
            "fetch.max.bytes": CONSUMER_QUEUE_KB * 1024,
        }
        self._producer_config = {
            **common,
            "client.id": f"{settings.app_id}-{self.worker_id}",
            "transactional.id": f"{settings.app_id}-{self.worker_id}",
            "enable.idempotence": True,
            "acks": "all",
            # Every checkpoint flushes (and a commit sends what lingers), so a linger costs an
            # output no latency; it lets librdkafka send fewer, larger requests and wake its
            # threads less: 2 -> 20 ms measured 5,600 -> 7,400 events/s (bench/RESULTS.md)
            "linger.ms": PRODUCER_LINGER_MS,
            # where Java clients, aiokafka and kafka-python put a key
            "partitioner": "murmur2_random",
            "transaction.timeout.ms": settings.transaction_timeout_ms,
        }
        self._restore_config = {
            **common,
            "group.id": f"{settings.app_id}-restore",
            "client.id": f"{settings.app_id}-{self.worker_id}-restore",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # A restore reads to an end it knows. At that end only a transaction marker is
            # left, which the broker answers after fetch.wait.max.ms (500 ms by default), and
            # the next partition's first fetch waited behind it: a second per partition on
            # every kept-disk restart, where nothing is missing.
            "fetch.wait.max.ms": 10,
        }
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None  # the one whose turn it is
        self._producers: list[Producer] = []  # by slot (PRODUCER_SLOTS)
        self._slot = 0
        self.admin = EngineTopics(
            common, settings.partitions, settings.replication_factor, timeout_s=15.0,
            min_insync_replicas=settings.min_insync_replicas,
        )  # fmt: skip

    def create_topics(self) -> None:
        """The changelog (compacted) and the audit topic, before the loop starts."""
        self.admin.ensure([self.changelog], compact=True)
        # a chain must start at seq 1 to verify: its records are never expired (README)
        self.admin.ensure([self.audit_topic], keep_forever=True)

    # --- life ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-engine", daemon=True)
        self._thread.start()
        if self.settings.standby_replicas > 0:
            threading.Thread(target=self._keep_standbys, name="hub-standby", daemon=True).start()

    def committed_audit_heads(self) -> dict[str, dict[str, Any]]:
        """The head of each chain this worker holds, as last committed (so in the audit topic
        for read-committed readers); safe to call from another thread."""
        heads: dict[str, dict[str, Any]] = {}
        for task in list(self.tasks.values()):
            heads.update(task.meta.audit_heads)
        return heads

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def owns(self, partition: int) -> bool:
        return self.ready.is_set() and partition in self.tasks

    def log_access(
        self, partition: int, *, who: str, role: str, dossier_code: str, at: str
    ) -> Future[None]:
        """Record a read of a dossier's personal data in the audit trail (the partition's
        ``@access`` chain, hub/audit/chain.py). The future is done when the entry is
        committed, in the next checkpoint; it fails when this worker no longer holds the
        partition or the checkpoint is aborted: then the caller must not answer with the
        data. Safe to call from any thread."""
        done: Future[None] = Future()
        self._access.append(
            (partition, {"who": who, "role": role, "dossier_code": dossier_code, "at": at}, done)
        )
        return done

    def _record_access(self) -> None:
        while self._access:
            partition, fields, done = self._access.popleft()
            task = self.tasks.get(partition)
            if task is None:
                done.set_exception(LookupError(f"partition {partition} is not held here now"))
                continue
            self._begin()
            chain = access_chain(partition)
            head = task.audit_heads.get(chain) or task.meta.audit_heads.get(chain)
            entry = access_entry(head, partition=partition, **fields)
            task.audit_heads[chain] = entry
            task.audit_pending.append((chain, entry))
            self._access_waiting.append(done)

    def _access_settled(self, error: BaseException | None) -> None:
        waiting, self._access_waiting = self._access_waiting, []
        for done in waiting:
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    def read(self, partition: int, key: bytes) -> bytes | None:
        """A dossier's committed state, if this worker holds its partition."""
        store = self._stores.get(partition)
        return store.get(key) if store is not None else None

    def _run(self) -> None:
        try:
            self._connect()
            while not self._stop.is_set():
                self._step()
            self._close()
        except BaseException as exc:
            log.exception("the engine stopped: %s", exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)

    def _keep_standbys(self) -> None:
        """Standby replicas: the stores of partitions other workers hold, kept close to their
        changelog's end, so taking one over restores only the last few seconds."""
        while not self._stop.wait(STANDBY_EVERY_S):
            for partition in sorted(self.standbys()):
                lock = self._lock(partition)
                with lock:
                    if partition in self.tasks or self._stop.is_set():
                        continue  # ours now: the loop has it
                    try:
                        replayed = self._replay(
                            self._store(partition), partition, self._standby_restorer()
                        )
                    except KafkaException as exc:
                        log.info("standby of partition %s: %s", partition, exc)
                        continue
                if replayed:
                    log.debug("standby of partition %s: %d records", partition, replayed)

    def _lock(self, partition: int) -> threading.Lock:
        return self._locks.setdefault(partition, threading.Lock())

    def _slot_config(self, slot: int) -> dict[str, Any]:
        """Slot 0 keeps the worker's first transactional id (what a worker of one producer
        used, so it is fenced too); slot k adds ``.k``."""
        if slot == 0:
            return self._producer_config
        suffix = f".{slot}"
        return {
            **self._producer_config,
            "client.id": f"{self._producer_config['client.id']}{suffix}",
            "transactional.id": f"{self._producer_config['transactional.id']}{suffix}",
        }

    def _make_producer(self, slot: int) -> Producer:
        producer = Producer(self._slot_config(slot))
        producer.init_transactions(60)  # aborts what an earlier run of ours left open
        return producer

    def _connect(self) -> None:
        self._producers = [self._make_producer(slot) for slot in range(PRODUCER_SLOTS)]
        self._slot = 0
        self.producer = self._producers[0]
        self.consumer = Consumer(self._consumer_config)
        self.consumer.subscribe(
            self.inputs, on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )  # fmt: skip
        log.info("engine started: worker %s, inputs %s", self.worker_id, ", ".join(self.inputs))

    def _close(self) -> None:
        assert self.consumer is not None and self.producer is not None
        if self._in_txn:
            self._commit()
        self.ready.clear()
        self._access_settled(LookupError("the worker is stopping"))
        while self._access:
            self._access.popleft()[2].set_exception(LookupError("the worker is stopping"))
        self.consumer.close()  # leaves the group: the others take over without waiting
        for producer in self._producers or [self.producer]:
            with contextlib.suppress(KafkaException):  # stopping: the broker aborts it
                unwrapped(functools.partial(producer.flush, 10))
        for restorer in self._restorers.values():
            restorer.close()
        for store in self._stores.values():
            store.close()
        log.info("engine stopped: %d checkpoints, %d aborted", self.checkpoints, self.aborts)

    # --- the loop -----------------------------------------------------------------------

    def _step(self) -> None:
        assert self.consumer is not None
        interval = self.settings.commit_interval_ms / 1000
        wait = interval
        if self._in_txn:
            wait = max(0.0, self._txn_started + interval - time.monotonic())
        messages = self._fetch(max(wait, 0.001))
        now = utc_now()
        try:
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.fatal() or error.code() == KafkaError._FATAL:
                        raise EngineError(self._consumer_fatal(error))
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("consumer: %s", error)
                    continue
                self._process(message, now)
            if self._gate.held:
                self._release_feedback()
            if self._access:
                self._record_access()
            if self.ready.is_set() and time.monotonic() >= self._next_clock:
                self._next_clock = time.monotonic() + self.settings.clock_interval_s
                self._clock(now)
            if self._in_txn and checkpoint_due(
                self.settings, time.monotonic() - self._txn_started, self._txn_records,
                backlog=len(messages) >= self.settings.batch_max,
            ):  # fmt: skip
                self._commit()
        except KafkaException as exc:  # a produce or a topic creation failed: start over
            self._abort(exc)
        self._flush_metrics()

    def _consumer_fatal(self, error: KafkaError) -> str:
        """Why the consumer cannot go on, for the log and the exit: a static member replaced
        by another with its name is the one a user can fix."""
        why = f"the consumer hit a fatal error: {error.str()}"
        name = self.settings.worker_name
        if name is not None and "fenced" in error.str().lower():
            why += (
                f"; another worker of {self.settings.app_id} runs as HUB_WORKER_NAME={name}:"
                " each running worker needs a name of its own"
            )
        return why

    def _fetch(self, wait_s: float) -> list[Message]:
        """What the consumer has, up to a batch (:func:`fetch_batch`)."""
        assert self.consumer is not None
        return fetch_batch(self.consumer, self.settings.batch_max, wait_s)

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        *,
        headers: Any = None,
        partition: int | None = None,
        on_delivery: Callable[[Any, Message], None] | None = None,
    ) -> None:
        assert self.producer is not None
        extra: dict[str, Any] = {}
        if partition is not None:
            extra["partition"] = partition
        if on_delivery is not None:
            extra["on_delivery"] = on_delivery
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers, **extra)
                return
            except BufferError:  # the producer's queue is full: let it drain
                unwrapped(functools.partial(self.producer.poll, 0.05))

    def _begin(self) -> None:
        if not self._in_txn:
            assert self.producer is not None
            self.producer.begin_transaction()
            self._in_txn = True
            self._txn_started = time.monotonic()
            self._txn_records = 0

    def _process(self, message: Message, now: Any) -> None:
        record = record_of(message)
        task = self.tasks.get(record.partition)
        if task is None:  # not ours (a fetch from before a revocation): its owner reads it
            return
        gate = self._gate
        feedback = record.topic != self.inputs[0]
        if not feedback:
            gate.dossier_read(record.partition, record.timestamp)
        elif gate.held and gate.is_held(record.partition):
            return  # behind a held record of its partition: read again once it goes on
        key = record.key
        if key is not None and key.startswith(META_KEY[:1]):
            key = None  # not a dossier code: dead-lettered by the processor's key rule
        before = task.state(key) if key is not None else None
        if feedback and before is None and key is not None and self._feedback_waits(record):
            return
        self._begin()
        self._txn_records += 1
        effects = self._effects(record, key, before, now)
        self._emit(record, key, effects, task)
        if effects.state is not None and key is not None:
            task.dirty[key] = effects.state
            task.index_due(key, effects.state, effects.next_alert)
        task.next_inputs[record.topic] = record.offset + 1
        event_type = effects.event_type or "unknown"
        self._counts[(record.topic, event_type, effects.outcome)] += 1
        if effects.lag_s is not None:
            self._latencies.append(max(0.0, effects.lag_s))

    def _feedback_waits(self, record: Record) -> bool:
        """Hold feedback for a dossier not held yet while dossier.events may still bring it
        (hub.engine.feedback_gate): its feedback partition is paused and will be read again
        from this record."""
        partition = record.partition
        if not self._gate.must_wait(
            partition, record.timestamp, lambda: self._dossiers_read_to_end(partition)
        ):
            return False
        assert self.consumer is not None
        tp = TopicPartition(record.topic, partition, record.offset)
        self.consumer.pause([tp])
        self.consumer.seek(tp)
        self._gate.hold(partition, record.offset, record.timestamp, time.monotonic())
        log.warning(
            "feedback %s[%s]@%s is for a dossier not read yet: it waits (at most %.0fs) for "
            "%s[%s], which may still hold its events", record.topic, partition, record.offset,
            self.settings.feedback_wait_s, self.inputs[0], partition,
        )  # fmt: skip
        return True

    def _dossiers_read_to_end(self, partition: int, *, between_batches: bool = False) -> bool:
        """Whether this worker has read dossier.events[partition] up to its end as its
        leader tells it now (read_committed: the last stable offset; not librdkafka's
        cached end, stale while the leader is down). Mid-batch, "read" is what was applied
        (records of the batch still to come are not); between batches it is the consumer's
        position, which also steps over transaction markers."""
        assert self.consumer is not None
        task = self.tasks.get(partition)
        if task is None:
            return True
        tp = TopicPartition(self.inputs[0], partition)
        try:
            _, end = self.consumer.get_watermark_offsets(tp, timeout=0.5, cached=False)
            read_to = task.next_inputs.get(tp.topic, task.meta.inputs.get(tp.topic, 0))
            if between_batches:  # < 0: nothing consumed since the assignment
                read_to = max(read_to, self.consumer.position([tp])[0].offset)
        except KafkaException:
            return False  # no leader to ask: its records may be on their way
        return bool(read_to >= end)

    def _release_feedback(self) -> None:
        assert self.consumer is not None
        topic = self.inputs[1]
        released = self._gate.release(
            time.monotonic(),
            lambda partition: self._dossiers_read_to_end(partition, between_batches=True),
        )
        for partition, offset in released:
            self.consumer.resume([TopicPartition(topic, partition, offset)])
            log.info("feedback %s[%s] goes on from %s", topic, partition, offset)

    def _effects(
        self, record: Record, key: bytes | None, before: DossierState | None, now: Any
    ) -> Effects:
        while True:
            try:
                return self.processor.handle(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=key,
                    value=record.value,
                    headers=record.headers,  # read only
                    state=before,
                    now=now,
                )
            except RegistryUnavailableError as exc:
                # not the record's fault: hold everything (back-pressure) rather than
                # dead-letter good records; a transaction timing out meanwhile is aborted
                # and replayed
                log.warning("%s; retrying in %.0fs", exc, self.settings.registry_retry_s)
                self._stop.wait(self.settings.registry_retry_s)
                if self._stop.is_set():
                    raise

    def _emit(self, record: Record, key: bytes | None, effects: Effects, task: Task) -> None:
        self._emit_outputs(effects)
        letter = effects.dead_letter
        if letter is not None:
            dead = dead_letter_record(letter, key, record.value, list(record.headers))
            self._produce(dead.topic, dead.value, dead.key, headers=_headers(dead.headers))
            count_dead_letter(letter)
            log.warning(
                "dead letter: %s from %s[%s]@%s (%s)", letter.reason, record.topic,
                record.partition, record.offset, letter.detail,
            )  # fmt: skip
        if effects.outcome == "applied" and effects.state is not None and key is not None:
            self._audit(record, key, effects, task)

    def _audit(self, record: Record, key: bytes, effects: Effects, task: Task) -> None:
        """One hash-chained entry per applied record (hub/audit); the chain's head travels
        in the task's meta, so it commits and aborts with the states. Written at the
        checkpoint (``_write_audit``), when the chain's head is known and can be signed."""
        chain = chain_key(record.topic, record.partition)
        head = task.audit_heads.get(chain) or task.meta.audit_heads.get(chain)  # None: new
        entry = entry_for(
            head, topic=record.topic, partition=record.partition, offset=record.offset,
            event_id=effects.event_id or "", event_type=effects.event_type,
            dossier_code=key.decode(), record=record.value or b"",
        )  # fmt: skip
        task.audit_heads[chain] = entry
        task.audit_pending.append((chain, entry))

    def _write_audit(self, task: Task) -> None:
        """The checkpoint's audit entries, in order, each chain's last one (its head, which
        the meta keeps) signed: only a holder of the key can extend a chain (hub/audit)."""
        if not task.audit_pending:
            return
        signer = self.signer
        if signer is not None:
            signed: dict[int, dict[str, Any]] = {}
            for chain, head in task.audit_heads.items():
                signed[id(head)] = task.audit_heads[chain] = signer.sign(head)
            pending = [(chain, signed.get(id(entry), entry)) for chain, entry in task.audit_pending]
        else:
            pending = task.audit_pending
        for chain, entry in pending:
            self._produce(
                self.audit_topic, encode_entry(entry), chain.encode(), partition=task.partition
            )

    def _clock(self, now: Any) -> None:
        """The deadline clock: only the dossiers whose next alert date has come."""
        today = local_date(now)
        ticked = 0
        for task in self.tasks.values():
            for key in task.due_keys(today):
                state = task.state(key)
                effects = self.processor.tick(state, now)
                if effects.outputs:
                    self._begin()
                    self._emit_outputs(effects)
                if effects.state is not None:
                    self._begin()
                    task.dirty[key] = effects.state
                    state = effects.state
                task.index_due(key, state, effects.next_alert if state else None)
                ticked += 1
        if not self._in_txn:
            for task in self.tasks.values():
                task.before.clear()
        if ticked:
            log.info("deadline clock: %d dossiers due", ticked)

    def _emit_outputs(self, effects: Effects) -> None:
        assert self.producer is not None
        labels = self._out_labels
        for out in effects.outputs:
            label = labels.get(out.topic)
            if label is None:  # a topic's first record from this worker
                if out.topic.startswith(self._inbox_prefix):
                    self.admin.ensure([out.topic])  # a transfer's agency inbox must exist
                label = labels[out.topic] = (_kind(out.topic), _output_type(out.topic, self.topics))
            self._produce(out.topic, out.value, out.key)
            self._out_counts[label] += 1

    # --- the checkpoint -----------------------------------------------------------------

    def _commit(self) -> bool:
        """Changelog, offsets, commit; then the stores. False when the transaction was
        aborted instead (everything since the last checkpoint is read again)."""
        assert self.producer is not None and self.consumer is not None
        started = time.monotonic()
        written: dict[int, dict[bytes, bytes | None]] = {}
        offsets: list[TopicPartition] = []
        try:
            for task in self.tasks.values():
                if not task.touched:
                    continue
                self._write_audit(task)
                raw_states: dict[bytes, bytes | None] = {}
                for key, state in task.dirty.items():
                    raw = encode_state(state)
                    raw_states[key] = raw
                    self._produce(
                        self.changelog, raw, key, partition=task.partition,
                        on_delivery=task.delivered,
                    )  # fmt: skip
                meta = task.meta.copy()
                meta.inputs.update(task.next_inputs)
                meta.audit_heads.update(task.audit_heads)
                self._produce(
                    self.changelog, meta.encode(), META_KEY, partition=task.partition,
                    on_delivery=task.delivered,
                )  # fmt: skip
                written[task.partition] = raw_states
                offsets.extend(
                    TopicPartition(topic, task.partition, offset)
                    for topic, offset in task.next_inputs.items()
                )
            producer = self.producer
            remaining = unwrapped(functools.partial(producer.flush, 30))
            if remaining:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "flush timed out"))
            if offsets:
                group = self.consumer.consumer_group_metadata()
                _within(
                    TXN_CALL_S + 5,
                    "send_offsets_to_transaction",
                    lambda: producer.send_offsets_to_transaction(offsets, group, TXN_CALL_S),
                )
            self._commit_transaction()
        except KafkaException as exc:
            self._abort(exc)
            return False
        self._in_txn = False
        self._next_producer()
        self.checkpoints += 1
        self._access_settled(None)
        changes: list[tuple[DossierState | None, DossierState]] = []
        for partition, raw_states in written.items():
            task = self.tasks[partition]
            meta = task.meta.copy()
            meta.inputs.update(task.next_inputs)
            meta.audit_heads.update(task.audit_heads)
            meta.changelog_next = task.changelog_last + 1
            task.store = self._durable_write(partition, raw_states, meta)
            task.meta = meta
            changes.extend((task.before.get(k), s) for k, s in task.dirty.items())
            task.forget_checkpoint()
        for task in self.tasks.values():
            task.before.clear()  # read-only lookups of this checkpoint: not kept
        if changes:
            self.view.replace(changes)
        metrics.CHECKPOINTS.labels("committed").inc()
        metrics.CHECKPOINT_SECONDS.observe(time.monotonic() - started)
        return True

    def _commit_transaction(self) -> None:
        """Commit, calling again while librdkafka says the commit is still under way.

        A commit that timed out with a retriable error (the coordinator's broker went away
        mid-commit) may already be decided: the coordinator wrote PREPARE_COMMIT and finishes
        it whatever we do. Aborting then (a new producer, back to the last checkpoint) read
        the same inputs again after the old transaction had committed their outputs: two
        status records delivered twice in one run of the coordinator-kill test. librdkafka's
        contract for a retriable error here is to call commit_transaction again."""
        assert self.producer is not None
        deadline = time.monotonic() + COMMIT_RETRY_S
        while True:
            try:
                self.producer.commit_transaction(TXN_CALL_S)
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                retry = (
                    isinstance(error, KafkaError)
                    and error.retriable()
                    and not error.fatal()
                    and not error.txn_requires_abort()
                    and time.monotonic() < deadline
                    and not self._stop.is_set()
                )
                if not retry:
                    raise
                log.warning("commit not finished yet (%s): calling it again", error)

    def _abort(self, exc: KafkaException) -> None:
        """Abort the open transaction and go back to the last checkpoint."""
        assert self.producer is not None and self.consumer is not None
        error = exc.args[0] if exc.args else None
        log.warning("checkpoint aborted: %s", exc)
        self.aborts += 1
        metrics.CHECKPOINTS.labels("aborted").inc()
        if isinstance(exc, ProducerStuck) or (isinstance(error, KafkaError) and error.fatal()):
            # e.g. the coordinator aborted a transaction that outlived its timeout (a broker
            # restart) and bumped our epoch, or a call of it never returned: that producer
            # is done; the new one fences it and the broker aborts its transaction
            self._new_producer()
        else:
            try:
                self.producer.abort_transaction(30)
            except KafkaException as again:
                log.warning("abort: %s", again)
                self._new_producer()
        self._in_txn = False
        self._access_settled(exc)
        for task in self.tasks.values():
            task.forget_checkpoint()
            self._rebuild_due(task)
        self._seek_to_committed()

    def _next_producer(self) -> None:
        """The next checkpoint's producer (see PRODUCER_SLOTS)."""
        if len(self._producers) > 1:
            self._slot = (self._slot + 1) % len(self._producers)
            self.producer = self._producers[self._slot]

    def _new_producer(self) -> None:
        """A new producer with the same transactional id: it fences the old one, and the
        broker aborts whatever the old one left open."""
        for attempt in range(1, 6):
            try:
                producer = self._make_producer(self._slot)
            except KafkaException as exc:
                log.warning("producer not ready (attempt %d): %s", attempt, exc)
                self._stop.wait(2.0 * attempt)
                continue
            if self._producers:
                self._producers[self._slot] = producer
            self.producer = producer
            log.info("producer re-created after a fatal error")
            return
        raise EngineError("the worker's transactional producer could not be re-created")

    def _seek_to_committed(self) -> None:
        assert self.consumer is not None
        for task in self.tasks.values():
            for topic in self.inputs:
                offset = task.meta.inputs.get(topic, OFFSET_BEGINNING)
                try:
                    self.consumer.seek(TopicPartition(topic, task.partition, offset))
                except KafkaException as exc:  # revoked meanwhile: the next owner reads it
                    log.info("seek %s[%s] to %s: %s", topic, task.partition, offset, exc)

    # --- rebalances ---------------------------------------------------------------------

    def _unhold(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Held feedback of partitions going away: their next owner reads from the
        committed offset; the pause must not outlive the assignment."""
        numbers = {tp.partition for tp in partitions}
        held = [TopicPartition(self.inputs[1], p) for p in numbers if self._gate.is_held(p)]
        if held:
            with contextlib.suppress(KafkaException):
                consumer.resume(held)
        self._gate.forget(numbers)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.ready.clear()
        if self._in_txn:
            self._commit()
        self._unhold(consumer, partitions)
        for tp in partitions:
            self.tasks.pop(tp.partition, None)
        if self.on_assigned is not None:
            self.on_assigned(frozenset(self.tasks))
        log.info("partitions revoked: %s", _names(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group expelled this member (e.g. it was frozen past its session): whatever
        it has not committed belongs to the next owner now."""
        self.ready.clear()
        if self._in_txn:
            assert self.producer is not None
            self.aborts += 1
            metrics.CHECKPOINTS.labels("aborted").inc()
            try:
                self.producer.abort_transaction(30)
            except KafkaException as exc:
                log.warning("abort after losing partitions: %s", exc)
            self._in_txn = False
            self._access_settled(LookupError("partitions lost before the read was recorded"))
        self._unhold(consumer, partitions)
        for tp in partitions:
            self.tasks.pop(tp.partition, None)
        log.warning("partitions lost: %s", _names(partitions))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Restore, then start each partition where its store says. A broker that does not
        answer meanwhile is asked again (up to ASSIGN_PATIENCE_S): an assignment half done
        would leave partitions consumed by nobody."""
        deadline = time.monotonic() + ASSIGN_PATIENCE_S
        while True:
            try:
                self._assign(consumer, partitions)
                return
            except KafkaException as exc:
                if self._stop.is_set() or time.monotonic() > deadline:
                    raise EngineError(f"assignment not restored: {exc}") from exc
                log.warning("assignment not restored yet (%s): trying again", exc)
                self.tasks.clear()
                # a fresh changelog reader: one that met a broker going away may keep
                # answering "unknown partition" from its metadata long after a new leader
                # took over (seen on the three-broker cluster)
                stale = self._restorers.pop("loop", None)
                if stale is not None:
                    with contextlib.suppress(KafkaException, RuntimeError):
                        stale.close()
                self._stop.wait(2.0)

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        started = time.monotonic()
        committed = {
            (tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=60)
        }
        numbers = sorted({tp.partition for tp in partitions})
        for partition in numbers:
            wanted = {
                topic: offset
                for (topic, p), offset in committed.items()
                if p == partition and offset >= 0
            }
            self.tasks[partition] = self._restore(partition, wanted)
        starts = []
        for tp in partitions:
            offset = self.tasks[tp.partition].meta.inputs.get(tp.topic, OFFSET_BEGINNING)
            starts.append(TopicPartition(tp.topic, tp.partition, offset))
        consumer.assign(starts)
        restored = time.monotonic()
        # The stores are current: dossier queries can be answered now (from the stores),
        # while the view and the due index are rebuilt from them, before any record moves on
        self.ready.set()
        if self.on_assigned is not None:
            self.on_assigned(frozenset(self.tasks))
        held = self.view.rebuild(self.reads_recorded(self._states_indexed()))
        self._next_clock = 0.0  # judge deadlines at once for what came in
        log.info(
            "partitions assigned: %s; stores ready in %.1fs, view and due index of %d "
            "dossiers in %.1fs more",
            _names(partitions), restored - started, held, time.monotonic() - restored,
        )  # fmt: skip

    def reads_recorded(self, states: Iterator[DossierState]) -> Iterator[DossierState]:
        """``states`` passed on as they are, checkpointing the personal-data reads asked for
        meanwhile (at most once per commit interval). The view and the due index are rebuilt
        here, on the engine's thread, after ``/ready``: a read of an applicant's data is
        answered only once its audit entry is committed, and it must not wait for the whole
        rebuild (about 1.7 s at 200,000 dossiers, linear in them)."""
        interval = self.settings.commit_interval_ms / 1000
        next_checkpoint = time.monotonic() + interval
        for count, state in enumerate(states, 1):
            yield state
            if count % 256 or not self._access or time.monotonic() < next_checkpoint:
                continue
            self._record_access()
            self._commit()  # no input moved: the audit entries and each task's meta only
            next_checkpoint = time.monotonic() + interval

    def _states_indexed(self) -> Iterator[DossierState]:
        """Every state held, decoded one at a time, each put in its task's due index."""
        for task in self.tasks.values():
            yield from self._indexed(task)

    def _rebuild_due(self, task: Task) -> None:
        for _ in self._indexed(task):
            pass

    def _indexed(self, task: Task) -> Iterator[DossierState]:
        """The task's states, decoded one at a time, its due index rebuilt from them."""
        task.due.clear()
        task.due_at.clear()
        for key, raw in task.store.states():
            state = decode_state(raw)
            if state is not None:
                task.index_due(key, state, self.processor.next_alert(state))
                yield state

    def _durable_write(
        self, partition: int, states: Mapping[bytes, bytes | None], meta: Meta
    ) -> PartitionStore:
        """Write a checkpoint's (or a restored batch's) states and meta to the partition's
        store, waiting while its disk is full: the work is committed in Kafka already, so
        nothing is lost by waiting, and nothing more is taken from Kafka meanwhile (this is
        the engine's thread, or the restorer's). ``/ready`` fails, one line says why, and
        the store is reopened every ``DISK_RETRY_S`` until the write goes through; then
        processing resumes by itself. Returns the store (a new handle after a reopen)."""
        while True:
            store: PartitionStore | None = None
            try:
                store = self._store(partition)
                store.write(states, meta)
            except DiskFullError as exc:
                if not self._disk_full:
                    self._disk_full = True
                    self._ready_before_disk_full = self.ready.is_set()
                    self.ready.clear()
                    metrics.DISK_FULL.set(1)
                    log.error(
                        "the disk of HUB_DATA_DIR is full (%s): processing stopped until "
                        "space is freed; what was committed is safe in Kafka, nothing is "
                        "lost; retrying every %.0f s", exc, DISK_RETRY_S,
                    )  # fmt: skip
                if self._stop.wait(DISK_RETRY_S):
                    raise
                self._stores.pop(partition, None)
                if store is not None:
                    store.close()  # RocksDB refuses writes on a handle that failed one
                continue
            if self._disk_full:
                self._disk_full = False
                metrics.DISK_FULL.set(0)
                if self._ready_before_disk_full:
                    self.ready.set()
                log.info("disk space is back on HUB_DATA_DIR: processing resumes")
            return store

    def _store(self, partition: int) -> PartitionStore:
        store = self._stores.get(partition)
        if store is None:
            store = open_store(
                self.settings.store, self.settings.data_dir, partition,
                write_buffer_mb=self.settings.rocksdb_write_buffer_mb,
                cache=self._block_cache,
            )  # fmt: skip
            self._stores[partition] = store
        return store

    def _restore(self, partition: int, committed: dict[str, int]) -> Task:
        """The store of ``partition`` brought up to the changelog's last committed
        checkpoint, which must be the group's committed offsets."""
        with self._lock(partition):  # not while a standby replay of it runs
            store = self._store(partition)
            return self._restore_locked(store, partition, committed)

    def _restore_locked(
        self, store: PartitionStore, partition: int, committed: dict[str, int]
    ) -> Task:
        deadline = time.monotonic() + RESTORE_PATIENCE_S
        restored = 0
        while True:
            restored += self._replay(store, partition, self._loop_restorer())
            meta = store.meta()
            behind = {t: o for t, o in committed.items() if meta.inputs.get(t, -1) < o}
            if not behind:
                break
            if time.monotonic() > deadline:
                if not meta.inputs and meta.changelog_next == 0:
                    raise EngineError(
                        f"the consumer group {self.settings.app_id} has committed input "
                        f"offsets {committed} for partition {partition}, but the changelog "
                        f"{self.changelog} has no checkpoint: the group was run by the faust "
                        "engine of earlier releases, or the changelog was deleted. Start the "
                        "workers with a new HUB_APP_ID: they rebuild every dossier from the "
                        "input topics"
                    )
                raise EngineError(
                    f"partition {partition}: the changelog ends at input offsets "
                    f"{meta.inputs} but the group committed {committed}"
                )
            time.sleep(0.2)  # a transaction's markers still being written: read again
        ahead = {t: o for t, o in meta.inputs.items() if committed.get(t, -1) < o}
        if ahead:
            # only an operator's offset reset does this: the states say what was applied
            log.warning(
                "partition %s: the store has applied up to %s, beyond the group's committed "
                "offsets %s; reading on from the store's", partition, meta.inputs, committed,
            )  # fmt: skip
        if restored:
            metrics.RESTORED.inc(restored)
            log.info("partition %s: %d changelog records restored", partition, restored)
        return Task(partition, store, meta)

    def _loop_restorer(self) -> Consumer:
        """The loop thread's changelog reader, made once (a new client per partition and
        rebalance cost about half a second each)."""
        if self._restorers.get("loop") is None:
            self._restorers["loop"] = Consumer(self._restore_config)
        return self._restorers["loop"]

    def _standby_restorer(self) -> Consumer:
        if self._restorers.get("standby") is None:
            self._restorers["standby"] = Consumer(self._restore_config)
        return self._restorers["standby"]

    def _replay(self, store: PartitionStore, partition: int, restorer: Consumer) -> int:
        """Changelog records of ``partition`` from the store's changelog offset to the last
        stable offset, written a fetched batch at a time."""
        meta = store.meta()
        try:
            tp = TopicPartition(self.changelog, partition)
            low, end = restorer.get_watermark_offsets(tp, timeout=30, cached=False)
            start = meta.changelog_next
            if start > end:
                log.warning(
                    "partition %s: the store is ahead of the changelog (%s > %s): "
                    "restoring it from scratch", partition, start, end,
                )  # fmt: skip
                store = self._durable_write(
                    partition, {key: None for key, _ in store.states()}, Meta()
                )
                meta, start = Meta(), 0
            start = max(start, low)
            if start >= end:
                return 0
            restorer.assign([TopicPartition(self.changelog, partition, start)])
            count = 0
            progress = time.monotonic()
            while True:
                batch = fetch_batch(restorer, 10_000, 1.0)
                if batch:
                    progress = time.monotonic()
                elif time.monotonic() - progress > 30:
                    raise KafkaException(
                        KafkaError(
                            KafkaError._TIMED_OUT,
                            f"changelog partition {partition}: nothing read for 30 s before "
                            f"its end ({end})",
                        )
                    )
                states: dict[bytes, bytes | None] = {}
                at_end = False
                for record in batch:
                    error = record.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            at_end = True
                            continue
                        raise KafkaException(error)
                    key = record.key()
                    if key == META_KEY:
                        decoded = Meta.decode(record.value())
                        meta.inputs, meta.audit_heads = decoded.inputs, decoded.audit_heads
                    elif key is not None:
                        states[key] = record.value()
                    meta.changelog_next = cast(int, record.offset()) + 1
                    count += 1
                if batch:
                    store = self._durable_write(partition, states, meta)
                position = restorer.position([tp])[0].offset
                if at_end or (position is not None and position >= end):
                    meta.changelog_next = max(meta.changelog_next, end)
                    self._durable_write(partition, {}, meta)
                    return count
        finally:
            restorer.unassign()

    def _flush_metrics(self) -> None:
        if self._counts:
            for (topic, event_type, outcome), n in self._counts.items():
                metrics.EVENTS_IN.labels(topic, event_type, outcome).inc(n)
            self._counts.clear()
        if self._out_counts:
            for (kind, event_type), n in self._out_counts.items():
                metrics.EVENTS_OUT.labels(kind, event_type).inc(n)
            self._out_counts.clear()
        if self._latencies:
            for lag in self._latencies:
                metrics.EVENT_LATENCY.observe(lag)
            self._latencies.clear()


def _headers(headers: list[tuple[str, bytes]] | None) -> Any:
    return headers or None


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "none"


def _kind(topic: str) -> str:
    for kind in ("dossier.status", "portal.outbox", "dossier.alerts", "agency.inbox", "hub.audit"):
        if kind in topic:
            return kind
    return "other"


def _output_type(topic: str, topics: Topics) -> str:
    return "DossierAlert" if topic == topics.alerts else "DossierStatusChanged"
