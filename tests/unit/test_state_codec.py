"""The stored state: format 2 round-trips every state the machine can reach, reads format 1
(JSON), and the dedup window is bounded and catches duplicates inside it."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.contract.event_types import DossierEventType as E
from hub.domain.events import ComplaintFiled, ServiceRated
from hub.domain.lifecycle import (
    DEDUP_WINDOW,
    Applied,
    DossierState,
    Duplicate,
    apply,
    event_key,
    evolve,
)
from hub.worker.processor import decode_state, encode_state
from tests.unit.test_lifecycle import AGENCY, CTX, DOSSIER, T0, applied, make_event

_TYPES = st.sampled_from([*E, "rating", "complaint"])


def _feedback(kind: str, moment: object) -> ServiceRated | ComplaintFiled:
    envelope = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": moment,
        "agency_code": AGENCY,
        "dossier_code": DOSSIER,
        "source_system": "portal",
    }
    if kind == "rating":
        return ServiceRated(**envelope, score=4, comment=None)  # type: ignore[arg-type]
    return ComplaintFiled(**envelope, subject="chậm", content="phản ánh")  # type: ignore[arg-type]


def history(first: E, steps: list[tuple[E | str, int]]) -> DossierState:
    """The state after ``first`` and whichever of ``steps`` the machine accepts."""
    state = applied(None, make_event(first))
    moment = T0
    for kind, minutes in steps:
        moment += timedelta(minutes=minutes)
        # E members are str too: test for the enum, or every step would be feedback
        event = make_event(kind, moment) if isinstance(kind, E) else _feedback(kind, moment)
        outcome = apply(state, event, CTX)
        if isinstance(outcome, Applied):
            state = outcome.state
    return state


@settings(max_examples=200, deadline=None)
@given(
    first=st.sampled_from([E.SUBMITTED, E.RECEIVED]),
    steps=st.lists(st.tuples(_TYPES, st.integers(-30, 3000)), max_size=60),
    alerts=st.frozensets(st.text(max_size=20), max_size=4),
)
def test_decode_encode_gives_the_state_back(
    first: E, steps: list[tuple[E | str, int]], alerts: frozenset[str]
) -> None:
    state = evolve(history(first, steps), alerts_emitted=alerts)
    back = decode_state(encode_state(state))
    assert back == state
    assert back is not None
    # Not part of equality, so checked on their own: the window and the arrival order.
    assert back.recent_event_keys == state.recent_event_keys
    assert back.timeline.arrival_order() == state.timeline.arrival_order()
    assert back.to_dict() == state.to_dict()


@settings(max_examples=50, deadline=None)
@given(
    first=st.sampled_from([E.SUBMITTED, E.RECEIVED]),
    steps=st.lists(st.tuples(_TYPES, st.integers(-30, 3000)), max_size=30),
)
def test_the_legacy_json_format_is_still_read(first: E, steps: list[tuple[E | str, int]]) -> None:
    state = history(first, steps)
    legacy = json.dumps(state.to_dict(), ensure_ascii=False).encode()
    back = decode_state(legacy)
    assert back == state
    assert back is not None
    assert (back.ratings_count, back.ratings_sum, back.complaints, back.last_apology_at) == (
        state.ratings_count, state.ratings_sum, state.complaints, state.last_apology_at,
    )  # fmt: skip
    assert decode_state(encode_state(back)) == state


def test_timeline_reads_in_occurred_at_order_with_ties_in_arrival_order() -> None:
    received = make_event(E.RECEIVED, T0 + timedelta(hours=2))
    state = applied(applied(None, make_event(E.SUBMITTED, T0)), received)
    late = make_event(E.STEP_STARTED, T0 + timedelta(hours=1))  # out of order, still legal
    state = applied(state, late)
    tie = make_event(E.STEP_COMPLETED, T0 + timedelta(hours=1))
    state = applied(state, tie)
    assert [e.event_id for e in state.timeline][1:3] == [late.event_id, tie.event_id]
    assert [e.event_id for e in state.timeline.arrival_order()][-2:] == [
        late.event_id,
        tie.event_id,
    ]


def _long_history(events: int) -> tuple[DossierState, list[str]]:
    state = applied(None, make_event(E.SUBMITTED))
    state = applied(state, make_event(E.RECEIVED, T0 + timedelta(minutes=1)))
    ids = []
    for i in range(events):
        event = make_event(
            E.STEP_STARTED if i % 2 == 0 else E.STEP_COMPLETED, T0 + timedelta(minutes=2 + i)
        )
        state = applied(state, event)
        ids.append(event.event_id)
    return state, ids


def test_a_duplicate_inside_the_window_changes_nothing() -> None:
    state, ids = _long_history(3 * DEDUP_WINDOW)
    before = encode_state(state)
    for event_id in ids[-DEDUP_WINDOW:]:
        again = make_event(E.STEP_STARTED, T0 + timedelta(days=1))
        again = msgspec.structs.replace(again, event_id=event_id)
        assert apply(state, again, CTX) == Duplicate()
    assert encode_state(state) == before


def test_the_window_is_bounded_and_holds_the_last_ids() -> None:
    state, ids = _long_history(3 * DEDUP_WINDOW)
    assert len(state.recent_event_keys) == DEDUP_WINDOW * 16
    assert state.recent_event_keys == b"".join(event_key(i) for i in ids[-DEDUP_WINDOW:])
    assert state.applied_event_ids == frozenset(ids[-DEDUP_WINDOW:])
    assert len(state.timeline) == 2 + 3 * DEDUP_WINDOW  # the history itself is all kept


def test_a_key_straddling_two_window_entries_is_not_a_match() -> None:
    state, _ = _long_history(4)
    keys = state.recent_event_keys
    straddling = uuid.UUID(bytes=keys[8:24])
    event = msgspec.structs.replace(
        make_event(E.STEP_STARTED, T0 + timedelta(days=1)), event_id=str(straddling)
    )
    assert isinstance(apply(state, event, CTX), Applied)


def test_state_cost_does_not_grow_with_the_history() -> None:
    """The per-event work is the same for the 10th and the 200th event: the timeline is
    appended as a blob and never decoded on the way (no entry is materialised)."""
    state, _ = _long_history(200)
    raw = encode_state(state)
    decoded = decode_state(raw)
    assert decoded is not None
    outcome = apply(decoded, make_event(E.STEP_STARTED, T0 + timedelta(days=1)), CTX)
    assert isinstance(outcome, Applied)
    encode_state(outcome.state)
    assert decoded.timeline._entries is None  # never decoded
    assert outcome.state.timeline._entries is None


def test_event_keys_are_16_bytes_whatever_the_id() -> None:
    u = uuid.uuid4()
    assert event_key(str(u)) == event_key(str(u).upper()) == u.bytes
    for odd in ("a" * 36, "0" * 36, "not-a-uuid", "", "x" * 100):
        assert len(event_key(odd)) == 16
    assert event_key("0" * 36) != event_key("0" * 32)


def test_one_state_always_gives_the_same_bytes() -> None:
    state, _ = _long_history(3)
    keys = {f"OVERDUE:STEP:{i}:2025-08-0{i}" for i in range(1, 9)}
    one = evolve(state, alerts_emitted=frozenset(keys))
    other = evolve(state, alerts_emitted=frozenset(sorted(keys, reverse=True)))
    assert encode_state(one) == encode_state(other)


_FORMAT_2_FIXTURE = Path(__file__).parent / "data" / "state_format2.json"


def test_states_stored_in_format_2_still_decode_to_the_same_state() -> None:
    """Bytes written by the format-2 codec (commit a2762fa, in changelog topics and stores
    today) against what each stood for, dumped by that same code: every field, the arrival
    order of the timeline and the dedup window included."""
    fixture = json.loads(_FORMAT_2_FIXTURE.read_text(encoding="utf-8"))
    assert len(fixture["states"]) >= 9
    for case in fixture["states"]:
        raw = bytes.fromhex(case["format_2"])
        assert raw[:1] == b"\x02"
        state = decode_state(raw)
        assert state is not None
        assert state.to_dict() == case["to_dict"]
        assert state == DossierState.from_dict(case["to_dict"])
        assert state.recent_event_keys.hex() == case["recent_event_keys"]
        assert [e.to_list() for e in state.timeline.arrival_order()] == case["arrival_order"]
        apology = state.last_apology_at.isoformat() if state.last_apology_at else None
        assert [state.ratings_count, state.ratings_sum, state.complaints, apology] == case["sums"]
        # and what the current codec writes of it reads back the same
        again = decode_state(encode_state(state))
        assert again == state
        assert again is not None
        assert again.recent_event_keys == state.recent_event_keys
        assert again.timeline.arrival_order() == state.timeline.arrival_order()
