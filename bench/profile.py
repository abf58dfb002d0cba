"""Where the hub worker's time goes, without Kafka: the processor's per-event path.

    .venv/bin/python -m bench.profile [--events N] [--top 15] [--profiler NAME]

Pre-encoded simulator events (the same as ``bench.run`` loads) go through
``Processor.handle`` with the dossier states in a dict, exactly as the agent does it per
record minus Kafka: ``decode_state`` of the stored bytes, ``handle``, ``encode_state`` of the
new state, ``LocalView.replace``. Prints

* the pure per-event cost: events/s of ``Processor.handle`` alone, and of the whole CPU path
  of the agent (state decode/encode and the local view included), unprofiled;
* the top functions by cumulative time under pyinstrument when installed (``pip install
  pyinstrument``; not a project dependency), else cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.events import EncodedEvent, MemoryRegistry, dossier_serializer, preencode
from hub.contract.schemas import SchemaKind, load_schema
from hub.contract.serde import AvroDeserializer, AvroSerializer
from hub.reference import load_reference
from hub.settings import HubSettings
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
        outcomes[effects.outcome] = outcomes.get(effects.outcome, 0) + 1
    return outcomes


def timed(fn: Callable[[], dict[str, int]]) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    outcomes = fn()
    return time.perf_counter() - started, outcomes


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=20_000, help="events to run (20000)")
    parser.add_argument("--top", type=int, default=15, help="functions to show (15)")
    parser.add_argument(
        "--profiler",
        choices=["auto", "pyinstrument", "cprofile"],
        default="auto",
        help="auto: pyinstrument if installed, else cProfile",
    )
    args = parser.parse_args(argv)

    print(
        f"encoding {args.events} simulator events (validated, Avro, Confluent framing) ...",
        flush=True,
    )
    s = build(args.events)
    now = datetime.now(UTC)
    # Warm up caches (writer schemas, serializers per topic) on a copy of the run.
    run_handle_only(Setup(s.processor, s.view, s.events[:200], s.topic), {}, now)

    t_handle, outcomes = timed(lambda: run_handle_only(s, {}, now))
    s.view = LocalView(s.processor.reference.calendar, False)
    table: dict[bytes, bytes] = {}
    t_agent, _ = timed(lambda: run_agent_path(s, table, now))
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
    sizes = [len(v) for v in table.values()]
    print(
        f"stored state: {len(sizes)} dossiers, mean {sum(sizes) / len(sizes):.0f} bytes "
        f"(JSON), max {max(sizes)} bytes"
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

    s.view = LocalView(s.processor.reference.calendar, False)
    name, report = profile_top(lambda: run_agent_path(s, {}, now), args.top, args.profiler)
    print(f"\ntop {args.top} functions by cumulative time ({name}, agent CPU path, {n} events):")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
