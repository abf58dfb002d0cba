"""Feedback that reaches a worker before its dossier: held, not dead-lettered.

A worker reads two topics per partition: ``dossier.events[p]`` and ``feedback.events[p]``.
Kafka orders each partition, not the two together. A rating is sent after its dossier's
events were acknowledged (a portal rates a result the hub published), yet a worker can
read it first: while ``dossier.events[p]``'s leader is down (a broker killed: its
partitions wait for a new leader) ``feedback.events[p]`` on another broker goes on. Applied
then, the rating finds no dossier and is dead-lettered as ``unknown_dossier``, though its
dossier's events are in Kafka, only not read yet.

So feedback for a dossier the worker does not hold waits while the dossier partition may
still bring it (Kafka Streams' ``max.task.idle.ms`` idea, asked only when it matters):

* the dossier partition has already given a record stamped at or after the feedback's
  time: what came before the feedback has been read; the dossier is truly unknown;
* or its current end (asked of its leader, not cached) is where the worker has read up to;
* or the feedback has waited ``wait_s``: a partition whose end cannot be known (no leader)
  or never quite reached (a transaction marker is the partition's last offset) does not
  hold it for ever.

While one record waits, its partition of feedback waits behind it (order within a
partition holds). Records known to the worker's dossiers are never held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FeedbackGate", "Held"]


@dataclass
class Held:
    """The first record of a feedback partition that waits."""

    offset: int
    timestamp: int | None  # ms since the epoch
    since: float  # monotonic seconds
    next_check: float


class FeedbackGate:
    def __init__(self, wait_s: float, check_every_s: float = 0.5) -> None:
        self.wait_s = wait_s
        self.check_every_s = check_every_s
        #: partition -> the newest timestamp read from dossier.events[p]
        self.dossier_time: dict[int, int] = {}
        #: partition -> the feedback record that waits
        self.held: dict[int, Held] = {}

    def dossier_read(self, partition: int, timestamp: int | None) -> None:
        if timestamp is not None and timestamp > self.dossier_time.get(partition, -1):
            self.dossier_time[partition] = timestamp

    def is_held(self, partition: int) -> bool:
        return partition in self.held

    def must_wait(
        self, partition: int, timestamp: int | None, caught_up: Callable[[], bool]
    ) -> bool:
        """Whether feedback stamped ``timestamp`` for an unknown dossier must wait.
        ``caught_up``: whether the worker has read dossier.events[p] to its current end
        (a call to the partition's leader, made only when the timestamps cannot tell)."""
        if self._read_past(partition, timestamp):
            return False
        return not caught_up()

    def hold(self, partition: int, offset: int, timestamp: int | None, now: float) -> None:
        self.held[partition] = Held(offset, timestamp, now, now + self.check_every_s)

    def release(self, now: float, caught_up: Callable[[int], bool]) -> list[tuple[int, int]]:
        """The held partitions that may go on, each with the offset to read from again;
        ``caught_up(partition)`` as in :meth:`must_wait`, asked at most every
        ``check_every_s`` per partition."""
        released = []
        for partition, held in list(self.held.items()):
            go = self._read_past(partition, held.timestamp) or now - held.since >= self.wait_s
            if not go and now >= held.next_check:
                held.next_check = now + self.check_every_s
                go = caught_up(partition)
            if go:
                del self.held[partition]
                released.append((partition, held.offset))
        return released

    def forget(self, partitions: set[int] | None = None) -> None:
        """Partitions revoked (None: all): their next owner reads from the committed offset."""
        for partition in list(self.held) if partitions is None else partitions:
            self.held.pop(partition, None)
            self.dossier_time.pop(partition, None)

    def _read_past(self, partition: int, timestamp: int | None) -> bool:
        newest = self.dossier_time.get(partition)
        return newest is not None and timestamp is not None and newest >= timestamp
