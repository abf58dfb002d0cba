"""Which input records to apply: each partition's records once, in offset order, no gaps.

The worker stores, with the dossier states and in the same changelog partition, the next
offset it has to apply for every input partition (``next_offset_key``). A record is judged
against it, not against what the consumer group believes:

* below it: applied before (a replay after a crash or a rebalance): acknowledge, skip;
* equal: the next record: apply;
* above it: a record in between was never applied. The consumer's position is ahead of the
  state, which a rebalance can cause (faust seeks to the committed offset only after table
  recovery, and it may commit offsets of records it skipped). The worker seeks the partition
  back to the next offset and holds what arrives until that record comes; while it does not
  come, it seeks again (faust may have seeked elsewhere since). Only the broker can say that
  offsets are gone for good (deleted by retention: the log starts after them); the caller
  asks it before seeking, and crosses such a gap.

This module is the rule only, without Kafka: ``hub.worker.app`` does the seeking.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

#: the table keys holding next offsets start with this byte, which no dossier code has
INTERNAL_KEY_PREFIX = b"\x00"


def next_offset_key(topic: str, partition: int) -> bytes:
    return INTERNAL_KEY_PREFIX + f"next-offset:{topic}:{partition}".encode()


def is_internal_key(key: bytes | None) -> bool:
    return key is not None and key.startswith(INTERNAL_KEY_PREFIX)


class Verdict(Enum):
    APPLY = "apply"  # the next record of its partition
    DONE = "done"  # applied before: acknowledge, do not apply again
    SEEK = "seek"  # a gap before it: seek the partition back to the next offset, hold it
    HOLD = "hold"  # a seek back is under way: neither apply nor acknowledge


@dataclass(frozen=True)
class Gap:
    """Offsets ``first`` to ``last`` (inclusive) that a partition no longer has."""

    topic: str
    partition: int
    first: int
    last: int


class PartitionOrder:
    """Judges records against the stored next offsets; remembers the seeks it asked for."""

    def __init__(self, reseek_after_s: float = 1.0) -> None:
        self.reseek_after_s = reseek_after_s
        # (topic, partition) -> (the next offset sought, when the seek was asked for)
        self._sought: dict[tuple[str, int], tuple[int, float]] = {}

    def judge(
        self, topic: str, partition: int, offset: int, next_offset: int | None, now: float
    ) -> Verdict:
        """The verdict for a record, given its partition's next offset (the stored one, or the
        broker's log start if nothing was applied from the partition yet; None: unknown, the
        record is taken as where the partition starts) and the time ``now`` (monotonic s)."""
        tp = (topic, partition)
        if next_offset is None or offset == next_offset:
            self._sought.pop(tp, None)
            return Verdict.APPLY
        if offset < next_offset:
            return Verdict.DONE
        sought = self._sought.get(tp)
        if sought is None or sought[0] != next_offset or now - sought[1] >= self.reseek_after_s:
            self._sought[tp] = (next_offset, now)
            return Verdict.SEEK
        return Verdict.HOLD

    def expect(self, topic: str, partition: int, next_offset: int, now: float) -> None:
        """A record of the partition was dropped unseen (fetched before a rebalance): unless
        the next offset is applied within ``reseek_after_s``, :meth:`overdue` asks for a seek
        back to it. The rebalance's own seek usually makes this unnecessary, but a fetch that
        began before the revocation may return records from after that seek."""
        tp = (topic, partition)
        if self._sought.get(tp, (None, 0.0))[0] != next_offset:
            self._sought[tp] = (next_offset, now)

    def drop(self, topic: str, partition: int) -> None:
        """No more seeks for this partition (it is not assigned here)."""
        self._sought.pop((topic, partition), None)

    @staticmethod
    def gap(topic: str, partition: int, next_offset: int, log_start: int | None) -> Gap | None:
        """The offsets from ``next_offset`` on that the broker deleted, if its log for the
        partition now starts after them."""
        if log_start is None or log_start <= next_offset:
            return None
        return Gap(topic, partition, next_offset, log_start - 1)

    def overdue(self, now: float) -> list[tuple[str, int, int]]:
        """Seeks asked for at least ``reseek_after_s`` ago whose record has not come yet, as
        (topic, partition, next offset): to ask again even if nothing else arrives (the
        partition's last records may all have been held)."""
        late = [
            (topic, partition, wanted)
            for (topic, partition), (wanted, asked) in self._sought.items()
            if now - asked >= self.reseek_after_s
        ]
        for topic, partition, wanted in late:
            self._sought[(topic, partition)] = (wanted, now)
        return late

    def forget(self) -> None:
        """After a rebalance: the seeks asked for are void (faust seeks every partition)."""
        self._sought.clear()
