"""Audit entries held against the input records they claim to describe, without Kafka.

A chain that verifies proves its entries were written in order by a holder of the signing key;
it does not prove they describe real input. ``account`` compares one chain (one input
partition) with what that partition holds:

* every entry names an input offset: the record there must exist and its bytes must have the
  entry's ``record_sha256`` (and, when the record could be decoded, the entry's event id and
  type); an offset the log no longer holds because retention deleted it is *not checkable*,
  which is not a forgery;
* every input record the hub has committed past (below the group's committed offset) must be
  accounted for: an audit entry, a dead letter naming its offset, or a redelivery of an event
  id the chain already holds (the hub applies an event once: a repeat leaves no entry). One
  that is none of these was consumed and silently dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Accounting", "InputRecord", "account"]


@dataclass(frozen=True)
class InputRecord:
    """One input record as read back: its bytes, and its event id and type when decoded."""

    offset: int
    value: bytes | None
    event_id: str | None = None
    event_type: str | None = None


@dataclass
class Accounting:
    """What ``account`` found for one chain."""

    checked: int = 0  # entries whose input record was found and matched
    not_checkable: int = 0  # entries whose record retention has deleted
    accounted: int = 0  # committed input records with an entry, a dead letter or a repeat
    problems: list[str] = field(default_factory=list)


def account(
    entries: Iterable[Mapping[str, Any]],
    records: Iterable[InputRecord],
    *,
    log_start: int,
    committed: int | None,
    dead_letter_offsets: Iterable[int] = (),
) -> Accounting:
    """Hold one chain's ``entries`` against its input partition's ``records`` (read from
    ``log_start``, the first offset the log still holds, up to at least ``committed``, the
    hub's committed offset, None when it committed none)."""
    result = Accounting()
    by_offset = {r.offset: r for r in records}
    entered: dict[int, Mapping[str, Any]] = {}
    for entry in entries:
        offset = entry.get("offset")
        if not isinstance(offset, int) or offset in entered:
            continue  # malformed (the chain check says so) or an identical repeat
        entered[offset] = entry
        if offset < log_start:
            result.not_checkable += 1
            continue
        record = by_offset.get(offset)
        if record is None:
            result.problems.append(f"seq {entry.get('seq')}: no input record at offset {offset}")
            continue
        digest = hashlib.sha256(record.value or b"").hexdigest()
        if digest != entry.get("record_sha256"):
            result.problems.append(
                f"seq {entry.get('seq')}: the input record at offset {offset} is not the one "
                "the entry describes (record_sha256 differs)"
            )
            continue
        for name, actual in (("event_id", record.event_id), ("event_type", record.event_type)):
            if actual is not None and entry.get(name) != actual:
                result.problems.append(
                    f"seq {entry.get('seq')}: the entry's {name} is not the input record's "
                    f"(offset {offset})"
                )
                break
        else:
            result.checked += 1
    if committed is None:
        return result
    dead = set(dead_letter_offsets)
    event_ids = {str(e.get("event_id")) for e in entered.values()}
    for offset in sorted(by_offset):
        if offset >= committed:
            break
        record = by_offset[offset]
        if offset in entered or offset in dead:
            result.accounted += 1
        elif record.event_id is not None and record.event_id in event_ids:
            result.accounted += 1  # a redelivery of an applied event: no entry of its own
        else:
            result.problems.append(
                f"input offset {offset} was consumed (committed {committed}) but has neither "
                "an audit entry nor a dead letter"
            )
    return result
