"""The dossier state machine: ``apply(state, event, ctx) -> Outcome``, pure and total.

``TRANSITIONS`` (data, below) says which event types are legal in which status and the status
they lead to (``None`` target: status unchanged). ``apply`` never mutates its input: states
are frozen msgspec Structs, and each applied event builds its new state from copies
(``msgspec.structs.replace``, a fraction of a microsecond each).

Rules beyond the table
----------------------
* Idempotency: an event whose id is among the dossier's last ``DEDUP_WINDOW`` (32) applied
  event ids (``state.applied_event_ids``) is a ``Duplicate`` and changes nothing (checked
  before anything else, so a redelivery is never rejected). The window is bounded on purpose:
  a redelivered record is already recognised by its input offset (the worker stores the next
  offset with the state, and the transactional engine commits both at once), so event-id
  deduplication only has to cover a producer that retried and wrote the same event again at
  a new offset. Such a retry follows the original within the producer's retry time, i.e.
  within a few events of the same dossier; 32 ids (16 bytes each, 512 bytes a dossier at
  most) cover any dossier life the province has, while a dossier's memory stays bounded
  however long its history. An id older than the window is applied again only if a producer
  re-sends it after 32 later events of the same dossier, which a retry does not do.
* A dossier the hub has never seen accepts only ``DossierSubmitted`` (creates NEW) or
  ``DossierReceived`` (creates RECEIVED: in-person desk without a prior submission; the
  channel is then taken as IN_PERSON and the procedure is unknown). Anything else is
  ``Rejected("unknown_dossier")`` and can be replayed from the DLQ once the earlier events
  are in.
* Agency: the emitting agency, resolved through mergers at the event's local date, must be
  the handling agency or one that handled the dossier before (receiving desk, transfer
  source): liên thông results and apologies are often issued by the receiving desk while the
  dossier sits elsewhere. Otherwise ``Rejected("agency_mismatch")``. A transfer's
  ``from_agency_code`` must be the current handler. The handling agency itself is re-resolved
  on every event, so an open dossier of a merged agency carries on under its successor.
  Feedback events are not checked (they come from the portal).
* Adjustments to the plain table, from the domain: a late ``DossierSubmitted`` for a dossier
  opened by ``DossierReceived`` (no submission recorded) is accepted in every status but NEW;
  it fills in procedure, channel, applicant and submission time, keeps the status, computes a
  missing appointment date, and emits a ``StatusChange`` (the portal needs MaTTHC/ChuHoSo). A
  second submission is ``Rejected("already_submitted")``. ``ApologyIssued`` is accepted in
  PROCESSED too (it is not terminal: the result may still be late for collection).
* Feedback (ServiceRated, ComplaintFiled) is accepted in every status of a known dossier; it
  only adds a timeline entry (for idempotency) and emits no status change.

Out-of-order arrivals tolerated
-------------------------------
Legality is judged against the current status only, never against timestamps. An event
whose ``occurred_at`` is older than ``last_event_at`` is applied whenever its transition is
legal; its timeline entry is inserted in ``occurred_at`` order (ties keep arrival order) and
``last_event_at`` stays the maximum. Where two events of the same kind race, the newest by
``occurred_at`` wins: a ``StepStarted`` older than the current step's start is recorded in the
timeline but does not replace the current step; an ``ApologyIssued`` older than an already
applied apology is recorded (and its date kept) but does not move the appointment date back.
A clock resumption dated before its pause counts zero paused days. Events that are illegal
in the current status (e.g. a ``StepStarted`` arriving after ``DossierProcessed``) are
rejected with rule ``illegal_transition`` and can be replayed.

Status changes
--------------
``Applied.status_change`` is set whenever the status changes, and also, with the status
unchanged, for StepStarted, StepCompleted, DossierTransferred and ApologyIssued (the portal
must hear of a new step, handler or appointment date) and for a late DossierSubmitted.

Calendar errors (a year with no calendar loaded) propagate as exceptions from the calendar.
Notes in the timeline are built by the hub from codes and numbers only: no free text from
agencies (reasons may name people) and no personal data.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias

import msgspec

from hub.contract.event_types import DossierEventType, FeedbackEventType
from hub.domain.calendar import CalendarError
from hub.domain.events import (
    ApologyIssued,
    Channel,
    ComplaintFiled,
    DomainEvent,
    DossierEvent,
    DossierProcessed,
    DossierReceived,
    DossierRefused,
    DossierSubmitted,
    DossierSupplemented,
    DossierTransferred,
    DossierWithdrawn,
    FinancialObligationPaid,
    FinancialObligationRequested,
    ProcessingStopped,
    ResultReturned,
    ServiceRated,
    StepCompleted,
    StepStarted,
    SupplementRequested,
    local_date,
)
from hub.domain.status import FINISHED_STATUSES, TERMINAL_STATUSES, DossierStatus
from hub.domain.timeline import EMPTY_TIMELINE, Timeline, TimelineEntry, array_header

__all__ = [
    "DEDUP_WINDOW",
    "NOTE_MAX_CHARS",
    "PORTAL_NOTIFIED_EVENTS",
    "RATED_NOTE",
    "TRANSITIONS",
    "Applied",
    "CurrentStep",
    "DossierState",
    "Duplicate",
    "LateStep",
    "Outcome",
    "ProcedureRule",
    "Rejected",
    "RuleContext",
    "StatusChange",
    "Timeline",
    "TimelineEntry",
    "Transfer",
    "WorkingDays",
    "apply",
    "event_key",
    "evolve",
    "step_deadline_from_shares",
]

NOTE_MAX_CHARS = 200

S = DossierStatus
E = DossierEventType


class WorkingDays(Protocol):
    """What the domain needs from the working-day calendar (``hub.domain.calendar``).
    Hashable: it is immutable, and answers derived from it alone are cached by it."""

    def __hash__(self) -> int: ...

    def is_working_day(self, d: date, /) -> bool: ...

    def add_working_days(self, start: date, n: int, /) -> date: ...

    def working_days_between(self, a: date, b: date, /) -> int: ...

    def next_working_day(self, d: date, /) -> date: ...


@dataclass(frozen=True, slots=True)
class ProcedureRule:
    """The statutory terms of a procedure (TTHC).

    ``step_shares[i]`` is the share of ``working_days`` allotted to step ``i + 1``; a step's
    deadline is the receipt date plus ceil(cumulative share x working_days) working days.
    """

    working_days: int
    step_shares: tuple[float, ...] = ()
    #: ``step_days[i]``: the working days from receipt to the deadline of step ``i + 1``,
    #: worked out once here rather than on every ``StepStarted``.
    step_days: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        days = tuple(
            max(1, math.ceil(round(sum(self.step_shares[:n]) * self.working_days, 6)))
            for n in range(1, len(self.step_shares) + 1)
        )
        object.__setattr__(self, "step_days", days)


@dataclass(frozen=True, slots=True)
class RuleContext:
    calendar: WorkingDays
    procedure: Callable[[str], ProcedureRule | None]
    resolve_agency: Callable[[str, date], str]


# --- the transition table ------------------------------------------------------------------

_OPEN = (S.RECEIVED, S.PROCESSING, S.SUPPLEMENT_REQUESTED, S.FINANCIAL_OBLIGATION_REQUESTED)


def _build_transitions() -> Mapping[DossierStatus | None, Mapping[DossierEventType, S | None]]:
    rules: list[tuple[tuple[DossierStatus | None, ...], DossierEventType, DossierStatus]] = [
        ((None,), E.SUBMITTED, S.NEW),
        ((None, S.NEW), E.RECEIVED, S.RECEIVED),
        ((S.NEW, S.RECEIVED), E.REFUSED, S.NOT_RECEIVED),
        ((S.RECEIVED, S.PROCESSING), E.STEP_STARTED, S.PROCESSING),
        ((S.RECEIVED, S.PROCESSING), E.STEP_COMPLETED, S.PROCESSING),
        ((S.RECEIVED, S.PROCESSING), E.TRANSFERRED, S.PROCESSING),
        ((S.RECEIVED, S.PROCESSING), E.SUPPLEMENT_REQUESTED, S.SUPPLEMENT_REQUESTED),
        ((S.SUPPLEMENT_REQUESTED,), E.SUPPLEMENTED, S.PROCESSING),
        ((S.PROCESSING,), E.FINANCIAL_OBLIGATION_REQUESTED, S.FINANCIAL_OBLIGATION_REQUESTED),
        ((S.FINANCIAL_OBLIGATION_REQUESTED,), E.FINANCIAL_OBLIGATION_PAID, S.PROCESSING),
        ((S.RECEIVED, S.PROCESSING), E.PROCESSED, S.PROCESSED),
        ((S.PROCESSED,), E.RESULT_RETURNED, S.RESULT_RETURNED),
        (_OPEN, E.STOPPED, S.STOPPED),
        ((S.NEW, *_OPEN), E.WITHDRAWN, S.WITHDRAWN),
    ]
    table: dict[DossierStatus | None, dict[DossierEventType, DossierStatus | None]] = {
        status: {} for status in (None, *DossierStatus)
    }
    for sources, event_type, target in rules:
        for source in sources:
            table[source][event_type] = None if source == target else target
    # Apology: any non-terminal status but NEW; it moves the appointment date only.
    for status in DossierStatus:
        if status is not S.NEW and status not in TERMINAL_STATUSES:
            table[status][E.APOLOGY_ISSUED] = None
    # Late submission details for a dossier opened at the desk (guarded in apply).
    for status in DossierStatus:
        if status is not S.NEW:
            table[status][E.SUBMITTED] = None
    return MappingProxyType({k: MappingProxyType(v) for k, v in table.items()})


TRANSITIONS: Mapping[DossierStatus | None, Mapping[DossierEventType, DossierStatus | None]] = (
    _build_transitions()
)

#: Event types that emit a StatusChange even when the status stays the same.
PORTAL_NOTIFIED_EVENTS: frozenset[DossierEventType] = frozenset(
    {E.STEP_STARTED, E.STEP_COMPLETED, E.TRANSFERRED, E.APOLOGY_ISSUED, E.SUBMITTED}
)


# --- state ---------------------------------------------------------------------------------


# The state types are frozen msgspec Structs: built, copied (``msgspec.structs.replace``) and
# stored (``hub.worker.processor``) in C, several times faster than frozen dataclasses, whose
# ``__init__`` sets each field through ``object.__setattr__``. ``gc=False``: a state is a
# tree of immutable values that never refers back to a state, so it cannot be part of a
# reference cycle and the cycle collector need not track it. ``array_like``: stored as an
# array of the fields in this order (smaller and faster than a map); the field order is
# therefore part of the stored format: new fields go at the end, with a default.


class CurrentStep(msgspec.Struct, frozen=True, array_like=True, gc=False):
    step_no: int
    step_name: str
    official: str  # NguoiXuLy
    unit: str  # PhongBanXuLy
    started_at: datetime
    step_deadline: date | None  # NgayKetThucTheoQuyDinh, before supplement shifts
    paused_base: int = 0  # state.paused_working_days when the step started
    completed_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **_step_identity(self),
            "started_at": self.started_at.isoformat(),
            "deadline": _iso(self.step_deadline),
            "paused_base": self.paused_base,
            "completed_at": _iso(self.completed_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CurrentStep:
        return cls(
            **_step_identity_from(data),
            started_at=datetime.fromisoformat(data["started_at"]),
            step_deadline=_opt_date(data.get("deadline")),
            paused_base=int(data.get("paused_base", 0)),
            completed_at=_opt_dt(data.get("completed_at")),
        )


_step_encoder = msgspec.msgpack.Encoder()
_steps_of = msgspec.msgpack.Decoder(list[CurrentStep])


class StepLog(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The completed steps, kept as one pre-encoded blob like the timeline
    (``hub.domain.timeline``): a stored state carries ``[count, blob]``, so an event that
    completes no step pays nothing for the history, and the steps are decoded only when
    someone reads them (the dossier page)."""

    count: int = 0
    blob: bytes = b""  # ``count`` msgpack arrays of CurrentStep, in completion order

    @classmethod
    def of(cls, steps: Iterable[CurrentStep]) -> StepLog:
        items = list(steps)
        return cls(len(items), b"".join(_step_encoder.encode(s) for s in items))

    def append(self, step: CurrentStep) -> StepLog:
        return StepLog(self.count + 1, self.blob + _step_encoder.encode(step))

    def __iter__(self) -> Iterator[CurrentStep]:
        if not self.count:
            return iter(())
        return iter(_steps_of.decode(array_header(self.count) + self.blob))

    def __len__(self) -> int:
        return self.count


EMPTY_STEPS = StepLog()


def _step_identity(step: CurrentStep | LateStep) -> dict[str, Any]:
    """A step's number, name, official and unit in the JSON form (``to_dict``)."""
    return {
        "no": step.step_no,
        "name": step.step_name,
        "official": step.official,
        "unit": step.unit,
    }


def _step_identity_from(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "step_no": int(data["no"]),
        "step_name": str(data["name"]),
        "official": str(data["official"]),
        "unit": str(data["unit"]),
    }


class LateStep(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A processing step finished after its deadline: who made the dossier late, for the
    province's accountability rules. ``deadline`` is the step's deadline as shifted by the
    supplement pauses since the step started; ``agency_code`` held the dossier then."""

    step_no: int
    step_name: str
    official: str  # NguoiXuLy
    unit: str  # PhongBanXuLy
    agency_code: str
    deadline: date
    completed_on: date  # local date
    working_days_over: int  # working days after the deadline up to completed_on (0: a day off)

    def to_dict(self) -> dict[str, Any]:
        return {
            **_step_identity(self),
            "agency_code": self.agency_code,
            "deadline": self.deadline.isoformat(),
            "completed_on": self.completed_on.isoformat(),
            "working_days_over": self.working_days_over,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LateStep:
        return cls(
            **_step_identity_from(data),
            agency_code=str(data["agency_code"]),
            deadline=date.fromisoformat(data["deadline"]),
            completed_on=date.fromisoformat(data["completed_on"]),
            working_days_over=int(data["working_days_over"]),
        )


class DossierState(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False):
    """The hub's view of one dossier. Frozen: ``apply`` returns new states.

    Equality and hash leave out ``recent_event_keys`` (see there)."""

    dossier_code: str
    procedure_code: str | None
    channel: Channel
    agency_code: str  # DonViXuLy: the agency handling it now (after mergers and transfers)
    status: DossierStatus
    last_event_at: datetime
    submitted_at: datetime | None = None
    received_at: datetime | None = None
    appointment_date: date | None = None  # NgayHenTra in force (after apologies)
    original_appointment_date: date | None = None
    paused_since: date | None = None  # local date the supplement clock stopped
    paused_working_days: int = 0  # working days paused by completed supplement rounds
    supplement_requests: int = 0
    current_step: CurrentStep | None = None
    timeline: Timeline = EMPTY_TIMELINE  # append-only, decoded lazily (hub.domain.timeline)
    processed_at: datetime | None = None
    returned_at: datetime | None = None
    finished_at: datetime | None = None  # NgayKetThucXuLy: processed, refused, stopped, ...
    apology_dates: tuple[date, ...] = ()  # local dates apology slips were issued
    electronic_result: bool = False
    applicant_name: str | None = None  # PII: kept only for the portal's ChuHoSo
    alerts_emitted: frozenset[str] = frozenset()
    handled_by: tuple[str, ...] = ()  # agencies that held the dossier, in order
    #: the dedup window: 16-byte keys (``event_key``) of the last ``DEDUP_WINDOW`` applied
    #: events, oldest first. A function of the timeline's arrival order, which the JSON form
    #: does not keep; so not part of equality (the timeline is): ``__eq__`` below.
    recent_event_keys: bytes = b""
    # Running sums of the timeline, so nothing on the per-event path reads the timeline:
    ratings_count: int = 0  # ServiceRated entries
    ratings_sum: int = 0  # their scores
    complaints: int = 0  # ComplaintFiled entries
    last_apology_at: datetime | None = None  # newest ApologyIssued entry's occurred_at
    #: steps completed after their deadline, in completion order (``LateStep``)
    late_steps: tuple[LateStep, ...] = ()
    #: every completed step, in completion order, with its unit, official and deadline: the
    #: dossier page's timeline of steps (the current step is ``current_step`` until done)
    steps: StepLog = EMPTY_STEPS

    # Structs compare every field; a state's equality is every field but the dedup window.
    def __eq__(self, other: object) -> bool:
        if type(other) is not DossierState:
            return NotImplemented
        return _compared(self) == _compared(other)

    def __hash__(self) -> int:
        return hash(_compared(self))

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def is_paused(self) -> bool:
        return self.paused_since is not None

    @property
    def applied_event_ids(self) -> frozenset[str]:
        """The ids inside the dedup window: the last ``DEDUP_WINDOW`` timeline entries in the
        order they were applied. (Decodes the timeline: not for the per-event path.)"""
        window = len(self.recent_event_keys) // _KEY_SIZE
        return frozenset(e.event_id for e in self.timeline.arrival_order()[-window:] if window)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, compact: absent/empty values are left out; event ids are not repeated
        (they are the timeline's)."""
        data: dict[str, Any] = {
            "v": 1,
            "dossier_code": self.dossier_code,
            "procedure_code": self.procedure_code,
            "channel": self.channel.value,
            "agency_code": self.agency_code,
            "status": self.status.value,
            "last_event_at": self.last_event_at.isoformat(),
            "submitted_at": _iso(self.submitted_at),
            "received_at": _iso(self.received_at),
            "appointment_date": _iso(self.appointment_date),
            "original_appointment_date": _iso(self.original_appointment_date),
            "paused_since": _iso(self.paused_since),
            "paused_working_days": self.paused_working_days,
            "supplement_requests": self.supplement_requests,
            "current_step": self.current_step.to_dict() if self.current_step else None,
            "timeline": [entry.to_list() for entry in self.timeline],
            "processed_at": _iso(self.processed_at),
            "returned_at": _iso(self.returned_at),
            "finished_at": _iso(self.finished_at),
            "apology_dates": [d.isoformat() for d in self.apology_dates],
            "electronic_result": self.electronic_result,
            "applicant_name": self.applicant_name,
            "alerts_emitted": sorted(self.alerts_emitted),
            "handled_by": list(self.handled_by),
            "late_steps": [step.to_dict() for step in self.late_steps],
            "steps": [step.to_dict() for step in self.steps],
        }
        return {k: v for k, v in data.items() if v not in (None, [], 0, False)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DossierState:
        if data.get("v", 1) != 1:
            raise ValueError("unsupported dossier state version")
        entries = [TimelineEntry.from_list(e) for e in data.get("timeline", [])]
        rated = [e for e in entries if e.event_type == FeedbackEventType.RATING.value]
        scores = [int(m.group(1)) for e in rated if (m := RATED_NOTE.fullmatch(e.note))]
        apologies = [e.occurred_at for e in entries if e.event_type == E.APOLOGY_ISSUED]
        step = data.get("current_step")
        return cls(
            dossier_code=str(data["dossier_code"]),
            procedure_code=data.get("procedure_code"),
            channel=Channel(data["channel"]),
            agency_code=str(data["agency_code"]),
            status=DossierStatus(data["status"]),
            last_event_at=datetime.fromisoformat(data["last_event_at"]),
            submitted_at=_opt_dt(data.get("submitted_at")),
            received_at=_opt_dt(data.get("received_at")),
            appointment_date=_opt_date(data.get("appointment_date")),
            original_appointment_date=_opt_date(data.get("original_appointment_date")),
            paused_since=_opt_date(data.get("paused_since")),
            paused_working_days=int(data.get("paused_working_days", 0)),
            supplement_requests=int(data.get("supplement_requests", 0)),
            current_step=CurrentStep.from_dict(step) if step else None,
            timeline=Timeline.of(entries),
            processed_at=_opt_dt(data.get("processed_at")),
            returned_at=_opt_dt(data.get("returned_at")),
            finished_at=_opt_dt(data.get("finished_at")),
            apology_dates=tuple(date.fromisoformat(d) for d in data.get("apology_dates", [])),
            electronic_result=bool(data.get("electronic_result", False)),
            applicant_name=data.get("applicant_name"),
            alerts_emitted=frozenset(data.get("alerts_emitted", [])),
            handled_by=tuple(data.get("handled_by", [])),
            # The JSON kept no arrival order: the newest entries stand for the last applied.
            recent_event_keys=b"".join(event_key(e.event_id) for e in entries[-DEDUP_WINDOW:]),
            ratings_count=len(scores),
            ratings_sum=sum(scores),
            complaints=sum(1 for e in entries if e.event_type == FeedbackEventType.COMPLAINT.value),
            last_apology_at=max(apologies, default=None),
            late_steps=tuple(LateStep.from_dict(s) for s in data.get("late_steps", [])),
            steps=StepLog.of(CurrentStep.from_dict(s) for s in data.get("steps", [])),
        )


#: Event ids remembered per dossier for deduplication (see the module docstring).
DEDUP_WINDOW = 32
_KEY_SIZE = 16
_KEY_NAMESPACE = uuid.UUID("3b0c7f1e-2d4a-5e6b-8c9d-0a1b2c3d4e5f")
#: The note of a rating entry; ``standing`` and ``from_dict`` read the score from it.
RATED_NOTE = re.compile(r"rated (\d)/5")


#: What a state's equality compares: every field but the dedup window, in field order.
_compared = attrgetter(*(f for f in DossierState.__struct_fields__ if f != "recent_event_keys"))

#: A copy of a state with some fields changed (about 0.2 µs for 28 fields, in C; fields are
#: not re-validated, as with ``dataclasses.replace``).
_replace = msgspec.structs.replace


def evolve(state: DossierState, **changes: Any) -> DossierState:
    """A copy of ``state`` with ``changes`` (``msgspec.structs.replace``)."""
    return _replace(state, **changes)


def event_key(event_id: str) -> bytes:
    """16 bytes standing for an event id: the UUID's own bytes (ids are UUIDs at the
    boundary), or a UUIDv5 of any other id (tests, legacy)."""
    if len(event_id) == 36:  # the canonical spelling: its hex digits are the bytes
        try:
            key = bytes.fromhex(event_id.replace("-", ""))
        except ValueError:
            key = b""
        if len(key) == _KEY_SIZE:
            return key
    try:
        return uuid.UUID(event_id).bytes
    except ValueError:
        return uuid.uuid5(_KEY_NAMESPACE, event_id).bytes


def _in_window(keys: bytes, key: bytes) -> bool:
    at = keys.find(key)
    while at != -1:
        if at % _KEY_SIZE == 0:  # a match straddling two keys is not a key
            return True
        at = keys.find(key, at + 1)
    return False


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _opt_dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _opt_date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


# --- outcomes ------------------------------------------------------------------------------


class StatusChange(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What ``dossier.status`` / ``portal.outbox`` carry (the shell adds envelope and codes)."""

    dossier_code: str
    previous: DossierStatus | None
    status: DossierStatus
    cause_event_id: str
    cause_event_type: DossierEventType
    occurred_at: datetime
    procedure_code: str | None
    channel: Channel
    agency_code: str  # DonViXuLy
    received_at: datetime | None
    appointment_date: date | None
    finished_at: datetime | None
    returned_at: datetime | None
    step: CurrentStep | None
    applicant_name: str | None  # PII

    @property
    def status_changed(self) -> bool:
        return self.previous != self.status


class Transfer(msgspec.Struct, frozen=True, gc=False):
    """A dossier handed to another agency (inter-agency processing): ``agency.inbox.*``."""

    dossier_code: str
    from_agency: str
    to_agency: str
    state: DossierState
    cause_event_id: str


class Applied(msgspec.Struct, frozen=True, gc=False):
    state: DossierState
    status_change: StatusChange | None = None
    transfer: Transfer | None = None


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The event id was already applied: nothing changes, nothing is emitted."""


@dataclass(frozen=True, slots=True)
class Rejected:
    rule: str  # unknown_dossier, illegal_transition, agency_mismatch, ...
    reason: str  # status, event type and dossier code; never personal data


Outcome: TypeAlias = Applied | Duplicate | Rejected


# --- apply ---------------------------------------------------------------------------------


def apply(state: DossierState | None, event: DomainEvent, ctx: RuleContext) -> Outcome:
    """Apply one event to a dossier's state (None: never seen). Pure."""
    key = event_key(event.event_id)
    if state is not None:
        if _in_window(state.recent_event_keys, key):
            return Duplicate()
        if event.dossier_code != state.dossier_code:
            return Rejected(
                "dossier_mismatch",
                f"{event.event_type} for dossier {event.dossier_code} applied to the state "
                f"of dossier {state.dossier_code}",
            )
    if isinstance(event, _FEEDBACK):
        return _apply_feedback(state, event, key)

    current = state.status if state is not None else None
    row = TRANSITIONS[current]
    if event.event_type not in row:
        if state is None:
            return Rejected(
                "unknown_dossier",
                f"{event.event_type} for dossier {event.dossier_code}, which the hub has not "
                "seen submitted or received",
            )
        return Rejected(
            "illegal_transition",
            f"{event.event_type} is not allowed in status {current} (dossier {event.dossier_code})",
        )
    target = row[event.event_type]
    day = local_date(event.occurred_at)
    emitter = ctx.resolve_agency(event.agency_code, day)

    if state is None:
        draft = _create(event, emitter)
        if isinstance(draft, Rejected):
            return draft
        new_state, note = draft
        return _finish(None, new_state, event, note, None, emitter, key)

    handler = ctx.resolve_agency(state.agency_code, day)
    changes: dict[str, Any] = {}
    handled_by = state.handled_by
    if handler != state.agency_code:
        handled_by = _append(handled_by, handler)
        changes.update(agency_code=handler, handled_by=handled_by)
    # allowed: the handler, or any former holder (as resolved today); the handler is the
    # common case, so the former holders are only resolved when it is not.
    if emitter != handler and all(ctx.resolve_agency(c, day) != emitter for c in handled_by):
        return Rejected(
            "agency_mismatch",
            f"{event.event_type} from agency {event.agency_code} for dossier "
            f"{state.dossier_code} handled by {handler} in status {current}",
        )
    if target is not None:
        changes["status"] = target
    base = _replace(state, **changes) if changes else state  # new status and handler
    result = _HANDLERS[event.event_type](base, event, ctx, day)
    if isinstance(result, Rejected):
        return result
    new_state, note, transfer = result
    if new_state.paused_since is not None and new_state.status is not S.SUPPLEMENT_REQUESTED:
        new_state = _close_pause(new_state, day, ctx.calendar)
    return _finish(state, new_state, event, note, transfer, emitter, key)


_FEEDBACK = (ServiceRated, ComplaintFiled)  # a tuple: ``isinstance`` with ``A | B`` is slower
#: The timeline's spelling of each event type (``.value`` of an enum is a slow property).
_TYPE_NAMES: Mapping[DossierEventType, str] = {t: t.value for t in DossierEventType}

_Result: TypeAlias = tuple[DossierState, str, Transfer | None] | Rejected
_Handler: TypeAlias = Callable[[DossierState, Any, RuleContext, date], _Result]


def _finish(
    before: DossierState | None,
    after: DossierState,
    event: DossierEvent,
    note: str,
    transfer: Transfer | None,
    emitter: str,
    key: bytes,
) -> Applied:
    """``after`` with the event's timeline entry, and what it emits. ``emitter``: the event's
    agency resolved at its local date; ``key``: its ``event_key``."""
    entry = TimelineEntry(
        event.event_id,
        _TYPE_NAMES[event.event_type],
        event.occurred_at,
        emitter,
        after.status,
        note[:NOTE_MAX_CHARS],
    )
    after = _record(after, entry, key)
    if transfer is not None:
        transfer = _replace(transfer, state=after)
    previous = before.status if before is not None else None
    change = None
    if previous != after.status or event.event_type in PORTAL_NOTIFIED_EVENTS:
        change = StatusChange(
            dossier_code=after.dossier_code,
            previous=previous,
            status=after.status,
            cause_event_id=event.event_id,
            cause_event_type=event.event_type,
            occurred_at=event.occurred_at,
            procedure_code=after.procedure_code,
            channel=after.channel,
            agency_code=after.agency_code,
            received_at=after.received_at,
            appointment_date=after.appointment_date,
            finished_at=after.finished_at,
            returned_at=after.returned_at,
            step=after.current_step,
            applicant_name=after.applicant_name,
        )
    return Applied(after, change, transfer)


def _record(state: DossierState, entry: TimelineEntry, key: bytes) -> DossierState:
    """``state`` with ``entry`` appended to its timeline and ``key`` (its event's
    ``event_key``) to its dedup window."""
    keys = state.recent_event_keys + key
    return _replace(
        state,
        timeline=state.timeline.append(entry),
        recent_event_keys=keys[-DEDUP_WINDOW * _KEY_SIZE :],
        last_event_at=max(state.last_event_at, entry.occurred_at),
    )


def _append(codes: tuple[str, ...], code: str) -> tuple[str, ...]:
    return codes if code in codes else (*codes, code)


def _close_pause(state: DossierState, resumed: date, calendar: WorkingDays) -> DossierState:
    assert state.paused_since is not None
    paused = max(0, calendar.working_days_between(state.paused_since, resumed))
    return _replace(
        state, paused_since=None, paused_working_days=state.paused_working_days + paused
    )


def _appointment(state: DossierState, ctx: RuleContext) -> date | None:
    if state.received_at is None or state.procedure_code is None:
        return None
    rule = ctx.procedure(state.procedure_code)
    if rule is None:
        return None
    return ctx.calendar.add_working_days(local_date(state.received_at), rule.working_days)


def step_deadline_from_shares(
    rule: ProcedureRule, step_no: int, received: date, calendar: WorkingDays
) -> date | None:
    """Receipt date + ceil(cumulative share of steps 1..step_no x working days), at least 1
    working day; None when the procedure has no share for that step."""
    if not 1 <= step_no <= len(rule.step_days):
        return None
    return calendar.add_working_days(received, rule.step_days[step_no - 1])


# --- creation ------------------------------------------------------------------------------


def _create(event: DossierEvent, agency: str) -> tuple[DossierState, str] | Rejected:
    """A new dossier; ``agency``: the event's, resolved."""
    if isinstance(event, DossierSubmitted):
        state = DossierState(
            dossier_code=event.dossier_code,
            procedure_code=event.procedure_code,
            channel=event.channel,
            agency_code=agency,
            status=S.NEW,
            last_event_at=event.occurred_at,
            submitted_at=event.submitted_at,
            applicant_name=event.applicant_name,
            handled_by=(agency,),
        )
        return state, f"submitted {event.procedure_code} via {event.channel.value}"
    if isinstance(event, DossierReceived):
        state = DossierState(
            dossier_code=event.dossier_code,
            procedure_code=None,
            channel=Channel.IN_PERSON,
            agency_code=agency,
            status=S.RECEIVED,
            last_event_at=event.occurred_at,
            received_at=event.received_at,
            appointment_date=event.appointment_date,
            original_appointment_date=event.appointment_date,
            handled_by=(agency,),
        )
        return state, "received at the desk without a prior submission"
    return Rejected("unknown_dossier", f"{event.event_type} cannot open a dossier")


# --- handlers (state already has the target status and the resolved handler) ---------------
#
# ``state`` is the input state with the new status and handler already set; a handler returns
# a copy with its own changes.


def _on_submitted(state: DossierState, ev: DossierSubmitted, ctx: RuleContext, _: date) -> _Result:
    if state.submitted_at is not None:
        return Rejected(
            "already_submitted",
            f"{ev.event_type} in status {state.status} for dossier {state.dossier_code}, "
            "which already has a submission",
        )
    new = _replace(
        state,
        procedure_code=ev.procedure_code,
        channel=ev.channel,
        applicant_name=ev.applicant_name,
        submitted_at=ev.submitted_at,
    )
    if new.appointment_date is None:
        appointment = _appointment(new, ctx)
        new = _replace(new, appointment_date=appointment, original_appointment_date=appointment)
    return new, f"late submission details: {ev.procedure_code} via {ev.channel.value}", None


def _on_received(state: DossierState, ev: DossierReceived, ctx: RuleContext, _: date) -> _Result:
    new = _replace(state, received_at=ev.received_at)
    appointment = ev.appointment_date or _appointment(new, ctx)
    new = _replace(new, appointment_date=appointment, original_appointment_date=appointment)
    note = f"received; appointment {appointment}" if appointment else "received; no appointment"
    return new, note, None


def _on_refused(state: DossierState, ev: DossierRefused, ctx: RuleContext, _: date) -> _Result:
    return _replace(state, finished_at=ev.occurred_at), "refused", None


def _on_supplement_requested(
    state: DossierState, ev: SupplementRequested, ctx: RuleContext, _: date
) -> _Result:
    new = _replace(
        state,
        paused_since=local_date(ev.requested_at),
        supplement_requests=state.supplement_requests + 1,
    )
    return new, f"supplement requested (#{new.supplement_requests}); clock stopped", None


def _on_supplemented(
    state: DossierState, ev: DossierSupplemented, ctx: RuleContext, _: date
) -> _Result:
    new = state
    if state.paused_since is not None:
        new = _close_pause(state, local_date(ev.supplemented_at), ctx.calendar)
    return new, f"supplemented; {new.paused_working_days} working days paused in all", None


def _on_financial_requested(
    state: DossierState, ev: FinancialObligationRequested, ctx: RuleContext, _: date
) -> _Result:
    return state, f"financial obligation requested: {ev.amount_vnd} VND", None


def _on_paid(
    state: DossierState, ev: FinancialObligationPaid, ctx: RuleContext, _: date
) -> _Result:
    return state, "financial obligation paid", None


def _on_step_started(state: DossierState, ev: StepStarted, ctx: RuleContext, _: date) -> _Result:
    deadline = ev.step_deadline
    if deadline is None and state.procedure_code is not None and state.received_at is not None:
        rule = ctx.procedure(state.procedure_code)
        if rule is not None:
            deadline = step_deadline_from_shares(
                rule, ev.step_no, local_date(state.received_at), ctx.calendar
            )
            if deadline is not None and state.paused_working_days > 0:
                deadline = ctx.calendar.add_working_days(deadline, state.paused_working_days)
    step = CurrentStep(
        step_no=ev.step_no,
        step_name=ev.step_name,
        official=ev.official,
        unit=ev.unit,
        started_at=ev.occurred_at,
        step_deadline=deadline,
        paused_base=state.paused_working_days,
    )
    new = state
    if state.current_step is None or ev.occurred_at >= state.current_step.started_at:
        new = _replace(state, current_step=step)
    return new, f"step {ev.step_no} started; deadline {deadline or 'none'}", None


def _on_step_completed(
    state: DossierState, ev: StepCompleted, ctx: RuleContext, day: date
) -> _Result:
    step = state.current_step
    new = state
    if step is not None and step.step_no == ev.step_no and step.completed_at is None:
        late = _late_step(state, step, day, ctx.calendar)
        done = _replace(step, completed_at=ev.occurred_at)
        new = _replace(
            state,
            current_step=done,
            late_steps=state.late_steps if late is None else (*state.late_steps, late),
            steps=state.steps.append(done),
        )
    return new, f"step {ev.step_no} completed", None


def _late_step(
    state: DossierState, step: CurrentStep, completed_on: date, calendar: WorkingDays
) -> LateStep | None:
    """The step as a ``LateStep`` if ``completed_on`` is after its deadline shifted by the
    pauses since it started (a running pause counted up to ``completed_on``); None when on
    time, without a deadline, or when the calendar does not cover the dates (no verdict
    rather than a wrong one)."""
    if step.step_deadline is None or completed_on <= step.step_deadline:
        return None  # pauses only push a deadline later
    try:
        paused = state.paused_working_days - step.paused_base
        if state.paused_since is not None:
            paused += max(0, calendar.working_days_between(state.paused_since, completed_on))
        deadline = step.step_deadline
        if paused > 0:
            deadline = calendar.add_working_days(deadline, paused)
        if completed_on <= deadline:
            return None
        over = calendar.working_days_between(deadline, completed_on)
    except CalendarError:
        return None
    return LateStep(
        step.step_no, step.step_name, step.official, step.unit, state.agency_code,
        deadline, completed_on, over,
    )  # fmt: skip


def _on_transferred(
    state: DossierState, ev: DossierTransferred, ctx: RuleContext, day: date
) -> _Result:
    source = ctx.resolve_agency(ev.from_agency_code, day)
    if source != state.agency_code:
        return Rejected(
            "agency_mismatch",
            f"{ev.event_type} from agency {ev.from_agency_code} for dossier "
            f"{state.dossier_code} handled by {state.agency_code} in status {state.status}",
        )
    target = ctx.resolve_agency(ev.to_agency_code, day)
    new = _replace(state, agency_code=target, handled_by=_append(state.handled_by, target))
    transfer = None
    if target != source:
        transfer = Transfer(state.dossier_code, source, target, new, ev.event_id)
    return new, f"transferred {source} -> {target}", transfer


def _on_processed(state: DossierState, ev: DossierProcessed, ctx: RuleContext, _: date) -> _Result:
    new = _replace(
        state,
        processed_at=ev.occurred_at,
        finished_at=ev.occurred_at,
        electronic_result=ev.electronic_result,
    )
    return new, "processed" + ("; electronic result" if ev.electronic_result else ""), None


def _on_returned(state: DossierState, ev: ResultReturned, ctx: RuleContext, _: date) -> _Result:
    return _replace(state, returned_at=ev.returned_at), "result returned", None


def _on_stopped(state: DossierState, ev: ProcessingStopped, ctx: RuleContext, _: date) -> _Result:
    return _replace(state, finished_at=ev.occurred_at), "processing stopped", None


def _on_withdrawn(state: DossierState, ev: DossierWithdrawn, ctx: RuleContext, _: date) -> _Result:
    return _replace(state, finished_at=ev.occurred_at), "withdrawn by the applicant", None


def _on_apology(state: DossierState, ev: ApologyIssued, ctx: RuleContext, day: date) -> _Result:
    latest = state.last_apology_at
    appointment_before = state.appointment_date
    new = _replace(
        state,
        apology_dates=tuple(sorted((*state.apology_dates, day))),
        last_apology_at=ev.occurred_at if latest is None else max(latest, ev.occurred_at),
    )
    if latest is None or ev.occurred_at >= latest:
        new = _replace(new, appointment_date=ev.new_appointment_date)
        note = f"apology; appointment {appointment_before} -> {ev.new_appointment_date}"
    else:
        note = f"late apology (new date {ev.new_appointment_date} superseded)"
    return new, note, None


_HANDLERS: Mapping[DossierEventType, _Handler] = {
    E.SUBMITTED: _on_submitted,
    E.RECEIVED: _on_received,
    E.REFUSED: _on_refused,
    E.SUPPLEMENT_REQUESTED: _on_supplement_requested,
    E.SUPPLEMENTED: _on_supplemented,
    E.FINANCIAL_OBLIGATION_REQUESTED: _on_financial_requested,
    E.FINANCIAL_OBLIGATION_PAID: _on_paid,
    E.STEP_STARTED: _on_step_started,
    E.STEP_COMPLETED: _on_step_completed,
    E.TRANSFERRED: _on_transferred,
    E.PROCESSED: _on_processed,
    E.RESULT_RETURNED: _on_returned,
    E.STOPPED: _on_stopped,
    E.WITHDRAWN: _on_withdrawn,
    E.APOLOGY_ISSUED: _on_apology,
}


# --- feedback ------------------------------------------------------------------------------


def _apply_feedback(
    state: DossierState | None, event: ServiceRated | ComplaintFiled, key: bytes
) -> Outcome:
    if state is None:
        return Rejected(
            "unknown_dossier",
            f"{event.event_type} for dossier {event.dossier_code}, which the hub has not seen",
        )
    note = f"rated {event.score}/5" if isinstance(event, ServiceRated) else "complaint filed"
    entry = TimelineEntry(
        event_id=event.event_id,
        event_type=FeedbackEventType(event.event_type).value,
        occurred_at=event.occurred_at,
        agency_code=event.agency_code,
        status_after=state.status,
        note=note,
    )
    if isinstance(event, ServiceRated):
        draft = _replace(
            state,
            ratings_count=state.ratings_count + 1,
            ratings_sum=state.ratings_sum + event.score,
        )
    else:
        draft = _replace(state, complaints=state.complaints + 1)
    return Applied(_record(draft, entry, key))
