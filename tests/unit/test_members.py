"""``hub workers``: reading the group's description into workers and their partitions (the
broker side is in tests/integration/test_worker_guarantees.py)."""

from __future__ import annotations

import pytest
from confluent_kafka import ConsumerGroupState, Node, TopicPartition

# confluent-kafka's documented admin types; its admin package declares no __all__
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    ConsumerGroupDescription,
    MemberAssignment,
    MemberDescription,
)

from hub.cli import build_parser, main
from hub.members import Member, members_of, unheld
from hub.stack.tools import free_port

TOPIC = "p.dossier.events"


def _member(member_id: str, name: str | None, *partitions: int) -> MemberDescription:
    held = [TopicPartition(TOPIC, p) for p in partitions]
    held += [TopicPartition("p.feedback.events", p) for p in partitions]  # co-partitioned
    return MemberDescription(member_id, f"client-{member_id}", "/127.0.0.1",
                             MemberAssignment(held), group_instance_id=name)  # fmt: skip


def test_each_member_is_a_worker_by_its_name_with_the_dossier_partitions_it_holds() -> None:
    members = [_member("m-2", None, 4), _member("m-1", "worker-b", 2, 3)]
    members.append(_member("m-0", "worker-a", 1, 0))
    description = ConsumerGroupDescription(
        "hub", False, members, "range", ConsumerGroupState.STABLE, Node(1, "127.0.0.1", 9092)
    )
    workers = members_of(description, TOPIC)
    # named workers first, by name; their dossier.events partitions only, sorted
    assert [(m.name, m.partitions) for m in workers] == [
        ("worker-a", (0, 1)),
        ("worker-b", (2, 3)),
        (None, (4,)),
    ]
    assert unheld(workers, 6) == [5]
    assert workers[0].host == "127.0.0.1"
    assert workers[0].client_id == "client-m-0"


def test_no_member_holds_nothing() -> None:
    assert unheld([], 3) == [0, 1, 2]
    idle = Member("w", "m", "c", "h", ())
    assert unheld([idle], 2) == [0, 1]


@pytest.mark.parametrize("argv", [["workers"], ["workers", "remove"]])
def test_the_command_asks_for_what_it_needs(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2


@pytest.mark.parametrize("action", [["list"], ["remove", "hub-worker-1"]])
def test_an_unreachable_broker_is_one_clear_line_and_exit_code_2(
    action: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    closed = free_port()  # nothing listens there
    code = main(["workers", *action, "--bootstrap-server", f"127.0.0.1:{closed}",
                 "--timeout", "1"])  # fmt: skip
    assert code == 2
    assert f"cannot reach Kafka at 127.0.0.1:{closed} within 1s" in capsys.readouterr().err
