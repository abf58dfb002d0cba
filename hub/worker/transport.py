"""faust's Kafka consumer, with rules added: no acknowledgement, and so no commit, for a
record that was not processed or was fetched before a rebalance; every input partition placed
where the state says when a rebalance ends; no record from before a seek delivered after it.

Why: on a rebalance faust forgets each partition's committed offset until the new assignment
is seeked, and meanwhile still accepts acknowledgements: for the records its streams *skip*
(delivered while the flow is suspended, or of an older generation) and for records a stream
finishes after the revocation. It also counts as processed every offset it did not see when
a delivery jumps ahead ("gaps"). All of these offsets then count as processed, and the next
commit can move a partition past records that nobody applied. Under a rebalance storm that
lost committed events (``tests/integration/test_faults.py``).

So skipped records are refused, gaps are not filled, and every record is tagged with the
consumer's *epoch* when its fetch began (faust tags records with a generation only when it
converts them, which may be after the rebalance); the epoch moves on at each revocation and
at stop. A stale record is not acknowledged, and the agent (``hub.worker.app``) neither
applies nor stores it; the seek that follows every rebalance fetches it again. Between a
revocation and that seek nothing is current (faust may deliver input records while its tables
still recover), and once faust has seeked to the committed offsets the app places each input
partition where its stored state says (:attr:`HubApp.place_partitions`); everything fetched
until then is stale. After a seek, records of that partition fetched before it are not
delivered until the sought offset comes (faust would otherwise count their offsets as read
and drop the records the seek fetches again). That records are applied in order and without
gaps whatever the consumer's position is, is ``hub.worker.order``'s job. (faust still
commits across a single missing offset, which covers transaction markers; a compacted input
topic's larger gaps would hold its commits back, not its processing.)
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import faust
from faust import streams as faust_streams
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.transports import ConsumerT, TransportT


class HubConsumer(faust_aiokafka.Consumer):
    """The aiokafka consumer of faust: records fetched before a revocation or a stop are
    stale, never acknowledged, and stored by nobody (see the module's docstring)."""

    #: moves on at every revocation and stop: records fetched in an older epoch are stale
    epoch: int = 0
    #: False from a revocation until the seek that ends the rebalance: the tables may still
    #: be recovering, so no record is applied (the agent checks it)
    settled: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fetched_in: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._returned_in = 0  # the epoch when the last fetch began
        self._seeks: dict[TP, int] = {}  # partition -> seeks through :meth:`seek` so far
        self._seeks_at_fetch: dict[TP, int] = {}  # ... when the last fetch began
        self._sought_to: dict[TP, int] = {}  # partition -> offset sought, until it comes
        self._assigned = False  # partitions assigned since the last revocation
        self._recovered = False  # ... and the tables recovered for them

    def give_up_fetched(self) -> None:
        """Everything fetched so far is stale from now on."""
        self.epoch += 1

    def is_stale(self, message: Any) -> bool:
        """True when ``message`` was fetched before the partitions were last revoked, placed
        or the worker began to stop: its partition may belong to another worker now, or the
        consumer has been moved since."""
        fetched = self._fetched_in.get(message)
        return fetched is not None and fetched != self.epoch

    async def _wait_next_records(self, timeout: float) -> Any:  # noqa: ASYNC109 (faust's)
        # The epoch when the fetch *began*: a revocation while it waited makes what it
        # returns stale (faust converts records lazily, later still). Not before a suspended
        # flow resumes, though: that wait spans the whole rebalance and its seek.
        if not self.flow_active:
            await self.wait(self.can_resume_flow)  # type: ignore[arg-type]
        epoch, seeks = self.epoch, dict(self._seeks)
        records = await super()._wait_next_records(timeout)
        self._returned_in, self._seeks_at_fetch = epoch, seeks
        return records

    async def getmany(self, timeout: float) -> Any:  # noqa: ASYNC109 (faust's)
        # After a seek, records of the partition from before it are not delivered at all:
        # faust would take their offsets as read and then silently drop the records the seek
        # fetches again below them (its read-offset check), so a seek back would need many
        # tries. Until the sought offset comes, a record passes only if it is that offset or
        # its fetch began after the seek (then it is from the new position: a fetch waiting
        # when the seek came may return either).
        async for tp, message in super().getmany(timeout):
            sought = self._sought_to.get(tp)
            if sought is not None:
                fetched_after = self._seeks.get(tp, 0) == self._seeks_at_fetch.get(tp, 0)
                if message.offset != sought and not fetched_after:
                    continue  # from before the seek: the seek fetches it again
                del self._sought_to[tp]
            yield tp, message

    async def seek(self, partition: TP, offset: int) -> None:
        self._seeks[partition] = self._seeks.get(partition, 0) + 1
        self._sought_to[partition] = offset
        await super().seek(partition, offset)

    def _to_message(self, tp: TP, record: Any) -> Any:
        message = super()._to_message(tp, record)
        self._fetched_in[message] = self._returned_in
        return message

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.give_up_fetched()  # before faust forgets the committed offsets
        self.settled = False
        self._assigned = self._recovered = False
        self._sought_to.clear()  # faust seeks every partition again (not through seek())
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._assigned = True
        await super().on_partitions_assigned(assigned, generation_id)

    def tables_recovered(self) -> None:
        """The app's tables hold the new assignment's state (called from the table's
        ``on_recover``, which faust runs just before its seek that ends the rebalance)."""
        self._recovered = True

    async def perform_seek(self) -> None:
        # faust seeks the partitions that have a committed offset, and only those; the app
        # then places every input partition where its state says (hub/worker/order.py).
        await super().perform_seek()
        if not (self._assigned and self._recovered):
            # faust also seeks when the flow stops under a fetch (a revocation; table recovery
            # pausing streams): the tables are not ready, so nothing is placed, and the
            # rebalance is not over. (Placing then read a half-recovered state once: a
            # partition was sought to 117 where the state, recovered, said 236.)
            return
        place = getattr(self.app, "place_partitions", None)
        committed = {tp: self._committed_offset.get(tp) for tp in self.assignment()}
        targets = await place(committed) if place is not None else {}
        # From here records are current again, except those fetched before: they may come
        # from anywhere (faust delivers some while tables recover) and are given up; each
        # input partition is sought to its place, which fetches again whatever they held.
        self.give_up_fetched()
        self.settled = True
        for tp, offset in targets.items():
            await self.seek(tp, offset)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # faust counts offsets it did not see between two delivered records as processed
        # (meant for compacted topics and transaction markers) and commits past them. A
        # delivery that jumps ahead is exactly when records were *not* processed: after a
        # rebalance, or after the worker seeks back (hub/worker/order.py) and records fetched
        # before the seek still arrive. So no gaps: a commit only passes acknowledged records.
        return None

    def ack(self, message: Any) -> bool:
        # faust also "acknowledges" the records its streams skip: those delivered while the
        # flow is suspended (a rebalance, table recovery) or tagged with an older generation.
        # Skipped is not processed: refused too, so a commit never passes them.
        skipped = (
            not self.app.flow_control.is_active()
            or message.generation_id != self.app.consumer_generation_id
        )
        if skipped or self.is_stale(message):
            # Done with, but its offset is not ours to commit: it will be fetched again.
            message.acked = True
            self._unacked_messages.discard(message)
            return False
        return bool(super().ack(message))


class HubTransport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[ConsumerT]] = HubConsumer


#: given each assigned partition's committed offset (None: none), where to seek some of them
PartitionPlacer = Callable[[Mapping[TP, int | None]], Awaitable[Mapping[TP, int]]]


class HubApp(faust.App):
    """faust.App on :class:`HubTransport` (same ``kafka://`` URLs and settings)."""

    #: set by the app: called at the end of every rebalance, after faust's own seek
    place_partitions: PartitionPlacer | None = None

    def _new_transport(self) -> TransportT:
        return HubTransport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        # faust closes the tables first and stops the agents later, then commits what they
        # acknowledged in between: a batch finishing in that gap would be acknowledged with
        # its states written to closed stores. Stopping counts as a revocation instead.
        consumer = self._consumer
        if isinstance(consumer, HubConsumer):
            consumer.give_up_fetched()
        await super().on_stop()


@contextmanager
def acting_for(event: Any) -> Iterator[None]:
    """Table reads and writes on behalf of ``event`` outside faust's own iteration.

    A faust table (and its RocksDB store) takes the partition of a key from the *current
    event*, which faust sets only while a stream yields one record. A batch is applied after
    it was taken, so each read and write names its record here: the state lands in the
    changelog partition of the record's own partition, as a per-record agent would put it."""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


class _Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class _PartitionOnly:
    """What a table needs of an event to pick a partition's store: its partition."""

    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


@contextmanager
def reading_partition(partition: int) -> Iterator[None]:
    """Table reads from ``partition``'s store only. Without an event faust searches every
    store it has open, and a partition it no longer owns may still be open there (a late
    changelog acknowledgement reopens it) with an older state of the same dossier."""
    stand_in = _PartitionOnly(partition)
    with acting_for(stand_in):
        yield
