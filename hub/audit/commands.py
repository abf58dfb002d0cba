"""``hub audit keygen | verify | stamp``: the audit trail's key, its check, its time-stamps.

``keygen --out FILE`` writes a new Ed25519 signing key (FILE, mode 0600) and its public key
(FILE.pub): the workers sign each chain's head with the first (``HUB_AUDIT_SIGNING_KEY``),
verifiers need only the second.

``verify`` reads the audit topic from its first record to the end offsets of now (no
consumer group, nothing committed) and prints one line per chain: entries, first and last
seq, and OK or the first problem. Heads must be signed by a trusted key (``--public-key``,
default the ``.pub`` beside ``$HUB_AUDIT_SIGNING_KEY``; ``--unsigned`` checks the hash links
alone and says so). With ``--inputs`` (the default) each entry is held against the input
record it names, and every input record the hub committed past must have an entry, a dead
letter, or be a redelivery (``hub.audit.inputs``). Exit code 0 when every chain is intact, 1
on any problem, 2 when something cannot be read. With ``--tsa DIR --tsa-ca CA`` it also
checks the heads stamped into DIR: each reply verifies with ``openssl ts -verify`` and the
stamped head is still in its chain, unchanged.

``stamp --out DIR`` writes each chain's head and an RFC 3161 query for it
(``openssl ts -query -data <head> -sha256``); with ``--tsa`` an authority (an RFC 3161 URL,
or a local ``openssl ts -reply`` configuration) answers each query at once. Workers can do
this on a schedule (``HUB_AUDIT_STAMP_INTERVAL_S``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.audit.chain import is_access_chain, verify_chain
from hub.audit.inputs import account
from hub.audit.signing import (
    KeyFileError,
    TrustedKeys,
    generate_key,
    load_public_keys,
    public_key_path,
)
from hub.audit.trail import (
    AuditReadError,
    ChainRecords,
    audit_topic,
    committed_offsets,
    encode_entry,
    read_chains,
    read_inputs,
)
from hub.audit.tsa import TsaError, file_stem, stamp_head, verify
from hub.contract.errors import ContractError, RegistryError, RegistryUnavailableError
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer

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
    keygen = actions.add_parser(
        "keygen",
        help="write a new signing key for the workers and its public key for verifiers",
        description="Write an Ed25519 private key to FILE (mode 0600, never overwritten) and "
        "its public key to FILE.pub. Give FILE to every worker as HUB_AUDIT_SIGNING_KEY; give "
        "FILE.pub to whoever verifies (hub audit verify --public-key).",
    )
    keygen.add_argument("--out", type=Path, required=True, metavar="FILE")
    check = actions.add_parser(
        "verify",
        help="check every chain of the audit topic",
        description="Read the audit topic to its end and report per chain: entries, first and "
        "last seq, OK or the first problem (altered, removed, reordered, truncated, forged). "
        "Heads must carry a signature of a trusted key; entries must match their input "
        "records. Exit 1 on a problem, 2 when something cannot be read.",
    )
    _common(check)
    check.add_argument(
        "--public-key",
        type=Path,
        action="append",
        metavar="PATH",
        help="a trusted public key (PEM), or a directory of *.pub files; repeat for rotated "
        "keys (default: $HUB_AUDIT_SIGNING_KEY.pub)",
    )
    check.add_argument(
        "--unsigned",
        action="store_true",
        help="check the hash links only, not the heads' signatures (anyone who can write the "
        "topic can then extend a chain undetected)",
    )
    check.add_argument(
        "--inputs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold each entry against the input record it names, and look for consumed input "
        "records with neither entry nor dead letter (default: on)",
    )
    check.add_argument(
        "--registry-url",
        help="schema registry, to compare event ids and types too (default $SCHEMA_REGISTRY_URL)",
    )
    check.add_argument(
        "--app-id", help="the hub's consumer group (default $HUB_APP_ID or nghean-hub)"
    )
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
        "--tsa",
        help="the time-stamp authority: an RFC 3161 URL, or the openssl ts -reply "
        "configuration file of a local authority",
    )


def _settings(args: argparse.Namespace) -> tuple[str, str]:
    bootstrap = args.bootstrap_server or os.environ.get(
        "KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP
    )
    topic = args.topic or audit_topic(os.environ.get("HUB_TOPIC_PREFIX", ""))
    return bootstrap, topic


def _head(records: ChainRecords) -> dict[str, Any] | None:
    return records.entries[-1] if records.entries and records.entries[-1] else None


def _trusted_keys(args: argparse.Namespace) -> TrustedKeys | None:
    """The keys heads must be signed with; None with ``--unsigned``. Raises KeyFileError."""
    if args.unsigned:
        return None
    paths: list[Path] = list(args.public_key or [])
    if not paths:
        private = os.environ.get("HUB_AUDIT_SIGNING_KEY")
        if private and public_key_path(Path(private)).exists():
            paths = [public_key_path(Path(private))]
    if not paths:
        raise KeyFileError(
            "no public key to check the chain heads' signatures with: pass --public-key FILE "
            "(the .pub beside the workers' HUB_AUDIT_SIGNING_KEY), or --unsigned to check the "
            "hash links alone"
        )
    keys = load_public_keys(paths)
    if not keys:
        raise KeyFileError(f"no public key found in {', '.join(map(str, paths))}")
    return keys


def _verify(
    args: argparse.Namespace,
    chains: dict[str, ChainRecords],
    committed: dict[tuple[str, int], int] | None,
) -> int:
    """``committed``: the hub's committed input offsets, read before ``chains`` (None:
    ``--no-inputs``)."""
    keys = _trusted_keys(args)
    failed = 0
    for chain in sorted(chains):
        records = chains[chain]
        problems = verify_chain(
            records.entries, chain=chain, positions=records.positions, keys=keys
        )
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
    if keys is None:
        print("signatures NOT checked (--unsigned): anyone who can write the topic could have "
              "extended these chains")  # fmt: skip
    if committed is not None and chains:
        failed += _verify_inputs(args, chains, committed)
    if args.tsa is not None:
        failed += _verify_stamps(args.tsa, args.tsa_ca, chains)
    print(f"{len(chains)} chains, {failed} with problems" if chains else "no audit entries")
    return 1 if failed else 0


def _decoder(registry_url: str | None) -> Callable[[bytes], tuple[str | None, str | None]] | None:
    if not registry_url:
        return None
    deserializer = AvroDeserializer(SchemaRegistryClient(registry_url))

    def decode(value: bytes) -> tuple[str | None, str | None]:
        try:
            record = deserializer.decode(value)[1]
        except RegistryUnavailableError:
            raise
        except ContractError:
            return None, None  # the hub dead-lettered it: no entry's event to compare
        if not isinstance(record, dict):
            return None, None
        event_id, event_type = record.get("event_id"), record.get("event_type")
        return (
            None if event_id is None else str(event_id),
            None if event_type is None else str(event_type),
        )

    return decode


def _verify_inputs(
    args: argparse.Namespace,
    chains: dict[str, ChainRecords],
    committed: dict[tuple[str, int], int],
) -> int:
    bootstrap, _ = _settings(args)
    registry = args.registry_url or os.environ.get("SCHEMA_REGISTRY_URL")
    inputs = read_inputs(
        bootstrap,
        sorted(chains),
        committed=committed,
        decode=_decoder(registry),
        timeout_s=args.timeout,
        progress=lambda line: print(line, file=sys.stderr),
    )
    failed = 0
    for chain in sorted({*chains, *inputs}):
        if is_access_chain(chain):
            continue  # reads of personal data: no input record stands behind them
        part = inputs.get(chain)
        if part is None:
            print(f"{chain}: inputs: PROBLEM the chain names no input partition")
            failed += 1
            continue
        entries = chains[chain].entries if chain in chains else []
        found = account(
            entries, part.records, log_start=part.log_start,
            committed=part.committed, dead_letter_offsets=part.dead_letter_offsets,
        )  # fmt: skip
        summary = (
            f"{chain}: inputs: {found.checked} entries match their records, "
            f"{found.not_checkable} not checkable (deleted by retention), "
            f"{found.accounted} consumed records accounted for"
        )
        if found.problems:
            failed += 1
            more = f" (and {len(found.problems) - 1} more)" if len(found.problems) > 1 else ""
            print(f"{summary}: PROBLEM {found.problems[0]}{more}")
        else:
            print(f"{summary}: OK")
    if not registry:
        print("event ids and types NOT compared (no --registry-url): record digests only")
    return failed


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
    for chain in sorted(chains):
        head = _head(chains[chain])
        if head is None:
            print(f"{chain}: no readable head, not stamped")
            continue
        query_file = stamp_head(encode_entry(head), out, chain, args.tsa)
        print(f"{chain}: head seq {head.get('seq')} -> {query_file.name}")
    return 0


def _keygen(out: Path) -> int:
    try:
        signer = generate_key(out)
    except (KeyFileError, OSError) as exc:
        print(f"hub audit keygen: {exc}", file=sys.stderr)
        return 2
    print(f"key {signer.key_id}: private {out} (mode 0600), public {public_key_path(out)}")
    print(f"workers: HUB_AUDIT_SIGNING_KEY={out}; verifiers: --public-key {public_key_path(out)}")
    return 0


def run_audit_command(args: argparse.Namespace) -> int:
    if args.audit_action == "keygen":
        return _keygen(args.out)
    bootstrap, topic = _settings(args)
    try:
        committed = None
        if args.audit_action == "verify" and args.inputs:
            # before the audit topic (see committed_offsets)
            group = args.app_id or os.environ.get("HUB_APP_ID") or "nghean-hub"
            committed = committed_offsets(bootstrap, group)
        chains = read_chains(bootstrap, topic, timeout_s=args.timeout)
        if args.audit_action == "verify":
            return _verify(args, chains, committed)
        if args.audit_action == "stamp":
            return _stamp(args, chains)
    except (AuditReadError, TsaError, KeyFileError, RegistryError) as exc:
        print(f"hub audit: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled audit action {args.audit_action}")
