"""A guard against a kafka-python 3.0 rebalance that is left unfinished by a short poll.

kafka-python 3.0.12 (the newest release) runs a group join as a task that a
``KafkaConsumer.poll(timeout_ms=N)`` awaits for at most ``N`` ms. When the join was started
because the *metadata* changed (a pattern subscription found a new topic, or a topic gained
partitions), the leader's own assignment step already makes ``need_rejoin()`` false while its
SyncGroup request is still in flight. If the poll times out at that moment, later polls see
nothing to rejoin and never await the task again: the assignment the broker returned is never
applied, and the consumer sits with no partitions until something else forces a rebalance.
Our sinks poll every 100 ms, so this happened in about half the runs of the webhook test that
waits for a newly created ``agency.inbox.<agency>`` topic.

:func:`finish_pending_join` is called after every poll. When a join task is still pending but
the coordinator no longer asks to rejoin, it raises the coordinator's own ``rejoin_needed``
flag, so the next poll re-awaits the task (or, if the task already finished unobserved, joins
again); either way the broker's assignment reaches the consumer. It reads private attributes;
when a later kafka-python lacks them it does nothing.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def finish_pending_join(consumer: Any) -> bool:
    """Make the next ``poll`` finish a group join that the last one left in flight.

    Returns True when it had to intervene (for tests and logs)."""
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_join_task", None)
    if coordinator is None or task is None or not hasattr(coordinator, "rejoin_needed"):
        return False
    if coordinator.rejoin_needed or coordinator.need_rejoin():
        return False  # the next poll awaits the task anyway
    log.debug("a group join was left in flight by a short poll; resuming it on the next poll")
    coordinator.rejoin_needed = True
    return True


def manual_commit_consumer(
    bootstrap: str, group_id: str, client_id: str, *, max_poll_records: int = 200, **extra: Any
) -> Any:
    """The kafka-python consumer our sinks and bridges share: a group member that reads
    committed records only (:mod:`hub.consumers`), commits by hand (after its work is
    acknowledged), starts at the earliest offset when the group has none, and authenticates
    as the environment says (``HUB_KAFKA_SECURITY_PROTOCOL`` ...).
    Poll it with :func:`finish_pending_join` after every ``poll``."""
    from hub.consumers import committed_consumer

    return committed_consumer(
        bootstrap,
        group_id=group_id,
        client_id=client_id,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        **extra,
    )
