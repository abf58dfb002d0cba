"""The ``hub`` command: local stack, workers, dead letters and the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "stack":
        return run_stack_command(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
