"""What a dead letter says about itself: the ``hub.errors.*`` headers.

A record the hub or a connector cannot decode, validate or apply is copied to
``<source topic>.dlq`` with its key and value bytes untouched. Why it failed travels in
headers modelled on Kafka Connect's ``__connect.errors.*`` (reason, exception class and
message, source topic/partition/offset, processor), plus the hub's own: agency, event type,
dossier code, time of failure and attempt number.

Nothing here touches Kafka: :class:`DeadLetter` is plain data, and the header codec is a pair
of pure functions, so a faust agent, a connector and the ``hub dlq`` command share one
definition of the wire format. Header values are UTF-8 text; numbers are decimal, the time
is ISO-8601 in UTC.

Personal data never goes into these headers: ``detail`` is written by the caller from rules
and codes only, and :meth:`DeadLetter.for_exception` replaces the message of exceptions known
to quote their input (pydantic's) with a summary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

__all__ = [
    "DLQ_SUFFIX",
    "HEADER_AGENCY",
    "HEADER_ATTEMPT",
    "HEADER_DETAIL",
    "HEADER_DOSSIER",
    "HEADER_EVENT_TYPE",
    "HEADER_EXCEPTION_CLASS",
    "HEADER_EXCEPTION_MESSAGE",
    "HEADER_OFFSET",
    "HEADER_PARTITION",
    "HEADER_PREFIX",
    "HEADER_PROCESSOR",
    "HEADER_REASON",
    "HEADER_REPLAY_OF",
    "HEADER_TIMESTAMP",
    "HEADER_TOPIC",
    "MAX_TEXT_LENGTH",
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterHeaderError",
    "attempt_of",
    "detail_from_problems",
    "dlq_topic",
    "header_text",
    "is_hub_header",
    "passthrough_headers",
]

DLQ_SUFFIX: Final = ".dlq"

HEADER_PREFIX: Final = "hub.errors."
HEADER_REASON: Final = "hub.errors.reason"
HEADER_DETAIL: Final = "hub.errors.detail"
HEADER_EXCEPTION_CLASS: Final = "hub.errors.exception.class.name"
HEADER_EXCEPTION_MESSAGE: Final = "hub.errors.exception.message"
HEADER_TOPIC: Final = "hub.errors.topic"
HEADER_PARTITION: Final = "hub.errors.partition"
HEADER_OFFSET: Final = "hub.errors.offset"
HEADER_PROCESSOR: Final = "hub.errors.processor"
HEADER_AGENCY: Final = "hub.errors.agency"
HEADER_EVENT_TYPE: Final = "hub.errors.event.type"
HEADER_DOSSIER: Final = "hub.errors.dossier"
HEADER_TIMESTAMP: Final = "hub.errors.timestamp"
HEADER_ATTEMPT: Final = "hub.errors.attempt"
#: set by ``hub dlq replay`` on the re-published record: ``<dlq topic>:<partition>:<offset>``
HEADER_REPLAY_OF: Final = "hub.replay.of"

#: detail and exception message are cut to this many characters (an ellipsis marks the cut)
MAX_TEXT_LENGTH: Final = 1000

Headers = Sequence[tuple[str, bytes | None]]


class DeadLetterError(Exception):
    """Root of every dead-letter error."""


class DeadLetterHeaderError(DeadLetterError, ValueError):
    """A record's headers are not a readable dead letter (a required header missing or bad)."""


def dlq_topic(source: str) -> str:
    """The dead-letter topic of ``source``."""
    return f"{source}{DLQ_SUFFIX}"


def _truncate(text: str, limit: int = MAX_TEXT_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _utc(moment: datetime) -> datetime:
    # a naive time is taken as UTC: the hub never writes local times
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DeadLetter:
    """Why one record could not be processed, and where it came from.

    ``reason`` is a short machine code (``undecodable``, ``bad-magic-byte``,
    ``unknown-schema-id``, ``validation``, ``illegal_transition``, ``unknown_dossier``, …); it
    is a metrics label, so keep the set small. ``detail`` is a human sentence the caller
    guarantees free of personal data. ``attempt`` is 1 for a first failure; a replayed record
    carries ``hub.errors.attempt`` = previous + 1 (see :func:`attempt_of`).
    """

    reason: str
    detail: str
    exception_class: str
    exception_message: str
    source_topic: str
    source_partition: int
    source_offset: int
    processor: str
    agency_code: str | None = None
    event_type: str | None = None
    dossier_code: str | None = None
    failed_at: datetime = field(default_factory=_now)
    attempt: int = 1

    def __post_init__(self) -> None:
        for name in ("reason", "source_topic", "processor"):
            if not getattr(self, name):
                raise ValueError(f"a dead letter needs a {name}")
        if self.attempt < 1:
            raise ValueError(f"attempt is counted from 1, not {self.attempt}")
        object.__setattr__(self, "detail", _truncate(self.detail))
        object.__setattr__(self, "exception_message", _truncate(self.exception_message))
        object.__setattr__(self, "failed_at", _utc(self.failed_at))

    @classmethod
    def for_exception(
        cls,
        exc: BaseException,
        *,
        source_topic: str,
        source_partition: int,
        source_offset: int,
        processor: str,
        reason: str | None = None,
        detail: str | None = None,
        agency_code: str | None = None,
        event_type: str | None = None,
        dossier_code: str | None = None,
        attempt: int = 1,
        failed_at: datetime | None = None,
    ) -> DeadLetter:
        """A dead letter for ``exc``.

        ``reason`` defaults to the exception's ``reason`` attribute (every
        :class:`hub.contract.errors.ContractError` has one), else ``"error"``; ``detail``
        defaults to the exception message, which is right for the contract errors (they
        never quote input) and wrong for anything that might: pass ``detail`` then.
        """
        message = _safe_message(exc)
        code = reason or getattr(exc, "reason", None)
        return cls(
            reason=code if isinstance(code, str) and code else "error",
            detail=message if detail is None else detail,
            exception_class=f"{type(exc).__module__}.{type(exc).__qualname__}",
            exception_message=message,
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
            processor=processor,
            agency_code=agency_code,
            event_type=event_type,
            dossier_code=dossier_code,
            failed_at=_now() if failed_at is None else failed_at,
            attempt=attempt,
        )

    @property
    def dlq_topic(self) -> str:
        return dlq_topic(self.source_topic)

    def to_headers(self) -> list[tuple[str, bytes]]:
        """The ``hub.errors.*`` headers, optional ones only when set."""
        pairs: list[tuple[str, str | None]] = [
            (HEADER_REASON, self.reason),
            (HEADER_DETAIL, self.detail),
            (HEADER_EXCEPTION_CLASS, self.exception_class),
            (HEADER_EXCEPTION_MESSAGE, self.exception_message),
            (HEADER_TOPIC, self.source_topic),
            (HEADER_PARTITION, str(self.source_partition)),
            (HEADER_OFFSET, str(self.source_offset)),
            (HEADER_PROCESSOR, self.processor),
            (HEADER_AGENCY, self.agency_code),
            (HEADER_EVENT_TYPE, self.event_type),
            (HEADER_DOSSIER, self.dossier_code),
            (HEADER_TIMESTAMP, self.failed_at.isoformat()),
            (HEADER_ATTEMPT, str(self.attempt)),
        ]
        return [(name, text.encode()) for name, text in pairs if text is not None]

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes | None]]) -> DeadLetter:
        """Read a dead letter back; other headers are ignored, the first of duplicates wins.

        Required: reason, topic, partition, offset, processor and timestamp. Missing detail
        and exception headers read as ``""``, a missing attempt as 1, missing agency, event
        type and dossier as ``None``. Raises :class:`DeadLetterHeaderError`.
        """
        found: dict[str, str] = {}
        for name, raw in headers:
            if name.startswith(HEADER_PREFIX) and name not in found and raw is not None:
                found[name] = header_text(raw)

        def required(name: str) -> str:
            value = found.get(name)
            if not value:
                raise DeadLetterHeaderError(f"header {name} is missing")
            return value

        def integer(name: str, text: str) -> int:
            try:
                return int(text)
            except ValueError:
                raise DeadLetterHeaderError(f"header {name} is not an integer: {text!r}") from None

        stamp = required(HEADER_TIMESTAMP)
        try:
            failed_at = datetime.fromisoformat(stamp)
        except ValueError:
            raise DeadLetterHeaderError(
                f"header {HEADER_TIMESTAMP} is not ISO-8601: {stamp!r}"
            ) from None
        try:
            return cls(
                reason=required(HEADER_REASON),
                detail=found.get(HEADER_DETAIL, ""),
                exception_class=found.get(HEADER_EXCEPTION_CLASS, ""),
                exception_message=found.get(HEADER_EXCEPTION_MESSAGE, ""),
                source_topic=required(HEADER_TOPIC),
                source_partition=integer(HEADER_PARTITION, required(HEADER_PARTITION)),
                source_offset=integer(HEADER_OFFSET, required(HEADER_OFFSET)),
                processor=required(HEADER_PROCESSOR),
                agency_code=found.get(HEADER_AGENCY) or None,
                event_type=found.get(HEADER_EVENT_TYPE) or None,
                dossier_code=found.get(HEADER_DOSSIER) or None,
                failed_at=failed_at,
                attempt=integer(HEADER_ATTEMPT, found.get(HEADER_ATTEMPT, "1")),
            )
        except DeadLetterHeaderError:
            raise
        except ValueError as exc:
            raise DeadLetterHeaderError(str(exc)) from None


def header_text(raw: bytes) -> str:
    """A header value as text; bytes that are not UTF-8 are replaced, never fatal."""
    return raw.decode("utf-8", errors="replace")


def is_hub_header(name: str) -> bool:
    """Headers the dead-letter machinery owns (rewritten, never copied through)."""
    return name.startswith(HEADER_PREFIX) or name == HEADER_REPLAY_OF


def passthrough_headers(headers: Iterable[tuple[str, bytes | None]]) -> list[tuple[str, bytes]]:
    """The record's own headers (trace context and the like), without the hub's."""
    return [
        (name, raw if raw is not None else b"") for name, raw in headers if not is_hub_header(name)
    ]


def attempt_of(headers: Iterable[tuple[str, bytes | None]] | None) -> int:
    """The attempt a consumed record is: the replay's ``hub.errors.attempt``, else 1.

    Pass it to :class:`DeadLetter` when the record fails again, so repeated failures of one
    replayed record are counted.
    """
    for name, raw in headers or ():
        if name == HEADER_ATTEMPT and raw is not None:
            try:
                return max(1, int(header_text(raw)))
            except ValueError:
                return 1
    return 1


class _Problem(Protocol):
    # hub.contract.inbound.FieldProblem, without importing pydantic here
    @property
    def path(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def message(self) -> str: ...


def detail_from_problems(problems: Sequence[_Problem]) -> str:
    """A ``detail`` for failed validation: ``path: rule (message); …`` (messages carry no PII)."""
    parts = [f"{p.path or '<event>'}: {p.rule} ({p.message})" for p in problems]
    return _truncate("; ".join(parts)) if parts else "validation failed"


def _safe_message(exc: BaseException) -> str:
    # pydantic's ValidationError text quotes the input values, which may be personal data
    if type(exc).__module__.startswith(("pydantic", "pydantic_core")):
        count = getattr(exc, "error_count", None)
        title = getattr(exc, "title", type(exc).__name__)
        if callable(count):
            return f"{count()} validation error(s) for {title}"
        return f"validation failed for {title}"
    return str(exc)
