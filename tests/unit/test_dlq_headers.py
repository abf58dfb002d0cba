"""The ``hub.errors.*`` headers: what a dead letter says about itself, and reading it back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from prometheus_client import REGISTRY

from hub.contract.errors import BadMagicByteError
from hub.dlq.commands import DlqEntry, Selection, replay_headers
from hub.dlq.headers import (
    HEADER_AGENCY,
    HEADER_ATTEMPT,
    HEADER_DETAIL,
    HEADER_DOSSIER,
    HEADER_EVENT_TYPE,
    HEADER_EXCEPTION_MESSAGE,
    HEADER_REPLAY_OF,
    HEADER_TIMESTAMP,
    HEADER_TOPIC,
    MAX_TEXT_LENGTH,
    DeadLetter,
    DeadLetterHeaderError,
    attempt_of,
    detail_from_problems,
    dlq_topic,
)
from hub.dlq.publisher import count_dead_letter, dead_letter_record

FAILED_AT = datetime(2025, 8, 5, 1, 30, 15, 123456, tzinfo=UTC)


def letter(**changes: object) -> DeadLetter:
    fields: dict[str, object] = {
        "reason": "illegal_transition",
        "detail": "RECEIVED -> RESULT_RETURNED is not allowed for 000.00.12.H40-250805-0001",
        "exception_class": "hub.domain.lifecycle.IllegalTransition",
        "exception_message": "status RECEIVED does not allow RESULT_RETURNED",
        "source_topic": "dossier.events",
        "source_partition": 3,
        "source_offset": 41_234,
        "processor": "hub.apply_dossier_events",
        "agency_code": "000.00.12.H40",
        "event_type": "RESULT_RETURNED",
        "dossier_code": "000.00.12.H40-250805-0001",
        "failed_at": FAILED_AT,
        "attempt": 2,
    }
    fields.update(changes)
    return DeadLetter(**fields)  # type: ignore[arg-type]


def names(headers: list[tuple[str, bytes]]) -> list[str]:
    return [name for name, _ in headers]


def test_dlq_topic_appends_the_suffix() -> None:
    assert dlq_topic("dossier.events") == "dossier.events.dlq"
    assert letter().dlq_topic == "dossier.events.dlq"


def test_every_field_survives_the_round_trip_through_headers() -> None:
    original = letter()
    assert DeadLetter.from_headers(original.to_headers()) == original


def test_headers_are_utf8_text_with_iso_timestamp_and_decimal_numbers() -> None:
    headers = dict(letter(detail="Hồ sơ bị từ chối: sai mã thủ tục").to_headers())
    assert headers["hub.errors.reason"] == b"illegal_transition"
    assert headers["hub.errors.detail"].decode() == "Hồ sơ bị từ chối: sai mã thủ tục"
    assert headers["hub.errors.exception.class.name"] == b"hub.domain.lifecycle.IllegalTransition"
    assert headers["hub.errors.topic"] == b"dossier.events"
    assert headers["hub.errors.partition"] == b"3"
    assert headers["hub.errors.offset"] == b"41234"
    assert headers["hub.errors.processor"] == b"hub.apply_dossier_events"
    assert headers["hub.errors.agency"] == b"000.00.12.H40"
    assert headers["hub.errors.event.type"] == b"RESULT_RETURNED"
    assert headers["hub.errors.dossier"] == b"000.00.12.H40-250805-0001"
    assert headers["hub.errors.timestamp"] == b"2025-08-05T01:30:15.123456+00:00"
    assert headers["hub.errors.attempt"] == b"2"


def test_optional_headers_are_left_out_when_unset_and_read_back_as_none() -> None:
    bare = letter(agency_code=None, event_type=None, dossier_code=None)
    headers = bare.to_headers()
    assert not {HEADER_AGENCY, HEADER_EVENT_TYPE, HEADER_DOSSIER} & set(names(headers))
    back = DeadLetter.from_headers(headers)
    assert (back.agency_code, back.event_type, back.dossier_code) == (None, None, None)
    assert back == bare


def test_missing_detail_exception_and_attempt_headers_read_as_defaults() -> None:
    dropped = {HEADER_DETAIL, HEADER_EXCEPTION_MESSAGE, HEADER_ATTEMPT}
    headers = [(n, v) for n, v in letter().to_headers() if n not in dropped]
    back = DeadLetter.from_headers(headers)
    assert back.detail == ""
    assert back.exception_message == ""
    assert back.attempt == 1


def test_other_headers_are_ignored_and_the_first_duplicate_wins() -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("hub.errors.unknown", None),
        *letter().to_headers(),
        (HEADER_TOPIC, b"other.topic"),
    ]
    assert DeadLetter.from_headers(headers).source_topic == "dossier.events"


@pytest.mark.parametrize("required", [HEADER_TOPIC, HEADER_TIMESTAMP, "hub.errors.reason"])
def test_a_missing_required_header_is_a_header_error(required: str) -> None:
    headers = [(n, v) for n, v in letter().to_headers() if n != required]
    with pytest.raises(DeadLetterHeaderError, match=required):
        DeadLetter.from_headers(headers)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("hub.errors.partition", b"three"),
        ("hub.errors.offset", b""),
        ("hub.errors.timestamp", b"yesterday"),
        ("hub.errors.attempt", b"0"),
    ],
)
def test_a_malformed_header_is_a_header_error(name: str, value: bytes) -> None:
    headers = [(n, value if n == name else v) for n, v in letter().to_headers()]
    with pytest.raises(DeadLetterHeaderError):
        DeadLetter.from_headers(headers)


def test_bytes_that_are_not_utf8_do_not_stop_reading() -> None:
    headers = [(n, b"bad \xff byte" if n == HEADER_DETAIL else v) for n, v in letter().to_headers()]
    assert DeadLetter.from_headers(headers).detail == "bad \ufffd byte"


def test_detail_and_exception_message_are_cut_to_1000_characters() -> None:
    long = letter(detail="x" * 5000, exception_message="ý" * 1001)
    assert len(long.detail) == MAX_TEXT_LENGTH
    assert long.detail.endswith("…")
    assert len(long.exception_message) == MAX_TEXT_LENGTH
    back = DeadLetter.from_headers(long.to_headers())
    assert back.detail == long.detail
    assert back.exception_message == long.exception_message


def test_text_of_exactly_1000_characters_is_kept_whole() -> None:
    assert letter(detail="d" * 1000).detail == "d" * 1000


def test_failure_time_is_kept_in_utc() -> None:
    hanoi = timezone(timedelta(hours=7))
    local = letter(failed_at=datetime(2025, 8, 5, 8, 30, 15, 123456, tzinfo=hanoi))
    assert local.failed_at == FAILED_AT
    assert local.failed_at.tzinfo is UTC
    naive = DeadLetter.from_headers(
        [(n, b"2025-08-05T01:30:15.123456" if n == HEADER_TIMESTAMP else v)
         for n, v in letter().to_headers()]
    )  # fmt: skip
    assert naive.failed_at == FAILED_AT


@pytest.mark.parametrize("empty", ["reason", "source_topic", "processor"])
def test_a_dead_letter_needs_reason_topic_and_processor(empty: str) -> None:
    with pytest.raises(ValueError, match=empty):
        letter(**{empty: ""})


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="attempt"):
        letter(attempt=0)


def test_for_exception_takes_the_reason_of_contract_errors() -> None:
    exc = BadMagicByteError("first byte is 123, not the magic byte 0")
    made = DeadLetter.for_exception(
        exc,
        source_topic="dossier.events",
        source_partition=0,
        source_offset=7,
        processor="hub.apply_dossier_events",
    )
    assert made.reason == "bad-magic-byte"
    assert made.detail == made.exception_message == "first byte is 123, not the magic byte 0"
    assert made.exception_class == "hub.contract.errors.BadMagicByteError"
    assert made.attempt == 1
    assert made.failed_at.tzinfo is UTC


def test_for_exception_never_copies_a_pydantic_message_that_quotes_input() -> None:
    from pydantic import BaseModel, ValidationError

    class Applicant(BaseModel):
        applicant_name: int

    with pytest.raises(ValidationError) as caught:
        Applicant.model_validate({"applicant_name": "Nguyễn Thị Hồng"})
    made = DeadLetter.for_exception(
        caught.value,
        reason="validation",
        detail="applicant_name: type",
        source_topic="dossier.events",
        source_partition=0,
        source_offset=8,
        processor="connector.one-stop",
    )
    assert "Nguyễn" not in made.exception_message
    assert made.exception_message == "1 validation error(s) for Applicant"
    assert made.reason == "validation"
    assert made.detail == "applicant_name: type"


def test_detail_from_problems_lists_path_rule_and_message() -> None:
    @dataclass(frozen=True)
    class Problem:
        path: str
        rule: str
        message: str

    detail = detail_from_problems(
        [Problem("payload.appointment_date", "before_floor", "before the receipt date"),
         Problem("", "unknown_event_type", "no such event type")]
    )  # fmt: skip
    assert detail == (
        "payload.appointment_date: before_floor (before the receipt date); "
        "<event>: unknown_event_type (no such event type)"
    )
    assert detail_from_problems([]) == "validation failed"


def test_attempt_of_a_record_is_its_replay_attempt_or_one() -> None:
    assert attempt_of(None) == 1
    assert attempt_of([("traceparent", b"x")]) == 1
    assert attempt_of([(HEADER_ATTEMPT, b"3")]) == 3
    assert attempt_of([(HEADER_ATTEMPT, b"junk")]) == 1


def test_a_dead_letter_record_keeps_bytes_and_own_headers_and_replaces_hub_headers() -> None:
    original = [
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        (HEADER_ATTEMPT, b"2"),
        (HEADER_REPLAY_OF, b"dossier.events.dlq:0:5"),
    ]
    record = dead_letter_record(letter(), b"key", b"\x00\x00\x00\x00\x01body", original)
    assert record.topic == "dossier.events.dlq"
    assert (record.key, record.value) == (b"key", b"\x00\x00\x00\x00\x01body")
    assert record.headers[0] == original[0]
    assert HEADER_REPLAY_OF not in names(record.headers)
    assert names(record.headers).count(HEADER_ATTEMPT) == 1
    assert DeadLetter.from_headers(record.headers) == letter()


def entry(the_letter: DeadLetter | None, offset: int = 9, partition: int = 0) -> DlqEntry:
    own = [("traceparent", b"t")]
    headers = dead_letter_record(the_letter, b"k", b"v", own).headers if the_letter else own
    return DlqEntry(
        topic="dossier.events.dlq",
        partition=partition,
        offset=offset,
        timestamp_ms=0,
        key=b"k",
        value=b"v",
        headers=tuple(headers),
        letter=the_letter,
    )


def test_replayed_records_name_their_dead_letter_and_the_next_attempt() -> None:
    headers = replay_headers(entry(letter(attempt=2), offset=17))
    assert headers == [
        ("traceparent", b"t"),
        (HEADER_REPLAY_OF, b"dossier.events.dlq:0:17"),
        (HEADER_ATTEMPT, b"3"),
    ]


def test_selection_by_reason_agency_time_and_offset() -> None:
    one = entry(letter(reason="validation", agency_code="000.00.12.H40"), offset=1)
    two = entry(letter(reason="undecodable", agency_code=None), offset=2, partition=1)
    unreadable = entry(None, offset=3)
    assert Selection().matches(unreadable)
    assert [
        e.offset for e in (one, two, unreadable) if Selection(reason="validation").matches(e)
    ] == [1]
    assert not Selection(agency="000.00.12.H40").matches(two)
    assert Selection(since=FAILED_AT).matches(one)
    assert not Selection(until=FAILED_AT).matches(one)
    assert Selection(offsets=frozenset({(None, 2)})).matches(two)
    assert Selection(offsets=frozenset({(1, 2)})).matches(two)
    assert not Selection(offsets=frozenset({(0, 2)})).matches(two)


def test_dead_letters_are_counted_by_topic_reason_and_processor_only() -> None:
    labels = {"source_topic": "t.counted", "reason": "validation", "processor": "unit"}

    def counted() -> float:
        return REGISTRY.get_sample_value("hub_dead_letters_total", labels) or 0.0

    before = counted()
    count_dead_letter(letter(source_topic="t.counted", reason="validation", processor="unit"))
    assert counted() == before + 1
    samples = [s for m in REGISTRY.collect() if m.name == "hub_dead_letters" for s in m.samples]
    assert all(set(s.labels) == set(labels) for s in samples if s.name.endswith("_total"))
