"""Each input partition's records are applied once, in offset order, without gaps, whatever
position the consumer is at (hub/worker/order.py)."""

from __future__ import annotations

from hub.worker.order import (
    Gap,
    PartitionOrder,
    Verdict,
    is_internal_key,
    next_offset_key,
    start_offset,
)

T = "dossier.events"


def test_the_first_record_of_a_partition_never_applied_is_applied() -> None:
    assert PartitionOrder().judge(T, 0, 1234, None, now=0) is Verdict.APPLY


def test_the_next_offset_is_applied_and_earlier_ones_are_done_already() -> None:
    order = PartitionOrder()
    assert order.judge(T, 0, 10, 10, now=0) is Verdict.APPLY
    assert order.judge(T, 0, 9, 11, now=0) is Verdict.DONE
    assert order.judge(T, 0, 0, 11, now=0) is Verdict.DONE


def test_a_record_past_the_next_offset_asks_for_a_seek_and_holds_what_comes_meanwhile() -> None:
    order = PartitionOrder(reseek_after_s=1.0)
    # the state needs 100 next; the consumer delivers 130, 131, ... (fetched before a seek)
    assert order.judge(T, 0, 130, 100, now=0.0) is Verdict.SEEK
    assert order.judge(T, 0, 131, 100, now=0.1) is Verdict.HOLD
    # not the missing record either, even though it is before the one that revealed the gap:
    # another seek (faust's, to an over-committed offset) may have delivered it
    assert order.judge(T, 0, 101, 100, now=0.2) is Verdict.HOLD
    # after the seek: 100 arrives, and the partition goes on from there
    assert order.judge(T, 0, 100, 100, now=0.3) is Verdict.APPLY
    assert order.judge(T, 0, 101, 101, now=0.3) is Verdict.APPLY


def test_while_the_missing_record_does_not_come_the_seek_is_asked_again() -> None:
    order = PartitionOrder(reseek_after_s=1.0)
    assert order.judge(T, 0, 130, 100, now=0.0) is Verdict.SEEK
    assert order.judge(T, 0, 104, 100, now=0.9) is Verdict.HOLD
    assert order.judge(T, 0, 105, 100, now=1.0) is Verdict.SEEK
    assert order.judge(T, 0, 106, 100, now=1.5) is Verdict.HOLD


def test_a_new_next_offset_asks_for_a_new_seek() -> None:
    order = PartitionOrder()
    assert order.judge(T, 0, 130, 100, now=0) is Verdict.SEEK
    # the state moved on (restored after a rebalance): the old seek is void
    assert order.judge(T, 0, 150, 140, now=0) is Verdict.SEEK


def test_only_offsets_the_broker_deleted_are_a_gap() -> None:
    assert PartitionOrder.gap(T, 3, 100, log_start=120) == Gap(T, 3, 100, 119)
    assert PartitionOrder.gap(T, 3, 100, log_start=100) is None
    assert PartitionOrder.gap(T, 3, 100, log_start=0) is None
    assert PartitionOrder.gap(T, 3, 100, log_start=None) is None


def test_partitions_and_topics_are_judged_apart() -> None:
    order = PartitionOrder()
    assert order.judge(T, 0, 130, 100, now=0) is Verdict.SEEK
    assert order.judge(T, 1, 130, 130, now=0) is Verdict.APPLY
    assert order.judge("feedback.events", 0, 130, 130, now=0) is Verdict.APPLY
    assert order.judge(T, 0, 131, 100, now=0) is Verdict.HOLD


def test_a_rebalance_voids_the_seeks_asked_for() -> None:
    order = PartitionOrder()
    assert order.judge(T, 0, 130, 100, now=0) is Verdict.SEEK
    order.forget()
    assert order.judge(T, 0, 131, 100, now=0) is Verdict.SEEK  # asked again, not held for ever


def test_next_offset_keys_are_internal_and_distinct_per_partition() -> None:
    keys = {next_offset_key(T, p) for p in range(6)} | {next_offset_key("hub.clock", 0)}
    assert len(keys) == 7
    assert all(is_internal_key(k) for k in keys)
    assert not is_internal_key(b"000.00.03.H40-261126-0001")
    assert not is_internal_key(None)


def test_a_seek_whose_record_does_not_come_is_due_again_even_if_nothing_else_arrives() -> None:
    order = PartitionOrder(reseek_after_s=1.0)
    assert order.judge(T, 0, 130, 100, now=0.0) is Verdict.SEEK
    assert order.overdue(now=0.5) == []
    assert order.overdue(now=1.0) == [(T, 0, 100)]
    assert order.overdue(now=1.5) == []  # asked again at 1.0
    assert order.judge(T, 0, 100, 100, now=1.6) is Verdict.APPLY
    assert order.overdue(now=5.0) == []  # the record came


def test_a_record_dropped_unseen_makes_its_next_offset_due_unless_it_is_applied() -> None:
    order = PartitionOrder(reseek_after_s=1.0)
    order.expect(T, 4, 50, now=0.0)
    assert order.overdue(now=0.9) == []
    assert order.overdue(now=1.0) == [(T, 4, 50)]
    order.expect(T, 5, 70, now=0.0)
    assert order.judge(T, 5, 70, 70, now=0.5) is Verdict.APPLY  # it came: nothing to ask
    order.drop(T, 4)
    assert order.overdue(now=10.0) == []


# --- where a partition starts after a rebalance --------------------------------------------


def test_a_committed_offset_at_or_below_the_state_is_kept() -> None:
    """faust already seeked there; the records up to the state's next offset are DONE."""
    assert start_offset(stored_next=120, committed=100, log_start=0) is None
    assert start_offset(stored_next=100, committed=100, log_start=0) is None


def test_a_committed_offset_ahead_of_the_state_is_sought_back() -> None:
    assert start_offset(stored_next=90, committed=100, log_start=0) == 90


def test_a_partition_never_committed_starts_at_the_state_not_where_a_fetch_left_it() -> None:
    """The storm's lost ratings: a feedback partition with no commit, its records consumed
    during table recovery and dropped by faust; only a seek brings them back."""
    assert start_offset(stored_next=7, committed=None, log_start=0) == 7
    assert start_offset(stored_next=None, committed=None, log_start=0) == 0
    assert start_offset(stored_next=None, committed=None, log_start=None) is None


# --- the watchdog ----------------------------------------------------------------------------


def test_a_partition_without_progress_is_looked_at_once_per_period() -> None:
    order = PartitionOrder(quiet_after_s=5.0)
    parts = [(T, 0), ("feedback.events", 0)]
    assert order.quiet(parts, now=0.0) == []  # first seen: counts from now
    assert order.judge(T, 0, 10, 10, now=3.0) is Verdict.APPLY  # progress on one
    assert order.quiet(parts, now=5.0) == [("feedback.events", 0)]
    assert order.quiet(parts, now=6.0) == []  # looked at: the next look is 5 s later
    assert order.quiet(parts, now=8.0) == [(T, 0)]
    assert order.quiet(parts, now=10.0) == [("feedback.events", 0)]


def test_records_found_applied_before_count_as_progress_and_held_ones_do_not() -> None:
    order = PartitionOrder(quiet_after_s=5.0)
    order.quiet([(T, 0), (T, 1)], now=0.0)
    assert order.judge(T, 0, 3, 10, now=4.0) is Verdict.DONE
    assert order.judge(T, 1, 30, 10, now=4.0) is Verdict.SEEK  # a gap: no progress
    assert order.quiet([(T, 0), (T, 1)], now=5.0) == [(T, 1)]


def test_a_rebalance_restarts_the_progress_clock() -> None:
    order = PartitionOrder(quiet_after_s=5.0)
    order.quiet([(T, 0)], now=0.0)
    order.forget()
    assert order.quiet([(T, 0)], now=6.0) == []  # counts from its first look after
    assert order.quiet([(T, 0)], now=11.0) == [(T, 0)]
