"""``hub connector run | list | validate``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from connectors.sdk.errors import ConnectorConfigError
from connectors.sdk.loading import load_config
from connectors.sdk.registry import GROUP, installed

__all__ = ["add_connector_parser", "run_connector_command"]


def add_connector_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "connector",
        help="run, list and validate connectors (Kafka Connect style)",
        description="Connectors move agency data onto the hub's topics (sources) and off them "
        "(sinks). Each is configured by one JSON or TOML file; see connectors/sdk/config.py.",
    )
    sub = parser.add_subparsers(dest="connector_command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run one connector until SIGTERM/SIGINT",
        description="Run the connector a config file describes, in the foreground. SIGTERM or "
        "Ctrl-C drains the batch in hand, commits its offsets and exits 0; a failure exits 1 "
        "with the reason. With --once a source stops by itself once drained.",
    )
    run.add_argument("--config", required=True, help="the connector's JSON or TOML file")
    run.add_argument(
        "--once",
        action="store_true",
        help="sources: stop once everything the source holds now is published, acknowledged "
        "and its offsets stored (a batch job, a catch-up after an outage), exit 0",
    )
    run.add_argument("-l", "--log-level", default="info", help="log level (default %(default)s)")
    sub.add_parser(
        "list",
        help="installed connector classes",
        description=f"Connector classes installed as entry points in group {GROUP!r}.",
    )
    validate = sub.add_parser(
        "validate",
        help="check a config file without running it",
        description="Validate a config file and the connector's settings; prints the config "
        "(secrets masked) and exits 0, or the problems (file: field: rule) and exits 1.",
    )
    validate.add_argument("--config", required=True, help="the connector's JSON or TOML file")


def run_connector_command(args: argparse.Namespace) -> int:
    if args.connector_command == "list":
        found = installed()
        if not found:
            print(f"no connectors installed in entry-point group {GROUP}")
            return 0
        width = max(len(c.name) for c in found)
        target = max(len(c.target) for c in found)
        for c in found:
            if c.cls is None:
                print(f"{c.name:<{width}}  {'BROKEN':<11}  {c.target:<{target}}  {c.error}")
            else:
                kind = c.cls.kind
                print(f"{c.name:<{width}}  {kind:<11}  {c.target:<{target}}  {c.cls.summary()}")
        return 0
    try:
        config = load_config(args.config)
    except ConnectorConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.connector_command == "validate":
        print(json.dumps(config.describe(), indent=2, ensure_ascii=False))
        print(f"{args.config}: ok ({config.connector_cls.kind} {config.connector_class})")
        return 0
    if args.connector_command == "run":
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        from connectors.sdk.base import SourceConnector
        from connectors.sdk.runtime import run_connector

        if args.once and not issubclass(config.connector_cls, SourceConnector):
            # a push source or a sink has no "drained": it would run forever regardless
            print(
                f"{args.config}: --once is for sources that poll, not for a "
                f"{config.connector_cls.kind} connector",
                file=sys.stderr,
            )
            return 2
        return run_connector(config, once=args.once)
    raise AssertionError(f"unhandled connector command {args.connector_command}")
