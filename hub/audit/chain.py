"""The audit trail's entries and their verification, without Kafka.

One hash chain per input partition (chain key ``<input topic>:<partition>``). Every event
the hub applies gets one entry::

    {"v": 1, "chain": "dossier.events:2", "seq": 7, "topic": "dossier.events",
     "partition": 2, "offset": 41, "event_id": "…", "event_type": "StepStarted",
     "dossier_code": "000.00.03.H40-261126-0001", "record_sha256": "<hex of the record bytes>",
     "prev_hash": "<hash of entry 6, 64 zeros for entry 1>", "hash": "<hex>"}

``hash`` is SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of the entry
without ``hash``, ``key_id`` and ``sig``. Entries hold no personal data: codes, ids and
digests only. The last entry a checkpoint adds to a chain (its head) also carries ``key_id``
and ``sig``, the worker's Ed25519 signature of its hash (:mod:`hub.audit.signing`): without
the private key nobody can add an entry that verifies as a head.

Reads of personal data have chains of their own, one per dossier partition (chain key
``@access:<partition>``: ``@`` is not allowed in a Kafka topic name, so no input chain can
take it): the worker holding the dossier writes, before it answers, who read which dossier
when (``access_entry``)::

    {"v": 1, "kind": "access", "chain": "@access:2", "seq": 3, "who": "so-noi-vu-2026",
     "role": "province", "dossier_code": "…", "at": "2026-12-06T09:41:07.120Z",
     "prev_hash": "…", "hash": "…"}

hashed, linked and signed as the others, and kept in the same topic.

A worker that crashed after its entry was acknowledged but before it stored the state
replays the record and appends the same entry again (same seq, same hash): the verifier
accepts an identical repeat of the previous entry and reports anything else as a problem.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from hub.audit.signing import TrustedKeys

__all__ = [
    "ACCESS_FIELDS",
    "ENTRY_FIELDS",
    "GENESIS",
    "Problem",
    "access_chain",
    "access_entry",
    "canonical",
    "chain_key",
    "entry_for",
    "entry_hash",
    "is_access_chain",
    "verify_chain",
]

GENESIS = "0" * 64
VERSION = 1
ENTRY_FIELDS = (
    "v", "chain", "seq", "topic", "partition", "offset", "event_id", "event_type",
    "dossier_code", "record_sha256", "prev_hash", "hash",
)  # fmt: skip


ACCESS_FIELDS = (
    "v", "kind", "chain", "seq", "who", "role", "dossier_code", "at", "prev_hash", "hash",
)  # fmt: skip
ACCESS_KIND = "access"
_ACCESS_CHAIN = "@access:"


def chain_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def access_chain(partition: int) -> str:
    """The chain of personal-data reads of the dossiers of ``partition``."""
    return f"{_ACCESS_CHAIN}{partition}"


def is_access_chain(chain: str) -> bool:
    return chain.startswith(_ACCESS_CHAIN)


#: canonical JSON: keys sorted, no spaces, UTF-8 (not \u-escaped). msgspec writes exactly
#: the bytes of ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` for
#: the entries' types (strings, integers, null; tests/unit/test_audit.py checks it), about
#: eight times faster: the worker writes an entry per event
_CANONICAL = msgspec.json.Encoder(order="sorted")


def canonical_json(value: Mapping[str, Any]) -> bytes:
    return _CANONICAL.encode(value)


#: fields about an entry rather than of it: not part of the hashed bytes
_UNHASHED = frozenset({"hash", "key_id", "sig"})


def canonical(entry: Mapping[str, Any]) -> bytes:
    """Canonical JSON of ``entry`` without ``hash``, ``key_id``, ``sig``: the hashed bytes."""
    return canonical_json({name: value for name, value in entry.items() if name not in _UNHASHED})


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def entry_for(
    previous: Mapping[str, Any] | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    event_id: str,
    event_type: str | None,
    dossier_code: str,
    record: bytes,
) -> dict[str, Any]:
    """The entry for one applied record, after ``previous`` (the chain's head, or None).

    When ``previous`` is the entry of this very record (same topic, partition and offset: a
    replay after a crash), it is returned unchanged, so the repeat is identical."""
    if (
        previous is not None
        and previous.get("topic") == topic
        and previous.get("partition") == partition
        and previous.get("offset") == offset
    ):
        return dict(previous)
    entry: dict[str, Any] = {
        "v": VERSION,
        "chain": chain_key(topic, partition),
        "seq": 1 if previous is None else int(previous["seq"]) + 1,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "event_id": event_id,
        "event_type": event_type,
        "dossier_code": dossier_code,
        "record_sha256": hashlib.sha256(record).hexdigest(),
        "prev_hash": GENESIS if previous is None else str(previous["hash"]),
    }
    entry["hash"] = entry_hash(entry)
    return entry


def access_entry(
    previous: Mapping[str, Any] | None,
    *,
    partition: int,
    who: str,
    role: str,
    dossier_code: str,
    at: str,
) -> dict[str, Any]:
    """The entry recording that ``who`` (a credential's key id, in ``role``) read the
    personal data of ``dossier_code`` at ``at`` (UTC, ISO 8601), after ``previous``."""
    entry: dict[str, Any] = {
        "v": VERSION,
        "kind": ACCESS_KIND,
        "chain": access_chain(partition),
        "seq": 1 if previous is None else int(previous["seq"]) + 1,
        "who": who,
        "role": role,
        "dossier_code": dossier_code,
        "at": at,
        "prev_hash": GENESIS if previous is None else str(previous["hash"]),
    }
    entry["hash"] = entry_hash(entry)
    return entry


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with a chain. ``kind``: altered | removed | reordered |
    malformed | truncated (its first entries are gone) | forged (an entry that a worker did
    not write: a bad signature, an unsigned last entry, a second entry with one seq)."""

    chain: str
    kind: str
    seq: int | None
    position: str  # where in the audit topic, e.g. "2:41" (partition:offset), or "#5"
    message: str

    def __str__(self) -> str:
        return f"{self.chain}: {self.kind} at seq {self.seq} ({self.position}): {self.message}"


def _problem(
    chain: str, kind: str, entry: Mapping[str, Any], position: str, message: str
) -> Problem:
    seq = entry.get("seq")
    return Problem(chain, kind, seq if isinstance(seq, int) else None, position, message)


def verify_chain(
    entries: Iterable[Mapping[str, Any]],
    *,
    chain: str | None = None,
    positions: Iterable[str] | None = None,
    keys: TrustedKeys | None = None,
) -> list[Problem]:
    """Problems of one chain's entries in the order they were written; [] when intact.

    Checks each entry's own hash (altered), that seq starts at 1 (truncated: the log's
    first records were deleted) and grows by one with ``prev_hash`` equal to the previous
    entry's hash (removed: a gap or a broken link; reordered: a seq not after the previous
    one; forged: another entry with the previous one's seq). With ``keys``, every signature
    must verify with a trusted key and the chain's last entry must be signed (forged
    otherwise: only a worker holding the private key signs heads). An identical repeat of
    the previous entry (same seq, same hash) is harmless. Stops at the first problem: what
    follows it cannot be trusted to be judged correctly."""
    listed = list(entries)
    where = list(positions) if positions is not None else [f"#{i}" for i in range(len(listed))]
    name = chain or (str(listed[0].get("chain")) if listed else "?")
    previous: Mapping[str, Any] | None = None
    for index, (entry, position) in enumerate(zip(listed, where, strict=True)):
        fields = ACCESS_FIELDS if entry.get("kind") == ACCESS_KIND else ENTRY_FIELDS
        missing = [f for f in fields if f not in entry]
        if missing or not isinstance(entry.get("seq"), int):
            return [_problem(name, "malformed", entry, position, f"missing {missing or 'seq'}")]
        if entry.get("chain") != name:
            return [
                _problem(name, "altered", entry, position, f"entry names chain {entry['chain']}")
            ]
        if entry_hash(entry) != entry["hash"]:
            return [_problem(name, "altered", entry, position, "hash mismatch")]
        if keys is not None and "sig" in entry:
            wrong = keys.problem(entry)
            if wrong is not None:
                return [_problem(name, "forged", entry, position, wrong)]
        seq = entry["seq"]
        if previous is None:
            if seq != 1 or entry["prev_hash"] != GENESIS:
                return [
                    _problem(
                        name, "truncated", entry, position,
                        f"chain starts at seq {seq}, not 1: its first entries were deleted",
                    )
                ]  # fmt: skip
        elif seq == previous["seq"] and entry["hash"] == previous["hash"]:
            continue  # an identical repeat: a replay after a crash
        elif seq == previous["seq"]:
            return [
                _problem(
                    name, "forged", entry, position,
                    f"a second entry with seq {seq}: the chain forks here",
                )
            ]  # fmt: skip
        elif seq <= previous["seq"]:
            return [
                _problem(
                    name, "reordered", entry, position,
                    f"seq out of order: {seq} after {previous['seq']}",
                )
            ]  # fmt: skip
        elif seq != previous["seq"] + 1:
            expected = previous["seq"] + 1
            if any(later.get("seq") == expected for later in listed[index + 1 :]):
                return [
                    _problem(
                        name, "reordered", entry, position,
                        f"seq out of order: {seq} before {expected}",
                    )
                ]  # fmt: skip
            return [
                _problem(
                    name, "removed", entry, position,
                    f"seq gap: expected {previous['seq'] + 1}, found {seq}",
                )
            ]  # fmt: skip
        elif entry["prev_hash"] != previous["hash"]:
            return [
                _problem(
                    name, "removed", entry, position,
                    f"prev-hash mismatch: does not link to seq {previous['seq']}",
                )
            ]  # fmt: skip
        previous = entry
    if keys is not None and previous is not None and "sig" not in previous:
        last = len(listed) - 1
        return [
            _problem(
                name, "forged", previous, where[last],
                "the chain's last entry is not signed: no worker wrote it as a head",
            )
        ]  # fmt: skip
    return []
