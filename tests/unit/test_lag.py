"""Consumer lag of the hub's input topics (hub/worker/lag.py): the arithmetic, the gauge, and
the periodic refresh with a fake sampler (no broker)."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from hub.worker.lag import LagSampler, export_lag, lag_by_topic, refresh

EVENTS, FEEDBACK = "dossier.events", "feedback.events"


def test_lag_is_end_minus_committed_summed_over_partitions() -> None:
    end = {(EVENTS, 0): 100, (EVENTS, 1): 50, (FEEDBACK, 0): 7}
    committed = {(EVENTS, 0): 90, (EVENTS, 1): 50, (FEEDBACK, 0): 7}
    assert lag_by_topic([EVENTS, FEEDBACK], end, committed) == {EVENTS: 10, FEEDBACK: 0}


def test_a_partition_never_committed_counts_from_its_beginning() -> None:
    end = {(EVENTS, 0): 100, (EVENTS, 1): 30}
    committed = {(EVENTS, 0): 100, (EVENTS, 1): None}
    assert lag_by_topic([EVENTS], end, committed) == {EVENTS: 30}
    beginning = {(EVENTS, 0): 0, (EVENTS, 1): 20}  # records before 20 deleted by retention
    assert lag_by_topic([EVENTS], end, {(EVENTS, 0): 100}, beginning) == {EVENTS: 10}


def test_a_commit_below_the_beginning_counts_from_the_beginning() -> None:
    end, beginning = {(EVENTS, 0): 100}, {(EVENTS, 0): 80}
    assert lag_by_topic([EVENTS], end, {(EVENTS, 0): 5}, beginning) == {EVENTS: 20}


def test_lag_never_goes_below_zero() -> None:
    # the end offsets were read before a commit that moved past them
    assert lag_by_topic([EVENTS], {(EVENTS, 0): 10}, {(EVENTS, 0): 12}) == {EVENTS: 0}


def test_every_wanted_topic_gets_a_figure_and_other_topics_are_ignored() -> None:
    end = {("hub.clock", 0): 1000, (EVENTS, 0): 3}
    committed = {("hub.clock", 0): 0, (EVENTS, 0): 1}
    assert lag_by_topic([EVENTS, FEEDBACK], end, committed) == {EVENTS: 2, FEEDBACK: 0}


def lag_sample(topic: str) -> float | None:
    return REGISTRY.get_sample_value("hub_consumer_lag_messages", {"topic": topic})


def test_the_gauge_has_one_series_per_topic() -> None:
    export_lag({"t.lag.a": 4, "t.lag.b": 0})
    assert lag_sample("t.lag.a") == 4
    assert lag_sample("t.lag.b") == 0


class FakeSampler(LagSampler):
    def __init__(self, answers: list[dict[str, int] | Exception]) -> None:
        super().__init__("unused:9092", "group", ["t.refresh"])
        self.answers = answers
        self.closed = 0

    def sample(self) -> dict[str, int]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self.closed += 1


def test_refresh_exports_and_a_failed_sample_keeps_the_last_values() -> None:
    sampler = FakeSampler([{"t.refresh": 12}, OSError("broker away"), {"t.refresh": 3}])
    asyncio.run(refresh(sampler))
    assert lag_sample("t.refresh") == 12
    asyncio.run(refresh(sampler))  # logged, not raised; the clients are dropped
    assert lag_sample("t.refresh") == 12
    assert sampler.closed == 1
    asyncio.run(refresh(sampler))
    assert lag_sample("t.refresh") == 3
