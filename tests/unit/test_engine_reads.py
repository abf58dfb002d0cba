"""A personal-data read asked for while a worker rebuilds its view after a rebalance is
recorded (its audit entry committed) before the rebuild ends, not after it: the engine's
real checkpoint code, with a producer that accepts everything in place of the broker."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future
from datetime import date
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Consumer

from hub.audit.chain import access_chain
from hub.contract.event_types import DossierEventType as E
from hub.domain.lifecycle import DossierState
from hub.engine.loop import CheckpointLoop, Task, ViewSink
from hub.engine.store import MemoryStore, Meta
from hub.settings import HubSettings
from hub.worker.processor import Processor, encode_state
from tests.unit.test_lifecycle import applied, make_event

DOSSIERS = 20_000


class _Delivered:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


class _Producer:
    """A transactional producer that accepts every call; what it was given is kept."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None]] = []
        self.commits = 0
        self._callbacks: list[Any] = []

    def begin_transaction(self) -> None:
        pass

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None:
        self.records.append((topic, key))
        if kwargs.get("on_delivery") is not None:
            self._callbacks.append(kwargs["on_delivery"])

    def flush(self, timeout: float = 0) -> int:
        for offset, callback in enumerate(self._callbacks):
            callback(None, _Delivered(offset))
        self._callbacks.clear()
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0

    def send_offsets_to_transaction(self, *args: Any) -> None:
        raise AssertionError("no input offset moves while the view is rebuilt")

    def commit_transaction(self, timeout: float = 0) -> None:
        self.commits += 1


class _NoAlerts:
    def next_alert(self, state: DossierState) -> date | None:
        return None


class _ReadingView(ViewSink):
    """Asks for one read after the first state, then notes how many states it had taken
    when the read's audit entry was committed."""

    def __init__(self) -> None:
        self.engine: CheckpointLoop | None = None
        self.read: Future[None] | None = None
        self.recorded_after: int | None = None

    def rebuild(self, states: Iterable[DossierState]) -> int:
        assert self.engine is not None
        count = 0
        for _ in states:
            count += 1
            if self.read is None:
                self.read = self.engine.log_access(
                    0, who="can-bo-1", role="officer", dossier_code="D1", at="2026-12-06"
                )
            elif self.recorded_after is None and self.read.done():
                self.recorded_after = count
        return count


def test_a_read_during_the_view_rebuild_is_recorded_before_the_rebuild_ends(
    tmp_path: Path,
) -> None:
    settings = HubSettings(data_dir=tmp_path, store="memory", commit_interval_ms=1)
    view = _ReadingView()
    engine = CheckpointLoop(settings, cast(Processor, _NoAlerts()), view=view)
    view.engine = engine
    producer = _Producer()
    engine.producer = producer  # type: ignore[assignment]
    engine.consumer = cast(Consumer, object())  # asked for nothing: no offsets to send
    raw = encode_state(applied(None, make_event(E.SUBMITTED)))
    store = MemoryStore()
    store.write({b"D%06d" % i: raw for i in range(DOSSIERS)}, Meta())
    engine.tasks = {0: Task(0, store, Meta())}

    held = view.rebuild(engine.reads_recorded(engine._states_indexed()))

    assert held == DOSSIERS
    assert view.read is not None and view.read.done() and view.read.exception() is None
    assert view.recorded_after is not None and view.recorded_after < DOSSIERS
    assert producer.commits >= 1
    assert (engine.audit_topic, access_chain(0).encode()) in producer.records
