"""Benchmark input: realistic dossier lives from the province simulator, validated and encoded
once up front, so producing them costs the benchmark nothing but the Kafka write.

Only events of ``dossier.events`` are kept: feedback (ratings, complaints) lives on another
topic and the benchmark measures one input topic. Each dossier's events keep their order and
the simulator interleaves many dossiers at once, as agency systems would.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.scenarios import VN, dossier_life
from connectors.simulator import Interleaver, ProvinceModel, procedure_lookup
from hub.contract.event_types import FEEDBACK_EVENT_TYPES
from hub.contract.inbound import InboundDossierEvent, to_avro_record, validate_dossier_event
from hub.contract.schemas import SchemaKind, load_schema, versions
from hub.contract.serde import AvroSerializer
from hub.reference import ReferenceData, load_reference

__all__ = [
    "EncodedEvent",
    "EventFile",
    "LiveEvents",
    "MemoryRegistry",
    "dossier_serializer",
    "encode_events",
    "preencode",
    "submissions",
]


@dataclass(frozen=True)
class EncodedEvent:
    key: bytes  # dossier code
    value: bytes  # Confluent-framed Avro
    event_id: str
    event_type: str


class MemoryRegistry:
    """Stands in for the schema registry where no broker is wanted (profiling): ids by
    content, schemas by id, nothing over the network."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._texts: dict[int, str] = {}

    def register(self, subject: str, schema: Any) -> int:
        import json

        text = schema if isinstance(schema, str) else json.dumps(schema, separators=(",", ":"))
        if text not in self._ids:
            self._ids[text] = len(self._ids) + 1
            self._texts[self._ids[text]] = text
        return self._ids[text]

    def schema_by_id(self, schema_id: int) -> str:
        return self._texts[schema_id]


def dossier_serializer(registry: Any, prefix: str) -> AvroSerializer:
    """The serializer EventPublisher uses for ``<prefix>dossier.events``."""
    topic = f"{prefix}dossier.events"
    return AvroSerializer(registry, f"{topic}-value", load_schema(SchemaKind.DOSSIER_EVENT))


def _schema_version() -> int:
    return max(versions(SchemaKind.DOSSIER_EVENT))


def simulated_events(
    count: int | None,
    seed: int,
    reference: ReferenceData,
    now: datetime,
    dossiers: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Dossier-topic events (JSON as agencies send) of simulated dossiers: ``count`` events,
    or every event of ``dossiers`` dossiers (their lives complete)."""
    model = ProvinceModel(reference, seed, now=now)
    flow = Interleaver(model.plans(dossiers), seed=seed)
    made = 0
    for _plan, event in flow:
        if event["event_type"] in FEEDBACK_EVENT_TYPES:
            continue
        yield event
        made += 1
        if count is not None and made >= count:
            return


def encode_events(
    count: int | None,
    serializer: AvroSerializer,
    *,
    dossiers: int | None = None,
    seed: int = 7,
    reference: ReferenceData | None = None,
    progress: Callable[[str], None] | None = None,
) -> Iterator[EncodedEvent]:
    """``count`` events validated like a connector does (``validate_dossier_event``), turned
    into Avro records and framed, one at a time (nothing is held: millions of events fit).
    Raises if the simulator produced an invalid event."""
    reference = reference or load_reference()
    lookup = procedure_lookup(reference)
    now = datetime.now(UTC)
    version = _schema_version()
    last = time.monotonic()
    for made, event in enumerate(simulated_events(count, seed, reference, now, dossiers), 1):
        model = validate_dossier_event(event, now=now, procedure_effective_from=lookup)
        if isinstance(model, list):
            raise ValueError(f"simulated event failed validation: {model[:3]}")
        record = to_avro_record(model, recorded_at=now, schema_version=version)
        yield EncodedEvent(
            key=model.dossier_code.encode(),
            value=serializer(record),
            event_id=str(model.event_id),
            event_type=str(model.event_type),
        )
        if progress is not None and time.monotonic() - last >= 5:
            last = time.monotonic()
            progress(f"  encoded {made} events")


def preencode(
    count: int | None,
    serializer: AvroSerializer,
    *,
    dossiers: int | None = None,
    seed: int = 7,
    reference: ReferenceData | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[EncodedEvent]:
    """:func:`encode_events` as a list (small sizes: profiling, the soak test)."""
    return list(
        encode_events(
            count, serializer, dossiers=dossiers, seed=seed, reference=reference,
            progress=progress,
        )
    )  # fmt: skip


def submissions(
    dossiers: int,
    serializer: AvroSerializer,
    *,
    seed: int = 23,
    reference: ReferenceData | None = None,
    templates: int = 500,
) -> Iterator[EncodedEvent]:
    """One ``DossierSubmitted`` per dossier, ``dossiers`` distinct dossiers: enough to put
    that many states into a worker's store (the restart and memory step). The first
    ``templates`` submissions of the simulator are validated once; each dossier is one of
    them under a fresh code (same agency and code date, a unique number) and event id, so
    making 200,000 costs an Avro encoding each, not a validation."""
    reference = reference or load_reference()
    lookup = procedure_lookup(reference)
    now = datetime.now(UTC)
    version = _schema_version()
    records: list[dict[str, Any]] = []
    for event in simulated_events(None, seed, reference, now, templates * 2):
        if event["event_type"] != "DossierSubmitted":
            continue
        model = validate_dossier_event(event, now=now, procedure_effective_from=lookup)
        if isinstance(model, list):
            raise ValueError(f"simulated event failed validation: {model[:3]}")
        records.append(to_avro_record(model, recorded_at=now, schema_version=version))
        if len(records) >= templates:
            break
    if not records:
        raise ValueError("the simulator made no submission")
    run = uuid.uuid4().int % 900 + 100
    for i in range(dossiers):
        record = dict(records[i % len(records)])
        agency, day, _ = str(record["dossier_code"]).rsplit("-", 2)
        code = f"{agency}-{day}-{run}{i:07d}"
        record["dossier_code"] = code
        record["event_id"] = uuid.uuid5(uuid.NAMESPACE_URL, f"bench-submission/{code}")
        yield EncodedEvent(
            key=code.encode(),
            value=serializer(record),
            event_id=str(record["event_id"]),
            event_type="DossierSubmitted",
        )


class EventFile:
    """Pre-encoded events on disk, read back as a stream: a run of millions of events loads
    the same events into several topics without holding them in memory (or encoding them
    again). Each event is four length-prefixed fields."""

    _LENGTHS = struct.Struct(">IIHH")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self.dossiers = 0

    def write(self, events: Iterable[EncodedEvent]) -> EventFile:
        keys: set[bytes] = set()
        count = 0
        with self.path.open("wb") as out:
            for e in events:
                event_id, event_type = e.event_id.encode(), e.event_type.encode()
                out.write(
                    self._LENGTHS.pack(len(e.key), len(e.value), len(event_id), len(event_type))
                )
                out.write(e.key + e.value + event_id + event_type)
                keys.add(e.key)
                count += 1
        self.count, self.dossiers = count, len(keys)
        return self

    def __iter__(self) -> Iterator[EncodedEvent]:
        size = self._LENGTHS.size
        with self.path.open("rb", buffering=1 << 20) as src:
            while header := src.read(size):
                k, v, i, t = self._LENGTHS.unpack(header)
                body = src.read(k + v + i + t)
                yield EncodedEvent(
                    key=body[:k],
                    value=body[k : k + v],
                    event_id=body[k + v : k + v + i].decode(),
                    event_type=body[k + v + i :].decode(),
                )

    def __len__(self) -> int:
        return self.count


class LiveEvents:
    """Dossier lives whose events happen *now*: each event is stamped with the wall clock
    when it is taken, just before it is sent, so the hub sees fresh events
    (``occurred_at`` = send time). Validation is done once per life on a template; taking an
    event only restamps its times and encodes it (~tens of microseconds).

    Lives are short (submitted, received, one step started and completed, processed,
    returned: six events, five of them status outputs on ``portal.outbox``) and many are
    in flight at once, interleaved at random."""

    def __init__(
        self,
        serializer: AvroSerializer,
        reference: ReferenceData,
        *,
        seed: int = 11,
        concurrency: int = 200,
        agencies: list[str] | None = None,
    ) -> None:
        import random

        self.serializer = serializer
        self.reference = reference
        self.rng = random.Random(seed)
        self.concurrency = concurrency
        self.lookup = procedure_lookup(reference)
        self.version = _schema_version()
        model = ProvinceModel(reference, seed, now=datetime.now(UTC))
        self.pairs = [
            (a.code, p.code) for a in model.communes[:50] for p in model.commune_procedures[:5]
        ]
        if agencies:
            self.pairs = [(a, p) for a, p in self.pairs if a in agencies] or self.pairs
        self.run = uuid.uuid4().int % 900_000 + 100_000
        self.number = 0
        self.active: list[list[Any]] = []  # [records, position]

    def _new_life(self) -> list[dict[str, Any]]:
        agency, procedure = self.rng.choice(self.pairs)
        self.number += 1
        code = f"{agency}-{datetime.now(VN):%y%m%d}-{self.run}{self.number:06d}"
        start = datetime.now(UTC)
        life = dossier_life(
            code, agency, procedure, start, rating=None, clock=lambda _t, previous: previous
        )
        records = []
        for event in life:
            model = validate_dossier_event(
                event, now=start + timedelta(minutes=1), procedure_effective_from=self.lookup
            )
            if isinstance(model, list):
                raise ValueError(f"live event failed validation: {model[:3]}")
            assert isinstance(model, InboundDossierEvent)
            records.append(to_avro_record(model, recorded_at=start, schema_version=self.version))
        return records

    def take(self) -> tuple[EncodedEvent, datetime]:
        """The next event, stamped now; returns it and the stamp."""
        while len(self.active) < self.concurrency:
            self.active.append([self._new_life(), 0])
        slot = self.rng.randrange(len(self.active))
        records, position = self.active[slot]
        record = dict(records[position])
        now = datetime.now(UTC)
        stamp = now.replace(microsecond=now.microsecond // 1000 * 1000)
        record["occurred_at"] = stamp
        record["recorded_at"] = stamp
        name, fields = record["payload"]
        fields = dict(fields)
        for key in (
            "submitted_at",
            "received_at",
            "requested_at",
            "supplemented_at",
            "returned_at",
        ):
            if fields.get(key) is not None:
                fields[key] = stamp
        record["payload"] = (name, fields)
        position += 1
        if position >= len(records):
            self.active[slot] = self.active[-1]
            self.active.pop()
        else:
            self.active[slot][1] = position
        encoded = EncodedEvent(
            key=record["dossier_code"].encode(),
            value=self.serializer(record),
            event_id=str(record["event_id"]),
            event_type=record["event_type"],
        )
        return encoded, stamp
