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

Two more rules put the consumer where the state says, instead of waiting for a record to show
the gap (a partition's last records may be the ones missing, and then none comes):

* after every rebalance, once faust has seeked to the committed offsets, each assigned input
  partition is placed by :func:`start_offset`. faust (0.15) drops records it fetched for a
  partition while that partition was not yet active (during table recovery) and moves on past
  them; it seeks back only partitions that have a committed offset, so a sparse partition
  with none yet lost them for good (seen in the rebalance storm: a feedback partition's 14
  ratings, consumed, never delivered, never committed);
* a watchdog (:meth:`PartitionOrder.quiet`): a partition without progress for a while whose
  consumer position is past its next offset has records that were fetched and never applied:
  it is sought back too.

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


def start_offset(
    stored_next: int | None, committed: int | None, log_start: int | None
) -> int | None:
    """Where a newly assigned input partition must be read from, or None to leave it where
    faust put it (its committed offset).

    * a committed offset at or below the stored next offset: stay (the records in between
      are judged DONE and acknowledged, so commits keep moving);
    * a committed offset above it: the stored state is behind what was committed; go back
      and apply what it misses;
    * no committed offset: the stored next offset, else (nothing applied yet) the log's start;
      never where an earlier fetch happened to leave the consumer."""
    if committed is not None:
        return stored_next if stored_next is not None and stored_next < committed else None
    return stored_next if stored_next is not None else log_start


class PartitionOrder:
    """Judges records against the stored next offsets; remembers the seeks it asked for and
    when each partition last made progress."""

    def __init__(self, reseek_after_s: float = 1.0, quiet_after_s: float = 5.0) -> None:
        self.reseek_after_s = reseek_after_s
        self.quiet_after_s = quiet_after_s
        # (topic, partition) -> (the next offset sought, when the seek was asked for)
        self._sought: dict[tuple[str, int], tuple[int, float]] = {}
        # (topic, partition) -> when a record of it was last applied or found applied before
        self._progress: dict[tuple[str, int], float] = {}

    def judge(
        self, topic: str, partition: int, offset: int, next_offset: int | None, now: float
    ) -> Verdict:
        """The verdict for a record, given its partition's next offset (the stored one, or the
        broker's log start if nothing was applied from the partition yet; None: unknown, the
        record is taken as where the partition starts) and the time ``now`` (monotonic s)."""
        tp = (topic, partition)
        if next_offset is None or offset == next_offset:
            self._sought.pop(tp, None)
            self._progress[tp] = now
            return Verdict.APPLY
        if offset < next_offset:
            self._progress[tp] = now
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
        self._progress.pop((topic, partition), None)

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

    def quiet(self, partitions: list[tuple[str, int]], now: float) -> list[tuple[str, int]]:
        """Of ``partitions`` (the assigned inputs), those without progress for
        ``quiet_after_s``: worth a look at where their consumer stands. A partition first
        seen here counts from now; one returned counts from now again (one look per period).
        """
        quiet = []
        for tp in partitions:
            since = self._progress.setdefault(tp, now)
            if now - since >= self.quiet_after_s:
                quiet.append(tp)
                self._progress[tp] = now
        return quiet

    def forget(self) -> None:
        """After a rebalance: the seeks asked for are void (faust seeks every partition), and
        progress counts afresh for the new assignment."""
        self._sought.clear()
        self._progress.clear()
