"""The fault tests' input-equals-output check must itself fail when a guarantee is broken:
a lost record, a duplicated one, a reordered one, and a redelivery of the same record id
(the hub's outputs are exactly-once for read-committed readers, so a repeat is a failure;
it is counted apart from duplicates, which no input explains)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from connectors.scenarios import VN
from hub.outputs import output_id
from tests.fixtures.ledger import Ledger, province_events

START = datetime(2026, 11, 2, 8, 0, tzinfo=VN)


@pytest.fixture(scope="module")
def ledger_and_outputs() -> tuple[Ledger, list[tuple[str, str]]]:
    ledger = Ledger()
    for event in province_events(6, START - timedelta(days=1)):
        ledger.acknowledged(event)
    want, _ = ledger.expected()
    # what a correct hub writes: each dossier's records in its inputs' order
    outputs = [(code, record_id) for code, ids in want.items() for record_id in ids]
    return ledger, outputs


def test_the_hubs_correct_answer_passes(
    ledger_and_outputs: tuple[Ledger, list[tuple[str, str]]],
) -> None:
    ledger, outputs = ledger_and_outputs
    check = ledger.check(outputs)
    assert check.ok, check.problems
    assert (check.lost, check.duplicated, check.out_of_order, check.redelivered) == (0, 0, 0, 0)
    assert check.expected == len(outputs) > 20
    assert check.events == ledger.events > 30


def test_a_lost_record_fails_the_check(
    ledger_and_outputs: tuple[Ledger, list[tuple[str, str]]],
) -> None:
    ledger, outputs = ledger_and_outputs
    check = ledger.check(outputs[:7] + outputs[8:])
    assert not check.ok
    assert check.lost == 1


def test_a_duplicated_change_fails_the_check(
    ledger_and_outputs: tuple[Ledger, list[tuple[str, str]]],
) -> None:
    ledger, outputs = ledger_and_outputs
    code, _ = outputs[3]
    # the same change applied twice comes out under another id (not the cause's)
    check = ledger.check([*outputs, (code, output_id("applied twice", "status"))])
    assert not check.ok
    assert check.duplicated == 1


def test_a_reordered_dossier_fails_the_check(
    ledger_and_outputs: tuple[Ledger, list[tuple[str, str]]],
) -> None:
    ledger, outputs = ledger_and_outputs
    swapped = list(outputs)
    swapped[1], swapped[2] = swapped[2], swapped[1]  # both of the first dossier
    assert swapped[1][0] == swapped[2][0]
    check = ledger.check(swapped)
    assert not check.ok
    assert (check.out_of_order, check.lost, check.duplicated) == (1, 0, 0)


def test_a_redelivery_of_the_same_id_fails_the_check_but_is_not_a_duplicate(
    ledger_and_outputs: tuple[Ledger, list[tuple[str, str]]],
) -> None:
    ledger, outputs = ledger_and_outputs
    # a replay after a crash repeats what was already written, after it: exactly-once
    # output (Kafka transactions, read committed) must never show it
    check = ledger.check([*outputs[:5], *outputs[3:5], *outputs[5:]])
    assert not check.ok
    assert (check.redelivered, check.duplicated, check.lost) == (2, 0, 0)


def test_an_input_acknowledged_twice_is_one_input() -> None:
    ledger = Ledger()
    events = province_events(1, START - timedelta(days=1))
    for event in [*events, events[0]]:
        ledger.acknowledged(event)
    assert ledger.events == len(events)
