"""The worker API's query parameters: bad input is named, never a server error."""

from __future__ import annotations

import pytest

from hub.worker.query import (
    MAX_PAGE_SIZE,
    BadParameterError,
    OverdueQuery,
    SearchQuery,
    overdue_query,
    search_query,
)

AGENCIES = {"H40.22", "H40.10"}
PROCEDURES = {"1.001", "2.002"}


def test_no_parameters_give_the_first_page_of_fifty_for_every_agency() -> None:
    assert overdue_query({}, AGENCIES, PROCEDURES) == OverdueQuery(
        None, None, None, None, None, 1, 50
    )


def test_every_overdue_filter_is_taken() -> None:
    query = {
        "agency": "H40.22", "procedure": "1.001", "channel": "ONLINE",
        "deadline_from": "2026-11-02", "deadline_to": "2026-11-30", "page": "3", "size": "20",
    }  # fmt: skip
    taken = overdue_query(query, AGENCIES, PROCEDURES)
    assert taken == OverdueQuery("H40.22", "1.001", "ONLINE", "2026-11-02", "2026-11-30", 3, 20)
    # what one worker asks another: the same filters, the first page of the rows it needs
    assert taken.params(60) == {**query, "page": "1", "size": "60"}


def test_an_overdue_row_matches_only_every_filter_given() -> None:
    query = overdue_query(
        {"agency": "H40.22", "channel": "ONLINE", "deadline_to": "2026-11-30"},
        AGENCIES,
        PROCEDURES,
    )
    assert query.matches("H40.22", "1.001", "ONLINE", "2026-11-30")
    assert not query.matches("H40.10", "1.001", "ONLINE", "2026-11-30")
    assert not query.matches("H40.22", "1.001", "IN_PERSON", "2026-11-30")
    assert not query.matches("H40.22", "1.001", "ONLINE", "2026-12-01")


def test_the_search_takes_code_status_procedure_and_received_dates() -> None:
    query = {
        "code": "000.00.12.H40-2611", "status": "PROCESSING", "procedure": "2.002",
        "received_from": "2026-11-01", "received_to": "2026-11-01",
    }  # fmt: skip
    assert search_query(query, AGENCIES, PROCEDURES) == SearchQuery(
        "000.00.12.H40-2611", None, "PROCESSING", "2.002", "2026-11-01", "2026-11-01", 1, 50
    )


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"page": "abc"}, "page"),
        ({"page": "0"}, "page"),
        ({"page": "-2"}, "page"),
        ({"page": "1.5"}, "page"),
        ({"size": ""}, "size"),
        ({"size": str(MAX_PAGE_SIZE + 1)}, "size"),
        ({"agency": "H40.99"}, "agency"),
        ({"agency": ""}, "agency"),
        ({"procedure": "9.999"}, "procedure"),
        ({"channel": "FAX"}, "channel"),
        ({"deadline_from": "2026-13-01"}, "deadline_from"),
        ({"deadline_to": "yesterday"}, "deadline_to"),
        ({"deadline_from": "2026-12-02", "deadline_to": "2026-12-01"}, "deadline_to"),
    ],
    ids=str,
)
def test_a_bad_overdue_parameter_is_named_with_what_is_wrong(
    query: dict[str, str], parameter: str
) -> None:
    with pytest.raises(BadParameterError) as caught:
        overdue_query(query, AGENCIES, PROCEDURES)
    assert caught.value.parameter == parameter
    body = caught.value.as_json()
    assert body["parameter"] == parameter
    assert body["error"].startswith(f"{parameter}: ")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"code": "x' OR 1=1"}, "code"),
        ({"code": ""}, "code"),
        ({"status": "DONE"}, "status"),
        ({"received_from": "01/11/2026"}, "received_from"),
        ({"received_from": "2026-11-02", "received_to": "2026-11-01"}, "received_to"),
        ({"size": "0"}, "size"),
    ],
    ids=str,
)
def test_a_bad_search_parameter_is_named(query: dict[str, str], parameter: str) -> None:
    with pytest.raises(BadParameterError) as caught:
        search_query(query, AGENCIES, PROCEDURES)
    assert caught.value.parameter == parameter
