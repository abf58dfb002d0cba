"""``STANDING_FIELDS`` lists every field the figures read, so ``same_standing`` may skip
computing the standing of states that share those fields."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.contract.event_types import DossierEventType as E
from hub.domain.deadlines import mark_emitted
from hub.domain.lifecycle import Applied, DossierState, apply
from hub.domain.standing import STANDING_FIELDS, same_standing, standing_values
from tests.unit.test_lifecycle import CTX, T0, applied, make_event
from tests.unit.test_state_codec import _TYPES, _feedback


class Recorder:
    """A state that notes which of its fields are read."""

    def __init__(self, state: DossierState, read: set[str]) -> None:
        self._state = state
        self._read = read

    def __getattr__(self, name: str) -> Any:
        self._read.add(name)
        return getattr(self._state, name)


def lives(first: E, steps: list[tuple[E | str, int]]) -> list[DossierState]:
    """Every state a history passes through (as ``test_state_codec.history`` builds it)."""
    states = [applied(None, make_event(first))]
    moment = T0
    for kind, minutes in steps:
        moment += timedelta(minutes=minutes)
        event = make_event(kind, moment) if isinstance(kind, E) else _feedback(kind, moment)
        outcome = apply(states[-1], event, CTX)
        if isinstance(outcome, Applied):
            states.append(outcome.state)
    return states


@settings(max_examples=150, deadline=None)
@given(
    first=st.sampled_from([E.SUBMITTED, E.RECEIVED]),
    steps=st.lists(st.tuples(_TYPES, st.integers(-30, 6000)), max_size=40),
    repeated_supplement_is_late=st.booleans(),
)
def test_the_standing_reads_only_the_listed_fields(
    first: E, steps: list[tuple[E | str, int]], repeated_supplement_is_late: bool
) -> None:
    read: set[str] = set()
    for state in lives(first, steps):
        for version in (state, mark_emitted(state, [])):
            standing_values(
                Recorder(version, read),  # type: ignore[arg-type]
                CTX.calendar,
                late_if_repeated_supplement=repeated_supplement_is_late,
            )
    assert read <= set(STANDING_FIELDS), read - set(STANDING_FIELDS)


@settings(max_examples=100, deadline=None)
@given(
    first=st.sampled_from([E.SUBMITTED, E.RECEIVED]),
    steps=st.lists(st.tuples(_TYPES, st.integers(-30, 6000)), max_size=40),
)
def test_states_sharing_the_fields_share_the_standing(
    first: E, steps: list[tuple[E | str, int]]
) -> None:
    states = lives(first, steps)
    for before, after in itertools.pairwise(states):
        if same_standing(before, after):
            assert standing_values(before, CTX.calendar) == standing_values(after, CTX.calendar)
    for state in states:
        assert same_standing(state, msgspec.structs.replace(state, timeline=state.timeline))
        copy = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=DossierState)
        # equal values in other objects: not known to be the same, so computed
        assert not same_standing(state, copy) or standing_values(
            state, CTX.calendar
        ) == standing_values(copy, CTX.calendar)
