"""Feedback that reaches a worker before its dossier waits while dossier.events may still
bring the dossier, and no longer (hub.engine.feedback_gate)."""

from __future__ import annotations

from hub.engine.feedback_gate import FeedbackGate

RATED_AT = 1_000_000  # the rating's timestamp, ms


def never_caught_up() -> bool:
    return False


def test_feedback_waits_only_while_the_dossier_partition_may_still_bring_its_dossier() -> None:
    gate = FeedbackGate(wait_s=30)
    # nothing read from dossier.events[3] at or after the rating's time, and its leader says
    # there is more to read: the dossier may be in it
    assert gate.must_wait(3, RATED_AT, never_caught_up)
    # read to its end: the dossier is truly unknown (dead-lettered at once)
    assert not gate.must_wait(3, RATED_AT, lambda: True)
    # a dossier record stamped after the rating was read: what came before it was read too,
    # and the leader is not even asked
    gate.dossier_read(3, RATED_AT + 5)

    def not_asked() -> bool:
        raise AssertionError("the leader is asked only when the timestamps cannot tell")

    assert not gate.must_wait(3, RATED_AT, not_asked)
    assert gate.must_wait(4, RATED_AT, never_caught_up)  # partitions are apart


def test_a_held_partition_goes_on_from_the_held_record_when_its_dossiers_catch_up() -> None:
    gate = FeedbackGate(wait_s=30, check_every_s=0.5)
    gate.hold(2, offset=41, timestamp=RATED_AT, now=100.0)
    assert gate.is_held(2) and not gate.is_held(1)
    assert gate.release(100.1, lambda p: False) == []
    gate.dossier_read(2, RATED_AT - 1)  # older records: not yet past the rating
    assert gate.release(100.2, lambda p: True) == []  # the leader is asked every 0.5 s only
    gate.dossier_read(2, RATED_AT)  # read up to the rating's time: goes on at once
    assert gate.release(100.3, lambda p: False) == [(2, 41)]
    assert not gate.is_held(2)


def test_a_held_partition_goes_on_when_the_leader_says_it_was_read_to_its_end() -> None:
    gate = FeedbackGate(wait_s=30, check_every_s=0.5)
    gate.hold(2, offset=7, timestamp=None, now=100.0)  # no timestamp: only the end can tell
    assert gate.release(100.6, lambda p: False) == []
    assert gate.release(101.2, lambda p: p == 2) == [(2, 7)]


def test_feedback_waits_at_most_its_wait_then_goes_on_to_be_judged() -> None:
    gate = FeedbackGate(wait_s=30, check_every_s=0.5)
    gate.hold(5, offset=0, timestamp=RATED_AT, now=100.0)
    assert gate.release(129.9, lambda p: False) == []
    assert gate.release(130.0, lambda p: False) == [(5, 0)]


def test_revoked_partitions_hold_nothing_for_their_next_owner() -> None:
    gate = FeedbackGate(wait_s=30)
    gate.hold(1, offset=3, timestamp=RATED_AT, now=0.0)
    gate.hold(2, offset=4, timestamp=RATED_AT, now=0.0)
    gate.dossier_read(1, RATED_AT)
    gate.forget({1})
    assert not gate.is_held(1) and gate.is_held(2)
    assert gate.must_wait(1, RATED_AT, never_caught_up)  # its read time is forgotten too
    gate.forget()
    assert gate.held == {}
