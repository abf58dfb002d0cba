"""Audit entries held against their input records (``hub.audit.inputs.account``)."""

from __future__ import annotations

from hub.audit.inputs import InputRecord, account
from tests.unit.test_audit import TOPIC, chain


def records(n: int) -> list[InputRecord]:
    """The input records ``chain(n)`` describes (offsets 10.., bytes ``record i``)."""
    return [
        InputRecord(10 + i, f"record {i}".encode(), f"id-{i}", "DossierSubmitted") for i in range(n)
    ]


def test_entries_matching_their_records_and_every_consumed_record_entered_are_fine() -> None:
    found = account(chain(4), records(4), log_start=10, committed=14)
    assert (found.checked, found.not_checkable, found.accounted) == (4, 0, 4)
    assert found.problems == []


def test_an_entry_whose_record_does_not_exist_or_differs_is_a_problem() -> None:
    entries = chain(3)
    found = account(entries, records(2), log_start=10, committed=None)
    assert found.problems == ["seq 3: no input record at offset 12"]
    changed = [*records(2), InputRecord(12, b"another record", "id-2", "DossierSubmitted")]
    [problem] = account(entries, changed, log_start=10, committed=None).problems
    assert "offset 12 is not the one the entry describes" in problem


def test_an_entry_naming_another_event_than_its_record_is_a_problem() -> None:
    entries = chain(2)
    other = [records(2)[0], InputRecord(11, b"record 1", "id-99", "DossierSubmitted")]
    [problem] = account(entries, other, log_start=10, committed=None).problems
    assert problem == "seq 2: the entry's event_id is not the input record's (offset 11)"
    undecoded = [records(2)[0], InputRecord(11, b"record 1")]  # no registry: digest only
    assert account(entries, undecoded, log_start=10, committed=None).problems == []


def test_records_deleted_by_retention_are_not_checkable_not_forged() -> None:
    found = account(chain(4), records(4)[2:], log_start=12, committed=14)
    assert (found.checked, found.not_checkable, found.problems) == (2, 2, [])


def test_a_consumed_record_without_entry_or_dead_letter_is_reported() -> None:
    entries = chain(2)
    inputs = [*records(2), InputRecord(12, b"dropped", "id-new", "DossierSubmitted")]
    [problem] = account(entries, inputs, log_start=10, committed=13).problems
    assert problem.startswith("input offset 12 was consumed (committed 13)")
    dead = account(entries, inputs, log_start=10, committed=13, dead_letter_offsets=[12])
    assert dead.problems == [] and dead.accounted == 3
    # not yet committed: the hub has not consumed it, nothing to account for
    assert account(entries, inputs, log_start=10, committed=12).problems == []


def test_a_redelivered_event_needs_no_entry_of_its_own() -> None:
    entries = chain(2)
    repeat = InputRecord(12, b"record 0, sent again", "id-0", "DossierSubmitted")
    found = account(entries, [*records(2), repeat], log_start=10, committed=13)
    assert found.problems == [] and found.accounted == 3
    assert entries[0]["topic"] == TOPIC
