"""``hub audit verify | stamp``: check the audit trail's hash chains; time-stamp their heads.

``verify`` reads the audit topic from its first record to the end offsets of now (no
consumer group, nothing committed) and prints one line per chain: entries, first and last
seq, and OK or the first problem. Exit code 0 when every chain is intact, 1 on any problem,
2 when the topic cannot be read. With ``--tsa DIR --tsa-ca CA`` it also checks the heads
stamped earlier by ``stamp``: each reply verifies with ``openssl ts -verify`` and the stamped
head is still in its chain, unchanged.

``stamp --out DIR`` writes each chain's head and an RFC 3161 query for it
(``openssl ts -query -data <head> -sha256``); with ``--tsa-config`` a local authority
(``openssl ts -reply``) answers each query at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from hub.audit.chain import verify_chain
from hub.audit.trail import AuditReadError, ChainRecords, audit_topic, encode_entry, read_chains
from hub.audit.tsa import TsaError, file_stem, query, reply, verify

__all__ = ["add_audit_parser", "run_audit_command"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topic",
        help="the audit topic (default $HUB_TOPIC_PREFIX + hub.audit)",
    )
    parser.add_argument(
        "--bootstrap-server",
        help=f"Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS or {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--timeout", type=float, default=15.0, help="seconds to wait for the broker (default 15)"
    )


def add_audit_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="verify the audit trail's hash chains; time-stamp their heads",
        description="The audit topic (hub.audit) holds one hash chain per input partition: "
        "an entry for every event the hub applied.",
    )
    actions = audit.add_subparsers(dest="audit_action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "verify",
        help="check every chain of the audit topic",
        description="Read the audit topic to its end and report per chain: entries, first and "
        "last seq, OK or the first problem (altered, removed, reordered). Exit 1 on a problem.",
    )
    _common(check)
    check.add_argument(
        "--tsa", type=Path, metavar="DIR", help="also check the heads stamped into DIR"
    )
    check.add_argument(
        "--tsa-ca", type=Path, metavar="CA", help="CA certificate of the time-stamp authority"
    )
    stamp = actions.add_parser(
        "stamp",
        help="write each chain's head and an RFC 3161 query for it",
        description="Write <chain>.head.json and <chain>.tsq (openssl ts -query -sha256) per "
        "chain into DIR; with --tsa-config, a local authority answers into <chain>.tsr.",
    )
    _common(stamp)
    stamp.add_argument("--out", type=Path, required=True, metavar="DIR")
    stamp.add_argument(
        "--tsa-config", type=Path, help="openssl ts -reply configuration of a local authority"
    )


def _settings(args: argparse.Namespace) -> tuple[str, str]:
    bootstrap = args.bootstrap_server or os.environ.get(
        "KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP
    )
    topic = args.topic or audit_topic(os.environ.get("HUB_TOPIC_PREFIX", ""))
    return bootstrap, topic


def _head(records: ChainRecords) -> dict[str, Any] | None:
    return records.entries[-1] if records.entries and records.entries[-1] else None


def _verify(args: argparse.Namespace, chains: dict[str, ChainRecords]) -> int:
    failed = 0
    for chain in sorted(chains):
        records = chains[chain]
        problems = verify_chain(records.entries, chain=chain, positions=records.positions)
        seqs = [e["seq"] for e in records.entries if isinstance(e.get("seq"), int)]
        distinct = len({(e.get("seq"), e.get("hash")) for e in records.entries})
        summary = (
            f"{chain}: entries {distinct} (records {len(records.entries)}), "
            f"seq {min(seqs, default=0)}..{max(seqs, default=0)}"
        )
        if problems:
            failed += 1
            problem = problems[0]
            print(
                f"{summary}: PROBLEM {problem.kind} at seq {problem.seq} "
                f"(audit {problem.position}): {problem.message}"
            )
        else:
            print(f"{summary}: OK")
    if args.tsa is not None:
        failed += _verify_stamps(args.tsa, args.tsa_ca, chains)
    print(f"{len(chains)} chains, {failed} with problems" if chains else "no audit entries")
    return 1 if failed else 0


def _verify_stamps(directory: Path, ca: Path | None, chains: dict[str, ChainRecords]) -> int:
    if ca is None:
        print("--tsa needs --tsa-ca (the authority's CA certificate)")
        return 1
    failed = 0
    for chain in sorted(chains):
        stem = file_stem(chain)
        head_file, reply_file = directory / f"{stem}.head.json", directory / f"{stem}.tsr"
        if not reply_file.exists():
            print(f"{chain}: time-stamp: none in {directory}")
            continue
        try:
            verify(reply_file, head_file, ca)
            stamped = json.loads(head_file.read_bytes())
        except (TsaError, OSError, ValueError) as exc:
            print(f"{chain}: time-stamp: PROBLEM {exc}")
            failed += 1
            continue
        if encode_entry(stamped) not in {encode_entry(e) for e in chains[chain].entries}:
            print(f"{chain}: time-stamp: PROBLEM the stamped head (seq {stamped.get('seq')}) "
                  "is no longer in the chain")  # fmt: skip
            failed += 1
            continue
        print(f"{chain}: time-stamp: OK (head seq {stamped.get('seq')})")
    return failed


def _stamp(args: argparse.Namespace, chains: dict[str, ChainRecords]) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for chain in sorted(chains):
        head = _head(chains[chain])
        if head is None:
            print(f"{chain}: no readable head, not stamped")
            continue
        stem = file_stem(chain)  # names keep their dots: no Path.with_suffix here
        head_file = out / f"{stem}.head.json"
        head_file.write_bytes(encode_entry(head))
        query_file = query(head_file, out / f"{stem}.tsq")
        if args.tsa_config is not None:
            reply(args.tsa_config, query_file, out / f"{stem}.tsr")
        print(f"{chain}: head seq {head.get('seq')} -> {query_file.name}")
    return 0


def run_audit_command(args: argparse.Namespace) -> int:
    bootstrap, topic = _settings(args)
    try:
        chains = read_chains(bootstrap, topic, timeout_s=args.timeout)
        if args.audit_action == "verify":
            return _verify(args, chains)
        if args.audit_action == "stamp":
            return _stamp(args, chains)
    except (AuditReadError, TsaError) as exc:
        print(f"hub audit: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled audit action {args.audit_action}")
