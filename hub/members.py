"""``hub workers list | remove``: the workers of an app as its consumer group sees them.

``list`` prints each member of the group ``$HUB_APP_ID``: its name (``HUB_WORKER_NAME``; ``-``
for an unnamed worker), client id, host and the partitions of ``dossier.events`` it holds,
then the partitions nobody holds. ``--json`` prints the same as one JSON document.

``remove NAME ...`` takes named workers out of the group now. A named worker is a static
member: stopped, even with SIGTERM, it stays in the group (so that its restart takes its
partitions back without a rebalance) until its session expires, and its partitions wait
meanwhile. After scaling down for good, ``remove`` hands them to the workers left at once.
It is for stopped workers: one still running joins the group again at its next heartbeat.

Exit codes: 0 done, 1 a name is not a member of the group, 2 Kafka cannot be reached or
answers with an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hub.settings import HubSettings

__all__ = [
    "Member",
    "add_workers_parser",
    "members_of",
    "run_workers_command",
    "unheld",
]


class MembersError(RuntimeError):
    """Kafka could not be asked, or answered with an error."""


@dataclass(frozen=True)
class Member:
    name: str | None  # group.instance.id: HUB_WORKER_NAME, None for an unnamed worker
    member_id: str
    client_id: str
    host: str
    partitions: tuple[int, ...]  # of dossier.events, sorted


def members_of(description: Any, topic: str) -> list[Member]:
    """The members of a confluent-kafka ``ConsumerGroupDescription``, sorted by name, with
    the partitions of ``topic`` each holds."""
    members = [
        Member(
            name=m.group_instance_id or None,
            member_id=m.member_id,
            client_id=m.client_id,
            host=m.host.removeprefix("/"),  # the broker's Java InetAddress text
            partitions=tuple(
                sorted(tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic)
            ),
        )
        for m in description.members
    ]
    return sorted(members, key=lambda m: (m.name is None, m.name or "", m.member_id))


def unheld(members: Iterable[Member], partitions: int) -> list[int]:
    """The partitions of a topic of ``partitions`` partitions no member holds."""
    held = {p for m in members for p in m.partitions}
    return [p for p in range(partitions) if p not in held]


def _describe(settings: HubSettings, topic: str, timeout_s: float) -> tuple[str, list[Member], int]:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from hub.security.environment import env_librdkafka_config

    admin = AdminClient(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            # its connection errors are summed up in our one line, not printed each second
            "log_level": 2,
            **env_librdkafka_config(),
        }
    )
    try:
        group = admin.describe_consumer_groups([settings.app_id], request_timeout=timeout_s)
        description = group[settings.app_id].result(timeout=timeout_s)
        metadata = admin.list_topics(topic, timeout=timeout_s).topics.get(topic)
    except KafkaException as exc:
        raise MembersError(f"cannot describe group {settings.app_id}: {exc.args[0]}") from None
    except Exception as exc:  # a future that timed out
        raise MembersError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers} within {timeout_s:g}s "
            f"({type(exc).__name__})"
        ) from None
    partitions = 0 if metadata is None or metadata.error else len(metadata.partitions)
    state = str(description.state).rsplit(".", 1)[-1]
    return state, members_of(description, topic), partitions


def _remove(settings: HubSettings, names: Sequence[str], timeout_s: float) -> dict[str, str]:
    """Each name's outcome: "" when removed, else the broker's error."""
    from kafka import KafkaAdminClient
    from kafka.admin import MemberToRemove

    from hub.security.environment import env_client_kwargs

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="hub-workers",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            **env_client_kwargs(),
        )
    except Exception as exc:
        raise MembersError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers} within {timeout_s:g}s "
            f"({type(exc).__name__})"
        ) from None
    try:
        results = admin.remove_group_members(
            settings.app_id,
            [MemberToRemove(group_instance_id=name, reason="hub workers remove") for name in names],
        )
    except Exception as exc:
        raise MembersError(f"cannot remove from group {settings.app_id}: {exc}") from None
    finally:
        admin.close()
    outcome = {}
    for member, error in results.items():
        name = member.group_instance_id if hasattr(member, "group_instance_id") else str(member)
        outcome[name] = "" if error.__name__ == "NoError" else error.__name__
    return outcome


def add_workers_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    workers = subparsers.add_parser(
        "workers",
        help="list the workers of the app's group and their partitions; remove named ones",
        description=__doc__.split("\n\n", 1)[1].replace("``", "") if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = workers.add_subparsers(dest="workers_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="each worker, its name and its partitions")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    remove = sub.add_parser(
        "remove", help="take stopped named workers out of the group now (after a scale-down)"
    )
    remove.add_argument("names", nargs="+", metavar="NAME", help="HUB_WORKER_NAME of a worker")
    for parser in (listing, remove):
        parser.add_argument(
            "--bootstrap-server",
            help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)",
        )
        parser.add_argument("--app-id", help="the workers' HUB_APP_ID (default $HUB_APP_ID)")
        parser.add_argument(
            "--timeout", type=float, default=15.0, help="seconds to wait for Kafka (default 15)"
        )


def run_workers_command(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.bootstrap_server:
        overrides["kafka_bootstrap_servers"] = args.bootstrap_server
    if args.app_id:
        overrides["app_id"] = args.app_id
    settings = HubSettings(**overrides)
    from hub.worker.processor import Topics  # the worker's topic names; late: a heavy import

    # its partitions say which dossiers a worker holds (every input is co-partitioned)
    topic = Topics(settings.topic_prefix).dossier_events
    try:
        if args.workers_command == "list":
            state, members, partitions = _describe(settings, topic, args.timeout)
            _print_members(settings.app_id, state, members, unheld(members, partitions), args.json)
            return 0
        outcome = _remove(settings, args.names, args.timeout)
    except MembersError as exc:
        print(f"hub workers: {exc}", file=sys.stderr)
        return 2
    status = 0
    for name in args.names:
        error = outcome.get(name, "no answer")
        if not error:
            print(f"{name}: removed from group {settings.app_id}; its partitions go to the others")
        elif error == "UnknownMemberIdError":
            print(f"{name}: not a member of group {settings.app_id}", file=sys.stderr)
            status = max(status, 1)
        else:
            print(f"{name}: not removed ({error})", file=sys.stderr)
            status = 2
    return status


def _print_members(
    app_id: str, state: str, members: list[Member], free: list[int], as_json: bool
) -> None:
    if as_json:
        document = {
            "group": app_id,
            "state": state,
            "members": [asdict(m) for m in members],
            "unheld_partitions": free,
        }
        print(json.dumps(document, indent=2))
        return
    print(f"group {app_id}: {state}, {len(members)} worker(s)")
    rows = [("NAME", "PARTITIONS", "CLIENT", "HOST")]
    rows += [
        (m.name or "-", ",".join(map(str, m.partitions)) or "-", m.client_id, m.host)
        for m in members
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    if free:
        print(f"partitions held by no worker: {','.join(map(str, free))}")
