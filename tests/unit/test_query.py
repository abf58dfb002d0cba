"""The worker API's query parameters: bad input is named, never a server error."""

from __future__ import annotations

import pytest

from hub.worker.query import MAX_PAGE_SIZE, BadParameterError, OverdueQuery, overdue_query

AGENCIES = {"H40.22", "H40.10"}


def test_no_parameters_give_the_first_page_of_fifty_for_every_agency() -> None:
    assert overdue_query({}, AGENCIES) == OverdueQuery(None, 1, 50)


def test_known_agency_page_and_size_are_taken() -> None:
    query = {"agency": "H40.22", "page": "3", "size": "20"}
    assert overdue_query(query, AGENCIES) == OverdueQuery("H40.22", 3, 20)


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
    ],
    ids=str,
)
def test_a_bad_parameter_is_named_with_what_is_wrong(query: dict[str, str], parameter: str) -> None:
    with pytest.raises(BadParameterError) as caught:
        overdue_query(query, AGENCIES)
    assert caught.value.parameter == parameter
    body = caught.value.as_json()
    assert body["parameter"] == parameter
    assert body["error"].startswith(f"{parameter}: ")
