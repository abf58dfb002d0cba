"""The view's questions (search, overdue with filters, weekly on-time trend) and the
province summary, whose parts from any split of the dossiers add up to the whole."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec

from hub.domain.events import Channel
from hub.domain.lifecycle import DossierState
from hub.domain.status import DossierStatus
from hub.reference import load_reference
from hub.worker.archive import ArchiveDirectory, RocksArchive
from hub.worker.figures import LocalView, province_part
from hub.worker.province import merge_province, merge_rows
from hub.worker.query import overdue_query, search_query

REFERENCE = load_reference()
CALENDAR = REFERENCE.calendar
JUSTICE, HEALTH = "000.00.03.H40", "000.00.04.H40"
BIRTH, CRIMINAL = "1.001193", "2.000488"
AGENCIES, PROCEDURES = REFERENCE.agencies, REFERENCE.procedures


def dossier(
    code: str,
    *,
    agency: str = JUSTICE,
    procedure: str = BIRTH,
    channel: Channel = Channel.ONLINE,
    received: date = date(2026, 11, 2),
    deadline: date | None = date(2026, 11, 5),
    status: DossierStatus = DossierStatus.PROCESSING,
    processed: date | None = None,
    held_by: tuple[str, ...] = (),
) -> DossierState:
    when = datetime(received.year, received.month, received.day, 2, tzinfo=UTC)
    done = (
        None
        if processed is None
        else datetime(processed.year, processed.month, processed.day, 3, tzinfo=UTC)
    )
    return DossierState(
        dossier_code=code,
        procedure_code=procedure,
        channel=channel,
        agency_code=agency,
        status=status,
        last_event_at=done or when,
        submitted_at=when,
        received_at=when,
        appointment_date=deadline,
        original_appointment_date=deadline,
        processed_at=done,
        handled_by=(*held_by, agency),
    )


def view_of(*states: DossierState) -> LocalView:
    view = LocalView(CALENDAR)
    view.rebuild(states)
    return view


def codes(found: Sequence[tuple[str, object]]) -> list[str]:
    return [code for code, _ in found]


def test_the_search_finds_by_code_prefix_agency_status_procedure_and_dates_newest_first() -> None:
    view = view_of(
        dossier("A-1", received=date(2026, 11, 2)),
        dossier("A-2", received=date(2026, 11, 9), procedure=CRIMINAL),
        dossier("B-1", agency=HEALTH, received=date(2026, 11, 3), status=DossierStatus.RECEIVED),
    )

    def search(**params: str) -> list[str]:
        return codes(view.search(search_query(params, AGENCIES, PROCEDURES), None, 50)[1])

    assert search() == ["A-2", "B-1", "A-1"]
    assert search(code="A-") == ["A-2", "A-1"]
    assert search(agency=HEALTH) == ["B-1"]
    assert search(status="RECEIVED") == ["B-1"]
    assert search(procedure=CRIMINAL) == ["A-2"]
    assert search(received_from="2026-11-03", received_to="2026-11-08") == ["B-1"]


def test_an_agency_finds_what_it_holds_or_held_and_nothing_else() -> None:
    view = view_of(
        dossier("A-1"),
        dossier("T-1", agency=HEALTH, held_by=(JUSTICE,)),  # transferred from justice
        dossier("B-1", agency=HEALTH),
    )
    query = search_query({}, AGENCIES, PROCEDURES)
    assert view.search(query, JUSTICE, 50) == (2, view.search(query, JUSTICE, 2)[1])
    assert codes(view.search(query, JUSTICE, 50)[1]) == ["T-1", "A-1"]  # same day: by code
    assert codes(view.search(query, HEALTH, 50)[1]) == ["T-1", "B-1"]
    assert view.search(query, HEALTH, 1) == (2, view.search(query, HEALTH, 50)[1][:1])


def test_the_overdue_list_filters_by_agency_procedure_channel_and_deadline_range() -> None:
    view = view_of(
        dossier("A-1", deadline=date(2026, 11, 5)),
        dossier("A-2", deadline=date(2026, 11, 20), channel=Channel.IN_PERSON),
        dossier("A-3", deadline=date(2026, 12, 30)),  # not yet due
        dossier("B-1", agency=HEALTH, deadline=date(2026, 11, 10), procedure=CRIMINAL),
        dossier(
            "D-1",
            deadline=date(2026, 11, 1),
            status=DossierStatus.PROCESSED,
            processed=date(2026, 11, 2),
        ),  # finished: never overdue
    )
    today = "2026-12-06"

    def overdue(**params: str) -> list[str]:
        total, rows = view.overdue(overdue_query(params, AGENCIES, PROCEDURES), today, 50)
        assert total == len(rows)
        return [row[1] for row in rows]

    assert overdue() == ["A-1", "B-1", "A-2"]  # oldest deadline first
    assert overdue(agency=JUSTICE) == ["A-1", "A-2"]
    assert overdue(procedure=CRIMINAL) == ["B-1"]
    assert overdue(channel="IN_PERSON") == ["A-2"]
    assert overdue(deadline_from="2026-11-06", deadline_to="2026-11-19") == ["B-1"]
    # a page needs only its first rows ordered; the total still counts them all
    total, first = view.overdue(overdue_query({}, AGENCIES, PROCEDURES), today, 1)
    assert (total, [row[1] for row in first]) == (3, ["A-1"])


def test_a_finished_dossier_is_booked_in_the_week_it_finished_and_moves_with_its_verdict() -> None:
    late = dossier(
        "A-1", deadline=date(2026, 11, 5), status=DossierStatus.PROCESSED,
        processed=date(2026, 11, 11),  # a Wednesday, after the deadline
    )  # fmt: skip
    view = view_of(late)
    assert view.weekly == {(JUSTICE, "2026-11-09"): [0, 1]}
    # the same dossier judged again with a later appointment (an apology): on time now
    forgiven = msgspec.structs.replace(late, appointment_date=date(2026, 11, 12))
    view.replace(late, forgiven)
    assert view.weekly == {(JUSTICE, "2026-11-09"): [1, 0]}
    assert view_of(forgiven).weekly == view.weekly


def test_the_province_summary_of_any_split_of_the_dossiers_is_the_summary_of_all() -> None:
    states = [
        dossier("A-1"),
        dossier("A-2", channel=Channel.IN_PERSON),
        dossier(
            "A-3",
            status=DossierStatus.PROCESSED,
            processed=date(2026, 11, 4),
            deadline=date(2026, 11, 5),
        ),
        dossier("B-1", agency=HEALTH, procedure=CRIMINAL),
        dossier(
            "B-2",
            agency=HEALTH,
            status=DossierStatus.PROCESSED,
            processed=date(2026, 11, 20),
            deadline=date(2026, 11, 10),
        ),
    ]
    today = date(2026, 11, 25)
    whole = province_part(view_of(*states), 8, today)
    for cut in range(len(states) + 1):
        parts = [province_part(view_of(*states[:cut]), 8, today),
                 province_part(view_of(*states[cut:]), 8, today)]  # fmt: skip
        assert merge_province(parts) == merge_province([whole]), cut
    merged = merge_province([whole])
    assert merged["province"]["counts"]["submitted_total"] == 5
    assert merged["agencies"][HEALTH]["weekly"] == {"2026-11-16": [0, 1]}
    assert merged["agencies"][JUSTICE]["on_time_rate"] == 1.0
    assert merged["agencies"][JUSTICE]["online_share"] == 2 / 3


def test_weeks_before_the_trend_window_are_left_out() -> None:
    old = dossier(
        "A-1", status=DossierStatus.PROCESSED, processed=date(2026, 9, 1),
        deadline=date(2026, 9, 30), received=date(2026, 8, 31),
    )  # fmt: skip
    part = province_part(view_of(old), 8, date(2026, 12, 6))
    assert part["agencies"][JUSTICE]["weekly"] == {}
    assert part["agencies"][JUSTICE]["counts"]["finished_on_time"] == 1


def test_a_page_of_the_search_is_that_page_of_the_merged_newest_first_order() -> None:
    def rows(*pairs: tuple[str, str]) -> list[dict[str, str]]:
        return [{"dossier_code": c, "received": r} for c, r in pairs]

    one = {"total": 3, "items": rows(("A-3", "2026-11-09"), ("A-1", "2026-11-02"))}
    two = {"total": 1, "items": rows(("B-1", "2026-11-05"))}
    page = merge_rows([one, two], 1, 2, newest_first=True)
    assert [r["dossier_code"] for r in page["items"]] == ["A-3", "B-1"]
    assert page["total"] == 4
    assert [
        r["dossier_code"] for r in merge_rows([one, two], 2, 2, newest_first=True)["items"]
    ] == ["A-1"]


def test_a_finished_dossier_leaves_memory_for_the_archive_and_is_still_found(
    tmp_path: Path,
) -> None:
    archives = ArchiveDirectory(tmp_path / "view")
    view = LocalView(CALENDAR, archive=archives.new())
    open_one = dossier("A-1", received=date(2026, 11, 2))
    done = msgspec.structs.replace(
        open_one, status=DossierStatus.PROCESSED, processed_at=datetime(2026, 11, 4, tzinfo=UTC)
    )
    view.rebuild([open_one, dossier("A-2", received=date(2026, 11, 3))])
    view.replace(open_one, done)

    assert set(view.rows) == {"A-2"}  # memory holds the open dossier only
    assert [code for code, _ in view.archive.items()] == ["A-1"]

    def search(**params: str) -> list[str]:
        return codes(view.search(search_query(params, AGENCIES, PROCEDURES), JUSTICE, 50)[1])

    assert search() == ["A-2", "A-1"]
    assert search(status="PROCESSED") == ["A-1"]
    assert search(status="PROCESSING") == ["A-2"]
    view.replace(None, msgspec.structs.replace(done, dossier_code="B-1"))  # finished too
    assert search(code="A-") == ["A-2", "A-1"]  # the archive read from the prefix on
    assert search(code="B") == ["B-1"]
    # a date range is judged on the archive's stored date before a row is decoded
    assert search(received_from="2026-11-02", received_to="2026-11-02") == ["B-1", "A-1"]
    assert search(received_from="2026-11-03") == ["A-2"]
    assert search(received_to="2026-11-01") == []
    found = dict(view.search(search_query({}, AGENCIES, PROCEDURES), None, 50)[1])
    assert found["A-1"] == (JUSTICE, "PROCESSED", BIRTH, "ONLINE", "2026-11-02", "", (JUSTICE,))

    # a finished dossier that opens again (a correction) comes back to memory
    view.replace(done, open_one)
    assert set(view.rows) == {"A-1", "A-2"}
    assert [code for code, _ in view.archive.items()] == ["B-1"]


def test_the_archive_keeps_rows_in_memory_while_its_disk_refuses_writes(tmp_path: Path) -> None:
    archive = RocksArchive(tmp_path / "rows")
    row = (JUSTICE, "PROCESSED", BIRTH, "ONLINE", "2026-11-02", "", (JUSTICE,))
    archive.put("A-1", row)
    assert list(archive.items()) == [("A-1", row)]

    class FullDisk:
        def __init__(self, db: Any) -> None:
            self.db = db

        def write(self, *args: Any, **kwargs: Any) -> None:
            raise Exception("IO error: No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.db, name)

    real = archive._db
    archive._db = FullDisk(real)  # type: ignore[assignment]
    archive.put("A-2", row)
    archive.delete("A-1")
    assert list(archive.items()) == [("A-2", row)]  # nothing lost, the delete honoured
    assert list(archive.items(received_from="2026-11-03")) == []  # filtered there too
    archive._db = real
    assert list(archive.items()) == [("A-2", row)]  # written once the disk takes it
    assert archive._pending == {}
    archive.close()
    assert not archive.path.exists()
