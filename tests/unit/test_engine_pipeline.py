"""A checkpoint is committed on the committer's thread while the next one is applied: the
engine's real checkpoint code, with producers standing in for the broker that log what they
are asked to do and can hold or refuse a commit."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException

from hub.contract.event_types import DossierEventType as E
from hub.domain.lifecycle import DossierState
from hub.engine.loop import CheckpointLoop
from hub.engine.store import MemoryStore, Meta
from hub.engine.task import Task
from hub.settings import HubSettings
from hub.worker.processor import Effects, Processor, decode_state
from tests.unit.test_lifecycle import applied, make_event

TOPIC = "dossier.events"
_CHANGELOG_OFFSETS = itertools.count()  # one changelog partition, whichever producer writes
SUBMITTED = applied(None, make_event(E.SUBMITTED))


class _Delivered:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


class _Producer:
    """A transactional producer logging its calls into a log shared with the others; its
    commit waits for ``release`` and raises ``refuse`` if given."""

    def __init__(
        self,
        name: str,
        log: list[tuple[str, str]],
        *,
        release: threading.Event | None = None,
        refuse: KafkaException | None = None,
    ) -> None:
        self.name, self.log = name, log
        self.release, self.refuse = release, refuse
        self.aborts = 0
        self._callbacks: list[Any] = []

    def begin_transaction(self) -> None:
        self.log.append((self.name, "begin"))

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None:
        self.log.append((self.name, f"produce {topic}"))
        if kwargs.get("on_delivery") is not None:
            self._callbacks.append(kwargs["on_delivery"])

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        for callback in self._callbacks:
            callback(None, _Delivered(next(_CHANGELOG_OFFSETS)))
        self._callbacks.clear()
        return 0

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self.log.append((self.name, "offsets"))

    def commit_transaction(self, timeout: float = 0) -> None:
        if self.release is not None:
            assert self.release.wait(10), "the test never let the commit through"
        if self.refuse is not None:
            raise self.refuse
        self.log.append((self.name, "commit"))

    def abort_transaction(self, timeout: float = 0) -> None:
        self.aborts += 1
        self.log.append((self.name, "abort"))


class _Consumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []

    def consumer_group_metadata(self) -> object:
        return object()

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


class _Counting:
    """Each record applied adds one supplement request to the dossier's state: its count
    says how many of the dossier's records the state it was given had seen."""

    def handle(self, *, state: DossierState | None, **_: Any) -> Effects:
        seen = 0 if state is None else state.supplement_requests
        after = msgspec.structs.replace(SUBMITTED, supplement_requests=seen + 1)
        return Effects("applied", state=after, event_type="DossierSubmitted", event_id="e")

    def next_alert(self, state: DossierState) -> None:
        return None


class _Message:
    def __init__(self, offset: int, key: bytes) -> None:
        self._offset, self._key = offset, key

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return b"record"

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_765_000_000_000)


def _engine(tmp_path: Path, *producers: _Producer) -> tuple[CheckpointLoop, MemoryStore, _Consumer]:
    settings = HubSettings(data_dir=tmp_path, store="memory", topic_prefix="")
    engine = CheckpointLoop(settings, cast(Processor, _Counting()))
    engine._producers = list(producers)  # type: ignore[arg-type]
    engine.producer = engine._producers[0]
    consumer = _Consumer()
    engine.consumer = cast(Consumer, consumer)
    store = MemoryStore()
    engine.tasks = {0: Task(0, store, Meta())}
    engine._stores = {0: store}
    return engine, store, consumer


NOW = datetime(2026, 12, 6, tzinfo=UTC)


def test_the_next_checkpoint_is_applied_while_the_last_one_commits(tmp_path: Path) -> None:
    log: list[tuple[str, str]] = []
    release = threading.Event()
    engine, store, _ = _engine(
        tmp_path, _Producer("p0", log, release=release), _Producer("p1", log)
    )

    engine._process(_Message(0, b"D1"), NOW)  # type: ignore[arg-type]
    assert engine._commit()  # sealed: its commit waits on the committer's thread
    engine._process(_Message(1, b"D1"), NOW)  # type: ignore[arg-type]

    assert ("p0", "commit") not in log
    assert ("p1", "begin") in log  # the next checkpoint is open on the other producer
    assert store.get(b"D1") is None  # the store holds committed checkpoints only
    assert engine.tasks[0].state(b"D1").supplement_requests == 2  # type: ignore[union-attr]

    release.set()
    assert engine._commit(wait=True)
    stored = decode_state(store.get(b"D1"))
    assert stored is not None and stored.supplement_requests == 2  # read through the sealed one
    assert store.meta().inputs == {TOPIC: 2}
    assert engine.checkpoints == 2
    # The last checkpoint's changelog went out only after the one before committed, so a
    # store's changelog offset never passes a record of a later checkpoint
    first_of_p1_changelog = log.index(("p1", f"produce {engine.changelog}"))
    assert log.index(("p0", "commit")) < first_of_p1_changelog


def test_a_refused_commit_aborts_the_checkpoint_built_on_it(tmp_path: Path) -> None:
    log: list[tuple[str, str]] = []
    refused = KafkaException(
        KafkaError(KafkaError._STATE, "commit refused", txn_requires_abort=True)
    )
    first, second = _Producer("p0", log, refuse=refused), _Producer("p1", log)
    engine, store, consumer = _engine(tmp_path, first, second)

    engine._process(_Message(0, b"D1"), NOW)  # type: ignore[arg-type]
    assert engine._commit()
    engine._process(_Message(1, b"D1"), NOW)  # type: ignore[arg-type]
    engine._process(_Message(2, b"D2"), NOW)  # type: ignore[arg-type]

    assert not engine._commit()  # settling the first finds it refused

    assert (first.aborts, second.aborts) == (1, 1)
    assert engine.aborts == 1 and engine.checkpoints == 0
    assert store.get(b"D1") is None and store.get(b"D2") is None
    task = engine.tasks[0]
    assert task.sealed is None and not task.dirty and not task.touched
    assert task.state(b"D1") is None  # nothing of either checkpoint is kept
    assert (TOPIC, 0, OFFSET_BEGINNING) in consumer.seeks  # read again from the last commit


def test_a_task_reads_through_its_sealed_checkpoint(tmp_path: Path) -> None:
    store = MemoryStore()
    task = Task(0, store, Meta())
    task.dirty[b"D1"] = SUBMITTED
    task.audit_heads["chain"] = {"seq": 1}
    sealed = task.seal({b"D1": b"raw"})

    assert task.state(b"D1") is SUBMITTED and task.audit_head("chain") == {"seq": 1}
    assert not task.touched  # the open checkpoint starts empty
    task.forget_checkpoint()
    assert task.sealed is None and task.state(b"D2") is None
    assert sealed.changes() == [(None, SUBMITTED)]
