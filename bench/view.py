"""How fast the province-wide questions are answered at province scale.

    .venv/bin/python -m bench.view [--dossiers 1000000] [--workers 2] [--repeat 5]

Builds the workers' local views (``hub.worker.figures.LocalView``) over ``--dossiers``
synthetic dossiers spread over the reference data's agencies and procedures (a sixth of them
open and past their deadline, a third finished: their search rows in the view's on-disk
archive, as in a worker), split across ``--workers`` as the
partitions would split them, and times each question the API answers province-wide: each
worker's own part (what ``hub.worker.api`` computes and JSON-encodes for another worker) and
the asking worker's merge of the parts (``hub.worker.province``). The workers answer their
parts in parallel, so an answer takes about the slowest part plus the merge plus one local
HTTP round trip (about a millisecond on loopback); the table prints both and that sum.
The target (issue 14) is 200 ms at 1M dossiers. Medians of ``--repeat`` runs, CPU time of
this one process (on the 2-core VM shared with nothing else).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.domain.events import Channel
from hub.domain.lifecycle import DossierState
from hub.domain.status import DossierStatus
from hub.engine.directory import partition_for
from hub.reference import load_reference
from hub.worker.archive import ArchiveDirectory
from hub.worker.figures import LocalView, province_part
from hub.worker.province import merge_province, merge_rows
from hub.worker.query import overdue_query, search_query

TODAY = date(2026, 12, 6)


def synthetic(n: int, agencies: list[str], procedures: list[str]) -> DossierState:
    agency = agencies[n % len(agencies)]
    # a province's year: most dossiers finished (one in ten late), a few percent open and
    # past their deadline, the rest open and received in the last ten days
    kind = n % 20
    age = n % 7 if kind in (1, 2, 3) else 20 + n % 345
    received = TODAY - timedelta(days=age)
    at = datetime(received.year, received.month, received.day, 2, tzinfo=UTC)
    deadline = received + timedelta(days=14)
    finished = kind > 3
    done = at + timedelta(days=20 if kind == 4 else 6) if finished else None
    return DossierState(
        dossier_code=f"{agency}-{received:%y%m%d}-{n:07d}",
        procedure_code=procedures[n % len(procedures)],
        channel=Channel.ONLINE if n % 3 else Channel.IN_PERSON,
        agency_code=agency,
        status=DossierStatus.PROCESSED if finished else DossierStatus.PROCESSING,
        last_event_at=done or at,
        submitted_at=at,
        received_at=at,
        appointment_date=deadline,
        original_appointment_date=deadline,
        processed_at=done,
        handled_by=(agency,),
    )


def wire(part: dict[str, Any]) -> dict[str, Any]:
    """A part as the asking worker gets it: JSON-encoded by one worker, decoded by the other."""
    decoded: dict[str, Any] = json.loads(json.dumps(part))
    return decoded


def median_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.process_time()
        result = fn()
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.view", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dossiers", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    reference = load_reference()
    agencies = sorted(reference.agencies.codes)
    procedures = sorted(reference.procedures)
    # as workers keep them: finished dossiers' rows in each view's on-disk archive
    scratch = Path(tempfile.mkdtemp(prefix="hub-bench-view-"))
    archives = ArchiveDirectory(scratch)
    views = [LocalView(reference.calendar, archive=archives.new()) for _ in range(args.workers)]
    started = time.monotonic()
    for n in range(args.dossiers):
        state = synthetic(n, agencies, procedures)
        partition = partition_for(state.dossier_code.encode(), args.partitions)
        views[partition % args.workers].replace(None, state)
        if n and n % 200_000 == 0:
            print(
                f"  {n:,} dossiers in the views ({time.monotonic() - started:.0f}s)",
                file=sys.stderr,
            )
    busiest = agencies[0]

    def overdue(params: dict[str, str]) -> Callable[[LocalView], dict[str, Any]]:
        query = overdue_query(params, reference.agencies, reference.procedures)

        def part(view: LocalView) -> dict[str, Any]:
            total, rows = view.overdue(query, TODAY.isoformat(), query.page * query.size)
            items = [
                {
                    "dossier_code": c,
                    "agency_code": a,
                    "deadline": d,
                    "procedure_code": p,
                    "channel": ch,
                }
                for d, c, a, p, ch in rows
            ]
            return wire({"total": total, "items": items})

        return part

    def search(params: dict[str, str]) -> Callable[[LocalView], dict[str, Any]]:
        query = search_query(params, reference.agencies, reference.procedures)

        def part(view: LocalView) -> dict[str, Any]:
            total, rows = view.search(query, None, query.page * query.size)
            items = [
                {"dossier_code": c, "agency_code": r[0], "status": r[1], "procedure_code": r[2],
                 "channel": r[3], "received": r[4], "deadline": r[5] or None}
                for c, r in rows
            ]  # fmt: skip
            return wire({"total": total, "items": items})

        return part

    def summary(view: LocalView) -> dict[str, Any]:
        return wire(province_part(view, 8, TODAY))

    def page(parts: list[Any]) -> Any:
        return merge_rows(parts, 1, 50)

    def newest(parts: list[Any]) -> Any:
        return merge_rows(parts, 1, 50, newest_first=True)

    week = {"received_from": "2026-11-02", "received_to": "2026-11-08"}
    questions = [
        ("overdue, province, page 1 of 50", overdue({}), page),
        ("overdue, one agency, page 1", overdue({"agency": busiest}), page),
        ("search, by code prefix", search({"code": f"{busiest}-2611"}), newest),
        ("search, agency + status", search({"agency": busiest, "status": "PROCESSING"}), newest),
        ("search, received in one week", search(week), newest),
        ("province summary (every agency, 8 weeks)", summary, merge_province),
    ]
    print(
        f"\n{args.dossiers:,} dossiers over {args.workers} workers ({args.partitions} "
        f"partitions), {len(agencies)} agencies, {len(procedures)} procedures; median of "
        f"{args.repeat}, CPU ms\n"
    )
    columns = f"{'matched':>9} | {'slowest part':>12} | {'merge':>7} | {'answer':>8}"
    header = f"| {'question':42} | {columns} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, part, merge in questions:
        timings = [median_ms(lambda v=view, f=part: f(v), args.repeat) for view in views]  # type: ignore[misc]
        parts = [result for _, result in timings]
        merge_ms, merged = median_ms(lambda m=merge, p=parts: json.dumps(m(p)), args.repeat)  # type: ignore[misc]
        slowest = max(ms for ms, _ in timings)
        if "total" in parts[0]:
            matched = sum(int(p["total"]) for p in parts)
        else:
            matched = len(json.loads(merged)["agencies"])
        answer = slowest + merge_ms + 1
        print(
            f"| {name:42} | {matched:>9,} | {slowest:>10.1f}ms | {merge_ms:>5.1f}ms "
            f"| {answer:>6.1f}ms |"
        )
    for view in views:
        view.archive.close()
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
