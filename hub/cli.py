"""The ``hub`` command: local stack, workers and their group, dead letters and the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from connectors.sdk.cli import add_connector_parser, run_connector_command
from hub.access.commands import add_access_parser, run_access_command
from hub.audit.commands import add_audit_parser, run_audit_command
from hub.demo import add_demo_parser, run_demo_command
from hub.dlq.commands import add_dlq_parser, run_dlq_command
from hub.members import add_workers_parser, run_workers_command
from hub.security.cli import add_security_parser, run_security_command
from hub.stack.cli import add_stack_parser, run_stack_command

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hub",
        description="Nghệ An dossier integration hub: Kafka-based links between agency systems "
        "and the national public service portal.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_stack_parser(sub)
    worker = sub.add_parser(
        "worker",
        help="run a hub worker (the exactly-once engine in a faust app); e.g. -l info",
        description="Run a hub worker: the checkpoint engine over Kafka transactions, in a "
        "faust application serving the HTTP API. Configuration from HUB_* environment "
        "variables and KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL (see README). Any "
        "further options go to faust's worker command (e.g. -l info); set the HTTP port with "
        "HUB_WEB_PORT, not faust's --web-port: the other workers forward queries to it.",
    )
    worker.add_argument("faust_args", nargs=argparse.REMAINDER)
    add_workers_parser(sub)
    add_dlq_parser(sub)
    add_audit_parser(sub)
    add_access_parser(sub)
    add_demo_parser(sub)
    add_connector_parser(sub)
    add_security_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "worker":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "stack":
        return run_stack_command(args)
    if args.command == "worker":
        sys.argv = ["hub worker", "worker", *extra, *args.faust_args]
        from hub.worker.app import main as worker_main  # imported late: it reads settings

        worker_main()
        return 0
    if args.command == "workers":
        return run_workers_command(args)
    if args.command == "dlq":
        return run_dlq_command(args)
    if args.command == "audit":
        return run_audit_command(args)
    if args.command == "access":
        return run_access_command(args)
    if args.command == "demo":
        return run_demo_command(args)
    if args.command == "connector":
        return run_connector_command(args)
    if args.command == "security":
        return run_security_command(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
