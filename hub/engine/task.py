"""A task: one partition number's store and what the engine's checkpoints did to it.

A checkpoint is *open* while records are applied to it, then *sealed*: its changelog, meta
and offsets are in its transaction and the commit is under way on the committer's thread,
while the next checkpoint already opens (``hub.engine.loop``). Until the sealed one is
settled (committed and written to the store, or aborted), the open one reads through it:
a dossier's state is the open checkpoint's, else the sealed one's, else the store's; so is
an audit chain's head.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from confluent_kafka import Message

from hub.domain.lifecycle import DossierState
from hub.engine.store import Meta, PartitionStore
from hub.worker.processor import decode_state

__all__ = ["DUE_SLACK", "Sealed", "Task"]

#: void entries the due index's heap may hold beyond twice its live ones before compaction
DUE_SLACK = 1024


@dataclass
class Sealed:
    """A task's part of a checkpoint whose transaction is being committed."""

    dirty: dict[bytes, DossierState]
    before: dict[bytes, DossierState | None]
    next_inputs: dict[str, int]
    audit_heads: dict[str, dict[str, Any]]
    #: the encoded states, as the changelog has them: what the store is given
    raw_states: dict[bytes, bytes | None]
    changelog_last: int = -1  # highest changelog offset delivered for this checkpoint

    def delivered(self, err: Any, msg: Message) -> None:
        """Delivery report of this checkpoint's last changelog record of the task, its meta
        (called on the thread flushing its producer; read once the commit returned)."""
        offset = msg.offset()
        if err is None and offset is not None:
            self.changelog_last = max(self.changelog_last, offset)

    def meta_after(self, meta: Meta) -> Meta:
        """The store's meta once this checkpoint is written over ``meta``."""
        after = meta.copy()
        after.inputs.update(self.next_inputs)
        after.audit_heads.update(self.audit_heads)
        after.changelog_next = self.changelog_last + 1
        return after

    def changes(self) -> list[tuple[DossierState | None, DossierState]]:
        """(before, after) of every dossier it changed: what the view is told."""
        return [(self.before.get(key), state) for key, state in self.dirty.items()]


@dataclass
class Task:
    """One partition number: its store and what the open and sealed checkpoints did to it."""

    partition: int
    store: PartitionStore
    meta: Meta  # as committed: what the store holds
    dirty: dict[bytes, DossierState] = field(default_factory=dict)
    before: dict[bytes, DossierState | None] = field(default_factory=dict)
    next_inputs: dict[str, int] = field(default_factory=dict)  # topic -> next offset
    audit_heads: dict[str, dict[str, Any]] = field(default_factory=dict)  # changed heads
    #: this checkpoint's audit entries (chain, entry), written when it is sealed, heads signed
    audit_pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: the checkpoint being committed, until it is settled
    sealed: Sealed | None = None
    due: list[tuple[date, bytes]] = field(default_factory=list)  # heap, lazily pruned
    due_at: dict[bytes, date] = field(default_factory=dict)

    @property
    def touched(self) -> bool:
        return bool(self.dirty or self.next_inputs or self.audit_heads)

    def state(self, key: bytes) -> DossierState | None:
        if key in self.dirty:
            return self.dirty[key]
        if key in self.before:
            return self.before[key]
        sealed = self.sealed
        if sealed is not None and key in sealed.dirty:
            state: DossierState | None = sealed.dirty[key]
        else:
            state = decode_state(self.store.get(key))
        self.before[key] = state
        return state

    def audit_head(self, chain: str) -> dict[str, Any] | None:
        """The head of ``chain`` as this checkpoint will extend it; None: a new chain."""
        head = self.audit_heads.get(chain)
        if head is None and self.sealed is not None:
            head = self.sealed.audit_heads.get(chain)
        return head or self.meta.audit_heads.get(chain)

    def seal(self, raw_states: dict[bytes, bytes | None]) -> Sealed:
        """The open checkpoint, sealed (its changelog records are ``raw_states``); a new
        one opens. The checkpoint sealed before must have been settled."""
        assert self.sealed is None, "a task's sealed checkpoint is settled before the next"
        sealed = self.sealed = Sealed(
            self.dirty, self.before, self.next_inputs, self.audit_heads, raw_states
        )
        self.dirty, self.before, self.next_inputs, self.audit_heads = {}, {}, {}, {}
        self.audit_pending = []
        return sealed

    def forget_checkpoint(self) -> None:
        """Drop the open checkpoint and the sealed one (both aborted)."""
        self.dirty.clear()
        self.before.clear()
        self.next_inputs.clear()
        self.audit_heads.clear()
        self.audit_pending.clear()
        self.sealed = None

    def index_due(self, key: bytes, state: DossierState | None, when: date | None) -> None:
        if state is None or when is None:
            self.due_at.pop(key, None)
            return
        if self.due_at.get(key) != when:
            self.due_at[key] = when
            heapq.heappush(self.due, (when, key))
            if len(self.due) > 2 * len(self.due_at) + DUE_SLACK:
                self._compact_due()

    def _compact_due(self) -> None:
        """Drop the heap's void entries. A dossier's next alert date moves with most of its
        events and a finished one leaves the index; each left an entry behind in the heap
        until its date came, days later: at 500 events/s that was most of a worker's memory
        growth (the 30-minute soak). Rebuilt from ``due_at`` once void entries are over half,
        so a push stays amortised O(log n)."""
        self.due = [(when, key) for key, when in self.due_at.items()]
        heapq.heapify(self.due)

    def due_keys(self, today: date) -> list[bytes]:
        keys: list[bytes] = []
        while self.due and self.due[0][0] <= today:
            when, key = heapq.heappop(self.due)
            if self.due_at.get(key) == when:
                del self.due_at[key]
                keys.append(key)
        return keys
