"""Where the hub worker's time goes, without Kafka: the processor's per-event path.

    .venv/bin/python -m bench.profile [--events N] [--top 15] [--profiler NAME]
    .venv/bin/python -m bench.profile --memory [--dossiers 100000]

Pre-encoded simulator events (the same as ``bench.run`` loads) go through
``Processor.handle`` with the dossier states in a dict, exactly as the agent does it per
record minus Kafka: ``decode_state`` of the stored bytes, ``handle``, ``encode_state`` of the
new state, ``LocalView.replace``. Prints

* the pure per-event cost: events/s of ``Processor.handle`` alone, and of the whole CPU path
  of the agent (state decode/encode and the local view included), unprofiled;
* ``per-event path: N µs/event (M events/s)`` (CPU time of this process, best of
  ``--repeat`` runs: the machine is shared), that whole path (Avro decode, checks, apply,
  outputs encoded, state decode and encode, view), once over the simulator's events and once
  over long-history dossiers (``--long-dossiers`` dossiers of 50 events each: 22 steps started
  and completed, a supplement round, processed, returned; interleaved round-robin), with the
  mean cost of the first and of the last ten events of a long dossier, so growth with the
  history shows;
* ``engine path: N µs/event``: the same simulator events through the checkpoint engine's
  own per-record code (``bench.engine_path``: ``CheckpointLoop`` with a producer that sends
  nothing), i.e. the per-event path plus what the engine adds per record (the audit entry,
  the due index, counters, the checkpoint's state encoding and store write);
* the top functions by cumulative time under pyinstrument when installed (``pip install
  pyinstrument``; not a project dependency), else cProfile.

``--memory`` instead measures, with ``tracemalloc``, the Python memory per tracked dossier of
what the worker keeps per dossier (the local view's figures, and its open dossiers' search rows
and deadlines; finished dossiers' rows go to the view's on-disk archive as in a worker), and for
comparison what a decoded state object and the stored state bytes would cost if kept in Python,
for ``--dossiers`` states (the simulator's final states, copied under fresh dossier codes).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.engine_path import EnginePath
from bench.events import EncodedEvent, MemoryRegistry, dossier_serializer, preencode
from connectors.scenarios import VN, dossier_life
from connectors.simulator import ProvinceModel, procedure_lookup
from hub.contract.inbound import to_avro_record, validate_dossier_event
from hub.contract.schemas import SchemaKind, load_schema, versions
from hub.contract.serde import AvroDeserializer, AvroSerializer
from hub.domain.lifecycle import evolve
from hub.reference import load_reference
from hub.settings import HubSettings
from hub.worker.archive import RocksArchive
from hub.worker.figures import LocalView
from hub.worker.processor import Processor, decode_state, encode_state

PREFIX = "bench."


@dataclass
class Setup:
    processor: Processor
    view: LocalView
    events: list[EncodedEvent]
    topic: str


def build(n: int) -> Setup:
    reference = load_reference()
    registry = MemoryRegistry()
    settings = HubSettings(topic_prefix=PREFIX)

    def factory(kind: SchemaKind) -> Callable[[str], AvroSerializer]:
        schema = load_schema(kind)
        return lambda topic: AvroSerializer(registry, f"{topic}-value", schema)  # type: ignore[arg-type]

    processor = Processor(
        settings,
        reference,
        AvroDeserializer(registry),  # type: ignore[arg-type]
        {k: factory(k) for k in (SchemaKind.DOSSIER_STATUS, SchemaKind.DOSSIER_ALERT)},
    )
    view = LocalView(reference.calendar, settings.late_if_repeated_supplement)
    events = preencode(n, dossier_serializer(registry, PREFIX), reference=reference)
    return Setup(processor, view, events, f"{PREFIX}dossier.events")


#: Events of one long-history dossier: submitted, received, 22 steps started and completed,
#: a supplement round inside step 1, processed, returned.
LONG_STEPS = 22
LONG_EVENTS = 2 + 2 * LONG_STEPS + 2 + 2


def long_history_events(
    dossiers: int, serializer: AvroSerializer, reference: Any, now: datetime
) -> list[EncodedEvent]:
    """``dossiers`` dossiers of ``LONG_EVENTS`` events each, deterministic (codes, ids and
    times depend only on ``now``'s date), validated like a connector does, interleaved
    round-robin so every dossier's history grows while the others are processed."""
    model = ProvinceModel(reference, 7, now=now)
    pairs = [(a.code, p.code) for a in model.communes[:20] for p in model.commune_procedures[:5]]
    lookup = procedure_lookup(reference)
    version = max(versions(SchemaKind.DOSSIER_EVENT))
    day = (now - timedelta(days=20)).astimezone(VN).replace(hour=8, minute=0, second=0)
    steps = [(f"Bước {i}", "Phòng chuyên môn", f"Chuyên viên {i}") for i in range(LONG_STEPS)]
    lives: list[list[EncodedEvent]] = []
    for i in range(dossiers):
        agency, procedure = pairs[i % len(pairs)]
        code = f"{agency}-{day:%y%m%d}-{900000 + i:06d}"
        life = dossier_life(code, agency, procedure, day, supplement=True, rating=None, steps=steps)
        encoded = []
        for event in life:
            checked = validate_dossier_event(event, now=now, procedure_effective_from=lookup)
            if isinstance(checked, list):
                raise ValueError(f"long-history event failed validation: {checked[:3]}")
            record = to_avro_record(checked, recorded_at=now, schema_version=version)
            encoded.append(
                EncodedEvent(
                    code.encode(), serializer(record), event["event_id"], event["event_type"]
                )
            )
        lives.append(encoded)
    return [life[n] for n in range(max(map(len, lives))) for life in lives if n < len(life)]


def run_handle_only(s: Setup, states: dict[bytes, Any], now: datetime) -> dict[str, int]:
    """``Processor.handle`` per event; states kept as objects (no codec)."""
    outcomes: dict[str, int] = {}
    for offset, ev in enumerate(s.events):
        effects = s.processor.handle(
            topic=s.topic,
            partition=0,
            offset=offset,
            key=ev.key,
            value=ev.value,
            headers=[("event-type", ev.event_type.encode())],
            state=states.get(ev.key),
            now=now,
        )
        if effects.state is not None:
            states[ev.key] = effects.state
        outcomes[effects.outcome] = outcomes.get(effects.outcome, 0) + 1
    return outcomes


def run_agent_path(s: Setup, table: dict[bytes, bytes], now: datetime) -> dict[str, int]:
    """What the agent does per record apart from Kafka: state bytes in, bytes out, view."""
    outcomes: dict[str, int] = {}
    for offset, ev in enumerate(s.events):
        outcome = _one_record(s, table, offset, ev, now)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def _one_record(
    s: Setup, table: dict[bytes, bytes], offset: int, ev: EncodedEvent, now: datetime
) -> str:
    """One record as the worker takes it: state bytes in, handle, state bytes out, view."""
    before = decode_state(table.get(ev.key))
    effects = s.processor.handle(
        topic=s.topic,
        partition=0,
        offset=offset,
        key=ev.key,
        value=ev.value,
        headers=[("event-type", ev.event_type.encode())],
        state=before,
        now=now,
    )
    if effects.state is not None:
        table[ev.key] = encode_state(effects.state)
        s.view.replace(before, effects.state)
    return effects.outcome


def run_agent_path_by_position(
    s: Setup, table: dict[bytes, bytes], now: datetime
) -> dict[int, list[float]]:
    """As ``run_agent_path``, timing each event; seconds by the event's position in its
    dossier's history (0 = first)."""
    by_position: dict[int, list[float]] = {}
    seen: dict[bytes, int] = {}
    clock = CLOCK
    for offset, ev in enumerate(s.events):
        started = clock()
        _one_record(s, table, offset, ev, now)
        elapsed = clock() - started
        position = seen.get(ev.key, 0)
        seen[ev.key] = position + 1
        by_position.setdefault(position, []).append(elapsed)
    return by_position


def per_event_line(seconds: float, n: int, what: str) -> str:
    return f"per-event path: {seconds / n * 1e6:.1f} µs/event ({n / seconds:.0f} events/s) — {what}"


#: How the per-event figures are timed: this process's CPU time (``time.process_time``), the
#: best of ``--repeat`` runs. The machine is shared; wall time would count the other jobs.
CLOCK = time.process_time


def timed(
    fn: Callable[[], dict[str, int]], repeat: int = 1, reset: Callable[[], None] | None = None
) -> tuple[float, dict[str, int]]:
    """Best CPU time of ``repeat`` runs of ``fn`` (``reset`` before each) and its outcomes."""
    best = float("inf")
    outcomes: dict[str, int] = {}
    for _ in range(max(1, repeat)):
        if reset is not None:
            reset()
        started = CLOCK()
        outcomes = fn()
        best = min(best, CLOCK() - started)
    return best, outcomes


def profile_top(fn: Callable[[], object], top: int, which: str) -> tuple[str, str]:
    """(profiler name, report of the top functions by cumulative time)."""
    if which in ("auto", "pyinstrument"):
        try:
            from pyinstrument import Profiler
        except ImportError:
            if which == "pyinstrument":
                raise
        else:
            profiler = Profiler(interval=0.0005)
            profiler.start()
            fn()
            profiler.stop()
            return "pyinstrument", _pyinstrument_top(profiler, top)
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    return "cProfile", out.getvalue()


def _pyinstrument_top(profiler: Any, top: int) -> str:
    """Functions by cumulative (inclusive) time from pyinstrument's call tree, each function
    counted once per stack (recursion does not double it), then by own time (time in the
    function itself and in C code it calls: fastavro, json, pydantic-core)."""
    session = profiler.last_session
    root = session.root_frame()
    cumulative: dict[tuple[str, str, int], float] = {}
    own: dict[tuple[str, str, int], float] = {}

    def walk(frame: Any, on_stack: frozenset[tuple[str, str, int]]) -> None:
        key = (frame.function or "?", frame.file_path_short or "?", frame.line_no or 0)
        real = [c for c in frame.children if not (c.function or "").startswith("[")]
        own[key] = own.get(key, 0.0) + frame.time - sum(c.time for c in real)
        if key not in on_stack:
            cumulative[key] = cumulative.get(key, 0.0) + frame.time
            on_stack = on_stack | {key}
        for child in real:
            walk(child, on_stack)

    if root is None:
        return "(no samples)"
    walk(root, frozenset())

    def hidden(func: str, path: str) -> bool:
        # the driver (this file, the interpreter's entry) is not the hub
        return path.startswith(("<", "bench/")) or func in (
            "<module>",
            "_run_module_as_main",
            "_run_code",
        )

    total = max(v for (f, p, _), v in cumulative.items() if p.startswith("bench/"))
    lines = [f"{'cumulative s':>12} {'share':>6}  function (file:line)"]
    rows = sorted(cumulative.items(), key=lambda kv: kv[1], reverse=True)
    for (func, path, line), seconds in [r for r in rows if not hidden(*r[0][:2])][:top]:
        lines.append(f"{seconds:12.3f} {seconds / total:6.1%}  {func} ({path}:{line})")
    lines += [
        "",
        f"top {top} by own time (the function itself and C code it calls):",
        f"{'own s':>12} {'share':>6}  function (file:line)",
    ]
    rows = sorted(own.items(), key=lambda kv: kv[1], reverse=True)
    for (func, path, line), seconds in [r for r in rows if not hidden(*r[0][:2])][:top]:
        lines.append(f"{seconds:12.3f} {seconds / total:6.1%}  {func} ({path}:{line})")
    return "\n".join(lines)


def measure_memory(s: Setup, now: datetime, dossiers: int) -> list[tuple[str, float]]:
    """Bytes per dossier (tracemalloc) of what the worker could keep in Python per dossier."""
    table: dict[bytes, bytes] = {}
    run_agent_path(s, table, now)
    finals = [state for raw in table.values() if (state := decode_state(raw)) is not None]
    # Copies under fresh dossier codes; the view keeps the codes, so they are counted in its row.
    samples = [finals[i % len(finals)] for i in range(dossiers)]
    rows: list[tuple[str, float]] = []

    def measure(what: str, build_it: Callable[[], object]) -> object:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        kept = build_it()
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        rows.append((what, used / dossiers))
        return kept

    scratch = Path(tempfile.mkdtemp(prefix="hub-profile-"))

    def view_of() -> LocalView:
        # as a worker keeps it: finished dossiers' rows in the on-disk archive
        view = LocalView(s.processor.reference.calendar, False, archive=RocksArchive(scratch))
        for i, state in enumerate(samples):
            code = f"{state.dossier_code.rsplit('-', 1)[0]}-{i:07d}"
            view.replace(None, evolve(state, dossier_code=code))
        return view

    view = measure("local view (figures, open dossiers' rows and deadlines)", view_of)
    assert isinstance(view, LocalView)
    open_count = len(view.open_deadlines)
    view.archive.close()
    del view
    encoded = [encode_state(state) for state in finals]
    measure("stored state bytes, if kept in a Python dict", lambda: {
        str(i).encode(): bytes(memoryview(encoded[i % len(encoded)])) for i in range(dossiers)
    })  # fmt: skip
    measure("decoded DossierState objects, if kept", lambda: [
        decode_state(encoded[i % len(encoded)]) for i in range(dossiers)
    ])  # fmt: skip
    view_bytes = rows[0][1] * dossiers
    rows.append((f"local view per open dossier ({open_count} of {dossiers} open)",
                 view_bytes / max(1, open_count)))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=20_000, help="events to run (20000)")
    parser.add_argument(
        "--long-dossiers",
        type=int,
        default=200,
        help=f"long-history dossiers of {LONG_EVENTS} events each (200)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each timed path; the best counts (3)"
    )
    parser.add_argument("--top", type=int, default=15, help="functions to show (15; 0: none)")
    parser.add_argument(
        "--profiler",
        choices=["auto", "pyinstrument", "cprofile"],
        default="auto",
        help="auto: pyinstrument if installed, else cProfile",
    )
    parser.add_argument(
        "--memory", action="store_true", help="measure Python memory per dossier instead"
    )
    parser.add_argument(
        "--dossiers", type=int, default=100_000, help="states for --memory (100000)"
    )
    args = parser.parse_args(argv)

    print(
        f"encoding {args.events} simulator events (validated, Avro, Confluent framing) ...",
        flush=True,
    )
    s = build(args.events)
    now = datetime.now(UTC)
    if args.memory:
        rows = measure_memory(s, now, args.dossiers)
        print(f"\nPython memory per tracked dossier (tracemalloc, {args.dossiers} dossiers):")
        for what, per in rows:
            figure = "" if per != per else f"{per:8.0f} B"  # NaN: a note, not a figure
            print(f"{figure:>10}  {what}")
        return 0
    # Warm up caches (writer schemas, serializers per topic) on a copy of the run.
    run_handle_only(Setup(s.processor, s.view, s.events[:200], s.topic), {}, now)

    t_handle, outcomes = timed(lambda: run_handle_only(s, {}, now), args.repeat)
    table: dict[bytes, bytes] = {}

    def fresh() -> None:
        s.view = LocalView(s.processor.reference.calendar, False)
        table.clear()

    t_agent, _ = timed(lambda: run_agent_path(s, table, now), args.repeat, fresh)
    n = len(s.events)
    print(f"outcomes: {dict(sorted(outcomes.items()))}")
    print(
        f"Processor.handle alone:          {n / t_handle:9.0f} events/s "
        f"({t_handle / n * 1e6:.0f} µs/event)"
    )
    print(
        f"agent CPU path (+state codec, view): {n / t_agent:6.0f} events/s "
        f"({t_agent / n * 1e6:.0f} µs/event)"
    )
    print(per_event_line(t_agent, n, f"simulator, {n} events"))
    sizes = [len(v) for v in table.values()]
    print(
        f"stored state: {len(sizes)} dossiers, mean {sum(sizes) / len(sizes):.0f} bytes, "
        f"max {max(sizes)} bytes"
    )
    engine = EnginePath(s.processor, s.topic, batch=HubSettings().batch_max)
    messages = engine.messages(s.events)
    t_engine, engine_outcomes = timed(lambda: engine.run(messages, now), args.repeat, engine.reset)
    if engine_outcomes != outcomes:
        raise SystemExit(f"the engine's outcomes {engine_outcomes} differ from {outcomes}")
    print(
        f"engine path: {t_engine / n * 1e6:.1f} µs/event ({n / t_engine:.0f} events/s) — the "
        "checkpoint loop's own code per record (per-event path + audit entry + due index + "
        "checkpoint), null producer"
    )

    if args.long_dossiers > 0:
        serializer = dossier_serializer(s.processor.deserializer.registry, PREFIX)
        long_events = long_history_events(
            args.long_dossiers, serializer, s.processor.reference, now
        )
        long = Setup(
            s.processor, LocalView(s.processor.reference.calendar, False), long_events, s.topic
        )
        long_table: dict[bytes, bytes] = {}

        def fresh_long() -> None:
            long.view = LocalView(s.processor.reference.calendar, False)
            long_table.clear()

        t_long, long_outcomes = timed(
            lambda: run_agent_path(long, long_table, now), args.repeat, fresh_long
        )
        m = len(long_events)
        print(f"long-history outcomes: {dict(sorted(long_outcomes.items()))}")
        print(
            per_event_line(
                t_long, m, f"long histories, {args.long_dossiers} dossiers x {LONG_EVENTS} events"
            )
        )
        long.view = LocalView(s.processor.reference.calendar, False)
        by_position = run_agent_path_by_position(long, {}, now)
        first = [t for p in range(10) for t in by_position.get(p, [])]
        last = [t for p in range(LONG_EVENTS - 10, LONG_EVENTS) for t in by_position.get(p, [])]
        print(
            f"  by position in the history: events 1-10 {sum(first) / len(first) * 1e6:.1f} "
            f"µs/event, events {LONG_EVENTS - 9}-{LONG_EVENTS} "
            f"{sum(last) / len(last) * 1e6:.1f} µs/event"
        )
        sizes = [len(v) for v in long_table.values()]
        print(
            f"  stored state of a long dossier: mean {sum(sizes) / len(sizes):.0f} bytes, "
            f"max {max(sizes)} bytes"
        )

    # What the worker does after table recovery (``rebuild_view``): every state decoded and
    # put in the local view. Its cost grows with the dossiers held.
    view = LocalView(s.processor.reference.calendar, False)
    started = time.perf_counter()
    for raw in table.values():
        state = decode_state(raw)
        assert state is not None
        view.replace(None, state)
    per = (time.perf_counter() - started) / len(table)
    print(
        f"view rebuild after recovery: {per * 1e6:.0f} µs/dossier "
        f"(1M dossiers: {per * 1e6:.0f} s, extrapolated)"
    )

    if args.top > 0:
        s.view = LocalView(s.processor.reference.calendar, False)
        name, report = profile_top(lambda: run_agent_path(s, {}, now), args.top, args.profiler)
        print(
            f"\ntop {args.top} functions by cumulative time ({name}, agent CPU path, {n} events):"
        )
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
