"""The checkpoint engine's own per-record code, without a broker: what ``bench.profile``'s
``engine path`` line times.

``bench.profile``'s per-event path drives ``Processor.handle`` with the state codec and the
view around it, as the issue defines it. The worker runs more per record: the engine wraps
the consumed message, writes the audit chain's entry, keeps the due index (the next alert
date of each changed dossier), counts outcomes, hands every output to the producer and, at
the checkpoint, encodes each changed state and the task's meta and writes the store. This
module runs the real ``CheckpointLoop`` over pre-encoded records with a producer and a
consumer that accept every call and send nothing, so the figure is the engine's Python CPU
path per record; what librdkafka costs on top (copying records into its queues, the network)
is measured end to end by ``bench.run``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.events import EncodedEvent
from hub.domain.lifecycle import DossierState
from hub.engine.loop import CheckpointLoop, Task, ViewSink
from hub.engine.store import MemoryStore, Meta
from hub.settings import HubSettings
from hub.worker.figures import LocalView
from hub.worker.processor import Processor

__all__ = ["EnginePath"]


class NullProducer:
    """Accepts what the engine's transactional producer is asked to do; sends nothing.
    Delivery callbacks are called at ``flush``, as librdkafka would (offsets counted up)."""

    def __init__(self) -> None:
        self.records = 0
        self._pending: list[tuple[Callable[[Any, Any], None], str, int]] = []
        self._offsets: dict[tuple[str, int], int] = {}

    def begin_transaction(self) -> None:
        pass

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None:
        self.records += 1
        callback = kwargs.get("on_delivery")
        if callback is not None:
            self._pending.append((callback, topic, int(kwargs.get("partition") or 0)))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        for callback, topic, partition in self._pending:
            offset = self._offsets.get((topic, partition), 0)
            self._offsets[(topic, partition)] = offset + 1
            callback(None, _Delivered(offset))
        self._pending.clear()
        return 0

    def send_offsets_to_transaction(self, *args: Any) -> None:
        pass

    def commit_transaction(self, timeout: float = 0) -> None:
        pass


class _Delivered:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


class _KnownTopics:
    """Every topic exists (the engine creates an agency's inbox before its first record)."""

    def ensure(self, names: Iterable[str], **kwargs: Any) -> None:
        pass


class _NullConsumer:
    def consumer_group_metadata(self) -> object:
        return object()


class FakeMessage:
    """What ``confluent_kafka.Consumer.consume`` returns, for one pre-encoded record."""

    __slots__ = ("_headers", "_key", "_offset", "_partition", "_topic", "_value")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value, self._headers = key, value, headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)

    def error(self) -> None:
        return None


class _ViewNow(ViewSink):
    """The view updated in this thread (the worker posts it to its event loop: same work)."""

    def __init__(self, view: LocalView) -> None:
        self.view = view

    def replace(self, changes: list[tuple[DossierState | None, DossierState]]) -> None:
        for before, after in changes:
            self.view.replace(before, after)


class EnginePath:
    """One engine, one task (partition 0) on a memory store, checkpoints every ``batch``."""

    def __init__(self, processor: Processor, topic: str, batch: int = 2000) -> None:
        self.processor = processor
        self.topic = topic
        self.batch = batch
        self._dir = tempfile.TemporaryDirectory(prefix="hub-bench-engine-")
        # A memory store, as documented: the checkpoint writes through the engine's own
        # store lookup, which with the default (RocksDB) would reopen the same directory
        # at every reset and find the previous run's states (every event a duplicate).
        self.settings = HubSettings(
            topic_prefix=processor.settings.topic_prefix,
            data_dir=Path(self._dir.name),
            store="memory",
        )
        calendar = processor.reference.calendar
        self.view = LocalView(calendar, self.settings.late_if_repeated_supplement)
        self.loop = self._fresh_loop()

    def _fresh_loop(self) -> CheckpointLoop:
        self.view = LocalView(self.view.calendar, self.view.late_if_repeated_supplement)
        loop = CheckpointLoop(self.settings, self.processor, view=_ViewNow(self.view))
        loop.producer = NullProducer()  # type: ignore[assignment]
        loop.consumer = _NullConsumer()  # type: ignore[assignment]
        loop.admin = _KnownTopics()  # type: ignore[assignment]
        loop.tasks = {0: Task(0, MemoryStore(), Meta())}
        return loop

    def reset(self) -> None:
        self.loop = self._fresh_loop()

    def messages(self, events: Iterable[EncodedEvent]) -> list[FakeMessage]:
        return [
            FakeMessage(
                self.topic, 0, offset, ev.key, ev.value, [("event-type", ev.event_type.encode())]
            )
            for offset, ev in enumerate(events)
        ]

    def run(self, messages: list[FakeMessage], now: datetime) -> dict[str, int]:
        """Every message through the engine's per-record code, a checkpoint every
        ``batch`` records and one at the end; the outcomes the engine counted."""
        loop = self.loop
        process = loop._process  # the engine's own per-record step (this is its benchmark)
        commit = loop._commit
        for i, message in enumerate(messages, 1):
            process(message, now)  # type: ignore[arg-type]
            if i % self.batch == 0:
                assert commit(), "a checkpoint with a null producer cannot abort"
        if loop._in_txn:
            assert commit(), "a checkpoint with a null producer cannot abort"
        outcomes: dict[str, int] = {}
        for (_, _, outcome), count in loop._counts.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
        loop._counts.clear()
        loop._latencies.clear()
        return outcomes
