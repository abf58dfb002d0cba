"""``hub stack up | down | status | logs``: the local Kafka broker and schema registry."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from hub.security.secrets import secret_file
from hub.stack.errors import StackError
from hub.stack.kafka import ADMIN_PRINCIPAL
from hub.stack.stack import LocalStack, StackConfig

__all__ = ["add_stack_parser", "run_stack_command"]


def add_stack_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stack = subparsers.add_parser(
        "stack",
        help="run a local Kafka broker or three-broker cluster (KRaft) and schema registry "
        "without Docker",
        description=(
            "Run Apache Kafka in KRaft combined mode (one broker, or a replicated cluster of "
            "three with --brokers 3) and Apicurio Registry (storing schemas in Kafka), all "
            "resolved from Maven Central and cached in ~/.cache/nghean-hub. Data lives in the "
            "state directory and survives restarts."
        ),
    )
    stack.add_argument("action", choices=["up", "down", "status", "logs"])
    stack.add_argument(
        "--state-dir",
        type=Path,
        help="pid files, logs and data (default: $HUB_STATE_DIR or .hub/stack)",
    )
    stack.add_argument("--kafka-port", type=int, help="broker port (default 9092, $HUB_KAFKA_PORT)")
    stack.add_argument(
        "--controller-port",
        type=int,
        help="KRaft controller port (default 9093, $HUB_CONTROLLER_PORT)",
    )
    stack.add_argument(
        "--registry-port", type=int, help="schema registry port (default 8081, $HUB_REGISTRY_PORT)"
    )
    stack.add_argument(
        "--brokers",
        type=int,
        choices=[1, 3],
        help="with up: Kafka nodes, 1 (default) or 3: a replicated cluster (replication "
        "factor 3, min.insync.replicas=2, no unclean leader election; node i on ports "
        "kafka-port+2i and controller-port+2i, data in <state dir>/kafka-<i>); status, logs "
        "and down find the nodes themselves ($HUB_STACK_BROKERS)",
    )
    stack.add_argument("--lines", type=int, default=40, help="with logs: lines per service")
    stack.add_argument(
        "--secure",
        action="store_true",
        help="with up: SASL/SCRAM-SHA-512 over TLS (SASL_SSL, a certificate from the "
        "stack's own CA in <state dir>/tls/ca.pem) and ACLs (StandardAuthorizer, deny by "
        "default); the registry runs as its own principal; also $HUB_KAFKA_SECURITY=sasl. "
        "The admin's password is in <state dir>/secrets/admin.password; see `hub security`",
    )


def _config(args: argparse.Namespace) -> StackConfig:
    base = StackConfig()
    return StackConfig(
        state_dir=(args.state_dir or base.state_dir).resolve(),
        kafka_port=args.kafka_port or base.kafka_port,
        controller_port=args.controller_port or base.controller_port,
        registry_port=args.registry_port or base.registry_port,
        kafka_version=base.kafka_version,
        apicurio_version=base.apicurio_version,
        secure=args.secure or os.environ.get("HUB_KAFKA_SECURITY", "").lower() == "sasl",
        brokers=args.brokers or base.brokers,
    )


def run_stack_command(args: argparse.Namespace) -> int:
    try:
        stack = LocalStack(_config(args))
    except StackError as exc:
        print(f"hub stack {args.action}: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {message}", flush=True)

    try:
        if args.action == "up":
            status = stack.up(progress=progress)
            print(f"ready: KAFKA_BOOTSTRAP_SERVERS={status.bootstrap}")
            if stack.config.secure:
                # Names and paths only: the password itself is never printed.
                print("ready: HUB_KAFKA_SECURITY_PROTOCOL=SASL_SSL")
                print(f"ready: HUB_KAFKA_SSL_CAFILE={stack.kafka.tls.ca_cert}")
                print("ready: HUB_KAFKA_SASL_MECHANISM=SCRAM-SHA-512")
                print(f"ready: HUB_KAFKA_SASL_USERNAME={ADMIN_PRINCIPAL}")
                admin_file = secret_file(stack.config.state_dir, ADMIN_PRINCIPAL)
                print(f"ready: HUB_KAFKA_SASL_PASSWORD_FILE={admin_file}")
            if status.with_registry:
                print(f"ready: SCHEMA_REGISTRY_URL={status.registry_url}")
            return 0
        if args.action == "down":
            stopped = stack.down()
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing of ours was running")
            return 0
        if args.action == "status":
            status = stack.status()
            for name, pid, where in (
                *status.nodes,
                ("registry", status.registry_pid, status.registry_url),
            ):
                print(f"{name:9} {'running pid ' + str(pid) if pid else 'stopped':20} {where}")
            return 0 if status.running else 3
        for proc in (*(node.process for node in stack.nodes), stack.registry.process):
            print(f"==> {proc.log_file} <==")
            print(proc.tail(args.lines))
        return 0
    except StackError as exc:
        print(f"hub stack {args.action}: {exc}", file=sys.stderr)
        return 1
