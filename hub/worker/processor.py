"""What the worker does with one input record, without Kafka: bytes and state in, effects out.

The faust agent (``hub.worker.app``) only fetches the dossier's state, calls this, writes the
outputs, waits for their acknowledgement, and then stores the new state. Keeping the decision
here makes it testable without a broker and keeps the agent a thin shell.

The per-event path (issue 13) is kept flat in the length of a dossier's history:

* Input records are checked once, on the typed Avro record (``check_avro_record``): the
  connectors' rules and dead-letter details, without a pydantic round trip.
* The stored state (``encode_state``/``decode_state``, format 3, see "the stored state"
  below) is msgpack via msgspec, with the timeline carried as an opaque, append-only blob
  (``hub.domain.timeline``): decoded only when the HTTP view or a test reads it. Chosen on
  measurement: msgspec decodes and validates a state in about 2-4 µs and encodes it in 1-2 µs
  on this machine, against 60-70 µs each way for the JSON it replaces; ``marshal`` and
  ``pickle`` are as fast on plain tuples but are not a stable or safe store format.
* Event-id deduplication keeps a bounded window per dossier (``DEDUP_WINDOW`` in
  ``hub.domain.lifecycle``, which says why 32 ids are enough).
* Outputs are encoded once per record and framed per topic; the status and alert schemas are
  written by a compiled writer (``hub.contract.serde.compile_writer``); what depends only on
  reference data (procedure terms, agency resolution, topic names, portal codes, serializers
  per topic) is looked up once.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import msgspec

from hub.contract.errors import ContractError, RegistryUnavailableError
from hub.contract.inbound import DEFAULT_MAX_FUTURE_SKEW, FieldProblem, check_avro_record
from hub.contract.schemas import SchemaKind
from hub.contract.serde import AvroDeserializer, AvroSerializer
from hub.dlq.headers import DeadLetter, attempt_of, detail_from_problems
from hub.domain.calendar import CalendarError
from hub.domain.deadlines import due_alerts, mark_emitted, next_alert_date
from hub.domain.events import (
    DomainEvent,
    EventShapeError,
    from_record,
    local_date,
)
from hub.domain.lifecycle import (
    Applied,
    CurrentStep,
    DossierState,
    Duplicate,
    ProcedureRule,
    Rejected,
    RuleContext,
    Timeline,
    apply,
)
from hub.outputs import alert_record, status_record
from hub.reference import ReferenceData
from hub.settings import HubSettings
from hub.worker.intake import Reader, event_reader

__all__ = ["Effects", "Output", "Processor", "Topics", "rule_context"]

#: ``str(uuid.UUID(...))``'s form; any other spelling of an event id is canonicalised.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _ms(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Topics:
    """Every topic name the worker uses, from one prefix."""

    prefix: str = ""

    def _t(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def dossier_events(self) -> str:
        return self._t("dossier.events")

    @property
    def feedback_events(self) -> str:
        return self._t("feedback.events")

    @property
    def clock(self) -> str:
        return self._t("hub.clock")

    @property
    def status(self) -> str:
        return self._t("dossier.status")

    @property
    def portal_outbox(self) -> str:
        return self._t("portal.outbox")

    @property
    def alerts(self) -> str:
        return self._t("dossier.alerts")

    def inbox(self, agency_code: str) -> str:
        return self._t(f"agency.inbox.{agency_code}")


class Output(msgspec.Struct, frozen=True, gc=False):
    """A record to produce (the hub's outputs carry no headers). A Struct: a named tuple's
    ``__new__`` is Python code, and there are one to four of these per event."""

    topic: str
    key: bytes
    value: bytes


class Effects(msgspec.Struct):
    """The result of one record: ``outcome`` is a short word for metrics and logs. A Struct:
    one is built per record, in C."""

    outcome: str  # applied | duplicate | rejected | dead-letter | tick | ignored
    state: DossierState | None = None  # the new state to store; None: store nothing
    outputs: list[Output] = msgspec.field(default_factory=list)
    dead_letter: DeadLetter | None = None
    event_type: str | None = None
    event_id: str | None = None
    lag_s: float | None = None  # event time to now
    #: The first day an alert can fall due for the dossier as this record leaves it (``state``
    #: when set; after a tick, the state ticked), for the engine's due index: the processor
    #: works it out anyway to know whether any alert is due. Meaningless for other outcomes.
    next_alert: date | None = None


class Source(NamedTuple):
    """Where a record came from and when it was handled: what its dead letter says."""

    topic: str
    partition: int
    offset: int
    headers: list[tuple[str, bytes | None]] | None
    now: datetime


def rule_context(reference: ReferenceData) -> RuleContext:
    """The domain's view of the reference data: calendar, procedure terms, agency mergers.

    Both lookups depend on the reference data alone, which a worker holds fixed, so they are
    cached: ``apply`` resolves agencies several times an event (handler, emitter, every
    former holder), each a walk of the merger history."""

    @functools.cache
    def procedure_rule(code: str) -> ProcedureRule | None:
        proc = reference.procedures.get(code)
        if proc is None:
            return None
        return ProcedureRule(proc.working_days, tuple(step.share for step in proc.steps))

    @functools.lru_cache(maxsize=1 << 16)
    def resolve_agency(code: str, on: date) -> str:
        try:
            return reference.agencies.resolve(code, on).code
        except KeyError:
            return code  # an unknown agency passes through; the domain's agency check decides

    return RuleContext(
        calendar=reference.calendar, procedure=procedure_rule, resolve_agency=resolve_agency
    )


class Processor:
    def __init__(
        self,
        settings: HubSettings,
        reference: ReferenceData,
        deserializer: AvroDeserializer,
        serializers: Mapping[SchemaKind, Callable[[str], AvroSerializer]],
        processor_name: str = "hub-worker",
    ) -> None:
        self.settings = settings
        self.reference = reference
        self.topics = Topics(settings.topic_prefix)
        self.deserializer = deserializer
        self.name = processor_name
        self._serializer_factories = serializers
        self._serializers: dict[str, AvroSerializer] = {}
        self.ctx = rule_context(reference)
        # Topic names are built from the prefix once, not per event.
        self._status_topics = (self.topics.status, self.topics.portal_outbox)
        self._alerts_topic = self.topics.alerts
        self._inboxes: dict[str, tuple[str, AvroSerializer]] = {}
        #: (topic, serializer) of the topics every status change goes to, once known
        self._status_targets: list[tuple[str, AvroSerializer]] | None = None
        # ``_latest``'s values for the last ``now`` seen
        self._now: datetime | None = None
        self._latest_ts = self._recorded_default = datetime.min.replace(tzinfo=UTC)
        #: the one-pass reader of each writer schema met, by its frame (magic byte, schema
        #: id); None: that schema's records all take the exact path
        self._readers: dict[bytes, Reader | None] = {}

    def _serializer(self, kind: SchemaKind, topic: str) -> AvroSerializer:
        serializer = self._serializers.get(topic)
        if serializer is None:
            serializer = self._serializer_factories[kind](topic)
            self._serializers[topic] = serializer
        return serializer

    def _inbox(self, agency_code: str) -> tuple[str, AvroSerializer]:
        """The inbox topic of an agency a dossier is transferred to, and its serializer."""
        target = self._inboxes.get(agency_code)
        if target is None:
            topic = self.topics.inbox(agency_code)
            target = (topic, self._serializer(SchemaKind.DOSSIER_STATUS, topic))
            self._inboxes[agency_code] = target
        return target

    # --- one record -------------------------------------------------------------------------

    def handle(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]] | None,
        state: DossierState | None,
        now: datetime,
    ) -> Effects:
        if value is None:
            return self._dead(
                Source(topic, partition, offset, headers, now),
                ValueError("tombstone"),
                "empty-value",
                "record has no value",
            )
        # Any Kafka client can write here, bypassing the connectors: the same boundary rules
        # apply (lengths, codes, clocks, procedure dates), and text is NFC-normalised. A valid,
        # already normal record (nearly all) is read and accepted in one pass by its writer
        # schema's reader (``hub.worker.intake``); any other takes the exact path, which names
        # the problems or applies the fixes.
        read = self._readers.get(value[:5])  # by the frame: magic byte and schema id
        event: DomainEvent | None = None
        if read is not None:
            latest = self._latest(now)  # sets ``_recorded_default`` too
            event = read(value, latest, self._procedure_since, self._recorded_default)
        if event is None:
            exact = self._exact_event(value, topic, partition, offset, headers, now)
            if isinstance(exact, Effects):
                return exact
            event = exact
        problem = self._key_problem(event, key)
        if problem is not None:
            return self._dead(
                Source(topic, partition, offset, headers, now),
                ValueError(problem),
                "validation",
                problem,
                event,
            )
        try:
            outcome = apply(state, event, self.ctx)
        except CalendarError as exc:
            return self._dead(
                Source(topic, partition, offset, headers, now), exc, "calendar", str(exc), event
            )
        lag = (now - event.occurred_at).total_seconds()
        if isinstance(outcome, Duplicate):
            return Effects("duplicate", event_type=event.event_type, lag_s=lag)
        if isinstance(outcome, Rejected):
            return self._dead(
                Source(topic, partition, offset, headers, now),
                ValueError(outcome.reason),
                outcome.rule,
                outcome.reason,
                event,
            )
        assert isinstance(outcome, Applied)
        new_state, outputs, next_alert = self._emit(outcome, now, event.occurred_at)
        return Effects(
            "applied",
            state=new_state,
            outputs=outputs,
            event_type=event.event_type,
            event_id=event.event_id,
            lag_s=lag,
            next_alert=next_alert,
        )

    def _exact_event(
        self,
        value: bytes,
        topic: str,
        partition: int,
        offset: int,
        headers: list[tuple[str, bytes | None]] | None,
        now: datetime,
    ) -> DomainEvent | Effects:
        """The record's event by the exact path, or its dead letter; learns the reader of a
        writer schema met for the first time."""
        try:
            schema_id, record = self.deserializer.decode_event(value)
        except RegistryUnavailableError:
            raise  # not the record's fault: the caller retries, nothing is dead-lettered
        except ContractError as exc:
            return self._dead(Source(topic, partition, offset, headers, now), exc)
        frame = value[:5]
        if frame not in self._readers:
            schema = json.loads(self.deserializer.registry.schema_by_id(schema_id))
            self._readers[frame] = event_reader(schema)
        try:
            event = from_record(record)
        except EventShapeError as exc:
            return self._dead(
                Source(topic, partition, offset, headers, now), exc, "invalid-shape", str(exc)
            )
        checked = self._boundary_check(record, event, now)
        if isinstance(checked, list):
            return self._dead(
                Source(topic, partition, offset, headers, now),
                ValueError("validation failed"),
                "validation",
                detail_from_problems(checked),
                event,
            )
        return checked

    def _dead(
        self,
        source: Source,
        exc: BaseException,
        reason: str | None = None,
        detail: str | None = None,
        event: DomainEvent | None = None,
    ) -> Effects:
        """A record that goes to the dead-letter topic (a method rather than a closure in
        ``handle``: a closure would turn every local name it reads into a slower cell)."""
        letter = DeadLetter.for_exception(
            exc,
            source_topic=source.topic,
            source_partition=source.partition,
            source_offset=source.offset,
            processor=self.name,
            reason=reason,
            detail=detail,
            agency_code=event.agency_code if event else None,
            event_type=event.event_type if event else None,
            dossier_code=event.dossier_code if event else None,
            attempt=attempt_of(source.headers),
            failed_at=source.now,
        )
        return Effects(
            "dead-letter", dead_letter=letter, event_type=event.event_type if event else None
        )

    def _boundary_check(
        self, record: Mapping[str, Any], event: DomainEvent, now: datetime
    ) -> DomainEvent | list[FieldProblem]:
        """The connectors' rules on a record the schema already typed, without a model round
        trip (``check_avro_record``): the problems, or the event as the models would have
        normalised it (NFC text, blank optional text absent, canonical event id)."""
        problems, fixes = check_avro_record(
            record, now=now, procedure_effective_from=self._procedure_since
        )
        if problems:
            return problems
        if not _CANONICAL_UUID.fullmatch(event.event_id):
            fixes["event_id"] = str(uuid.UUID(event.event_id))
        if event.recorded_at is None:
            fixes["recorded_at"] = _ms(now)
        if not event.schema_version:
            fixes["schema_version"] = 1
        return msgspec.structs.replace(event, **fixes) if fixes else event

    def _latest(self, now: datetime) -> datetime:
        """The latest acceptable timestamp for ``now`` (as ``check_avro_record`` computes it),
        and ``recorded_default`` (what ``_boundary_check`` fills in), kept for as long as the
        caller passes the same ``now``."""
        if now is not self._now:
            self._now = now
            aware = now if now.utcoffset() is not None else now.replace(tzinfo=UTC)
            # the same instant in ``UTC``, the timestamps' own tzinfo: a cheaper comparison
            self._latest_ts = aware.astimezone(UTC) + DEFAULT_MAX_FUTURE_SKEW
            self._recorded_default = _ms(now)
        return self._latest_ts

    def _procedure_since(self, code: str) -> date | None:
        proc = self.reference.procedures.get(code)
        return proc.effective_from if proc else None

    @staticmethod
    def _key_problem(event: DomainEvent, key: bytes | None) -> str | None:
        # One dossier's events share a partition only if every producer keys by its code.
        if key is None or key.decode(errors="replace") != event.dossier_code:
            return "key: the Kafka key must be the dossier code"
        return None

    def _emit(
        self, outcome: Applied, now: datetime, event_time: datetime
    ) -> tuple[DossierState, list[Output], date | None]:
        state = outcome.state
        outputs: list[Output] = []
        key = state.dossier_code.encode()
        change = outcome.status_change
        if change is not None:
            record = status_record(
                change,
                self.reference.portal_codes,
                source_system=self.settings.source_system,
                recorded_at=now,
            )
            targets = self._status_targets
            if targets is None:
                targets = self._status_targets = [
                    (t, self._serializer(SchemaKind.DOSSIER_STATUS, t)) for t in self._status_topics
                ]
            if outcome.transfer is not None:
                targets = [*targets, self._inbox(outcome.transfer.to_agency)]
            # One schema for every status topic: encode once, frame with each topic's id.
            body = targets[0][1].encode_attributes(record)
            outputs = [
                Output(topic, key, serializer.frame_body(body)) for topic, serializer in targets
            ]
        # Deadlines are judged as of the event's own time: the state is only known to be
        # complete up to then. A back-dated history replayed in a burst must not raise alerts
        # for steps its later events close; the deadline clock (``tick``) judges "now".
        state, alert_outputs, next_alert = self._alerts(state, min(now, event_time), now)
        if alert_outputs:
            outputs.extend(alert_outputs)
        return state, outputs, next_alert

    def next_alert(self, state: DossierState) -> date | None:
        """The first day an alert can fall due for ``state`` (``next_alert_date``); None for
        a date outside the calendar: no alert rather than a wrong one."""
        try:
            return next_alert_date(
                state, self.reference.calendar, self.settings.due_soon_working_days
            )
        except CalendarError:
            return None

    def _alerts(
        self, state: DossierState, now: datetime, recorded_at: datetime
    ) -> tuple[DossierState, list[Output], date | None]:
        """The alerts due ``now``, the state marking them emitted, and that state's next
        alert date; ``recorded_at``: when the hub writes them. The next alert date decides
        first: most events leave none due today, and then ``due_alerts`` is not asked."""
        next_alert = self.next_alert(state)
        today = local_date(now)
        if next_alert is None or next_alert > today:
            return state, [], next_alert
        try:
            alerts = due_alerts(
                state, today, self.reference.calendar, self.settings.due_soon_working_days
            )
        except CalendarError:
            return state, [], None  # a date outside the calendar: no alert rather than a wrong one
        if not alerts:
            return state, [], next_alert
        key = state.dossier_code.encode()
        topic = self._alerts_topic
        serializer = self._serializer(SchemaKind.DOSSIER_ALERT, topic)
        source_system = self.settings.source_system
        outputs = [
            Output(
                topic,
                key,
                serializer.frame_body(
                    serializer.encode_attributes(
                        alert_record(
                            alert,
                            state,
                            source_system=source_system,
                            detected_at=now,
                            recorded_at=recorded_at,
                        )
                    )
                ),
            )
            for alert in alerts
        ]
        state = mark_emitted(state, alerts)
        return state, outputs, self.next_alert(state)

    def tick(self, state: DossierState | None, now: datetime) -> Effects:
        """The deadline clock: time passed for this dossier; emit alerts now due."""
        if state is None:
            return Effects("ignored")
        new_state, outputs, next_alert = self._alerts(state, now, now)
        if not outputs:
            return Effects("tick", next_alert=next_alert)
        return Effects("tick", state=new_state, outputs=outputs, next_alert=next_alert)


# --- the stored state -----------------------------------------------------------------------
#
# Format 3 (what ``encode_state`` writes): the byte 0x03, then one msgpack document: the
# DossierState Struct as an array of its fields in declaration order (msgspec's
# ``array_like`` encoding: enums by value, datetimes as msgpack timestamps (UTC), dates as ISO
# strings, sets sorted, the dedup window as bin; the current step an array of its fields), the
# timeline the array ``[count, blob]`` with the timeline's blob as it is
# (``hub.domain.timeline``: msgpack arrays in arrival order). No hook runs either way:
# decoding validates every field's type and copies the timeline's blob without decoding it,
# all in C, so decode plus encode costs about 2 µs however long the history. Fields added
# later go at the end of ``DossierState`` with a default, and older arrays still decode.
#
# Format 2 (what workers stored before format 3; in changelog topics and stores): the byte
# 0x02, then the state as a map of its fields (msgspec's dataclass encoding), the current step
# a map too, the timeline as msgpack extension 1: a 4-byte big-endian entry count and the
# blob. Read through map-shaped twins of the two Structs, then copied into the real ones.
#
# Format 1 (legacy, older still): the JSON of ``DossierState.to_dict``; read whenever the
# bytes start with ``{``.
#
# Formats 1 and 2 are written back in format 3 by the dossier's next event.

_FORMAT_3 = b"\x03"
_FORMAT_2 = b"\x02"
_TIMELINE_EXT = 1


def _format_2_twin(cls: type[msgspec.Struct], **types: Any) -> type[msgspec.Struct]:
    """A Struct with ``cls``'s fields, types and defaults, decoded from a map (format 2);
    ``types`` overrides some fields' types."""
    spec = [
        (f.name, types.get(f.name, f.type), f.default)
        if f.default is not msgspec.NODEFAULT
        else (f.name, types.get(f.name, f.type))
        for f in msgspec.structs.fields(cls)
    ]
    return msgspec.defstruct(f"_Format2{cls.__name__}", spec, kw_only=True)


_Format2Step = _format_2_twin(CurrentStep)
_Format2State = _format_2_twin(
    DossierState, current_step=_Format2Step | None, timeline=msgspec.msgpack.Ext
)
_STATE_FIELDS = DossierState.__struct_fields__
_STEP_FIELDS = CurrentStep.__struct_fields__


def _from_format_2(raw: memoryview) -> DossierState:
    old = _format_2_decoder.decode(raw)
    fields = {name: getattr(old, name) for name in _STATE_FIELDS}
    ext = fields["timeline"]
    if ext.code != _TIMELINE_EXT:
        raise ValueError(f"unknown msgpack extension {ext.code} in a stored state")
    fields["timeline"] = Timeline(int.from_bytes(ext.data[:4], "big"), bytes(ext.data[4:]))
    step = fields["current_step"]
    if step is not None:
        fields["current_step"] = CurrentStep(*(getattr(step, name) for name in _STEP_FIELDS))
    return DossierState(**fields)


# deterministic: sets (the emitted alert keys) sorted, so one state always gives the same bytes
_state_encoder = msgspec.msgpack.Encoder(order="deterministic")
_state_decoder = msgspec.msgpack.Decoder(DossierState)
_format_2_decoder = msgspec.msgpack.Decoder(_Format2State)


def encode_state(state: DossierState) -> bytes:
    return _FORMAT_3 + _state_encoder.encode(state)


def decode_state(raw: bytes | None) -> DossierState | None:
    if raw is None:
        return None
    head = raw[:1]
    if head == _FORMAT_3:
        return _state_decoder.decode(memoryview(raw)[1:])
    if head == b"{":
        return DossierState.from_dict(json.loads(raw))
    if head == _FORMAT_2:
        return _from_format_2(memoryview(raw)[1:])
    raise ValueError(f"unknown stored state format {head!r}")


def utc_now() -> datetime:
    return datetime.now(UTC)
