"""JSON on Kafka in, validated Avro out: the connector for agency systems that cannot write Avro.

Some agency systems can produce to Kafka but have no Avro serializer or schema registry
client. They write the JSON of ``hub.contract.inbound`` (the same JSON the HTTP ingress takes)
to two topics, keyed by dossier code:

* ``<prefix>dossier.events.json``  → validated, Avro-encoded, written to ``<prefix>dossier.events``
* ``<prefix>feedback.events.json`` → validated, Avro-encoded, written to ``<prefix>feedback.events``

A record the bridge cannot use goes to ``<json topic>.dlq`` with its original key, value and
headers, plus the ``hub.errors.*`` headers (processor ``json-bridge``):

* ``undecodable``: the value is not UTF-8 (a leading UTF-8 BOM is tolerated) or not JSON;
* ``empty-value``: a tombstone (no value at all);
* ``validation``: the JSON is not a valid event; the detail lists ``path: rule (message)``
  from :func:`hub.dlq.detail_from_problems`, never a submitted value. The bridge adds two
  rules of its own: ``key: key_mismatch`` (the Kafka key is not the dossier code, so the
  record may have been partitioned apart from its dossier's other events) and
  ``event_type: wrong_topic`` (a feedback event on the dossier topic or the reverse);
* ``unencodable``: valid JSON the Avro schema still refuses (a contract bug, not the sender's).

Agency, event type and dossier code headers are set only when the value was readable and the
field has its code format (or is a known event type), so a header never carries free text
that might be personal data.

Delivery: a consumer group (:mod:`hub.consumer_group`) that commits by hand. Each polled batch
is validated, every output and dead letter is sent, the bridge waits until Kafka acknowledged
all of them, and only then commits the batch's offsets. A crash at any point re-delivers the
uncommitted batch; the hub deduplicates on ``event_id``, so nothing acknowledged is lost and
nothing is counted twice. An error that is not the record's fault (broker or registry down)
stops the bridge without committing, rather than dead-lettering good records.

Run ``python -m connectors.json_bridge --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from kafka.errors import KafkaError

from connectors.cli import add_kafka_arguments
from connectors.publisher import EventPublisher
from hub.consumer_group import (
    CommitFailedError,
    ConsumerError,
    Partition,
    manual_commit_consumer,
)
from hub.contract.errors import ContractError, EncodeError
from hub.contract.event_types import DossierEventType, FeedbackEventType
from hub.contract.inbound import (
    AGENCY_CODE_PATTERN,
    DOSSIER_CODE_PATTERN,
    FieldProblem,
    InboundDossierEvent,
    InboundFeedbackEvent,
)
from hub.dlq import (
    DeadLetter,
    attempt_of,
    count_dead_letter,
    dead_letter_record,
    detail_from_problems,
    dlq_topic,
)
from hub.settings import HubSettings
from hub.topic_admin import TopicCreator

__all__ = ["PROCESSOR", "BatchSummary", "JsonBridge", "JsonChecker", "build_parser", "main"]

log = logging.getLogger("connectors.json_bridge")

PROCESSOR: Final = "json-bridge"
DOSSIER_JSON: Final = "dossier.events.json"
FEEDBACK_JSON: Final = "feedback.events.json"

_AGENCY_RE: Final = re.compile(AGENCY_CODE_PATTERN)
_DOSSIER_RE: Final = re.compile(DOSSIER_CODE_PATTERN)
_DOSSIER_TYPES: Final = frozenset(t.value for t in DossierEventType)
_FEEDBACK_TYPES: Final = frozenset(t.value for t in FeedbackEventType)

Event = InboundDossierEvent | InboundFeedbackEvent


class _UndecodableError(Exception):
    """The value is not UTF-8 JSON; the message says where, never what."""


@dataclass
class BatchSummary:
    """What one polled batch came to."""

    records: int = 0
    ok: int = 0
    dead_lettered: int = 0

    def line(self) -> str:
        return f"batch: {self.records} records, {self.ok} ok, {self.dead_lettered} dead-lettered"


@dataclass(frozen=True)
class _Ident:
    """The header fields of a dead letter that could be read and have their code format."""

    agency_code: str | None = None
    event_type: str | None = None
    dossier_code: str | None = None


def _ident(data: object) -> _Ident:
    if not isinstance(data, dict):
        return _Ident()

    def code(name: str, pattern: re.Pattern[str]) -> str | None:
        value = data.get(name)
        if isinstance(value, str) and len(value) <= 64 and pattern.fullmatch(value.strip()):
            return value.strip()
        return None

    event_type = data.get("event_type")
    known = isinstance(event_type, str) and event_type.strip() in _DOSSIER_TYPES | _FEEDBACK_TYPES
    return _Ident(
        agency_code=code("agency_code", _AGENCY_RE),
        event_type=event_type.strip() if known and isinstance(event_type, str) else None,
        dossier_code=code("dossier_code", _DOSSIER_RE),
    )


def _parse(value: bytes) -> object:
    try:
        text = value.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _UndecodableError(
            f"value is not UTF-8 (invalid byte at position {exc.start} of {len(value)})"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg is the parser's complaint ("Expecting value"), never the document itself
        raise _UndecodableError(
            f"value is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


def _kind(data: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(data), "a number")


class JsonChecker:
    """The bridge's per-record rules without Kafka: a consumed record in, its valid event or
    the dead letter saying why there is none out. :class:`JsonBridge` and the SDK connector
    (:mod:`connectors.bridge_connector`) share it."""

    def __init__(
        self,
        dossier_topic: str,
        feedback_topic: str,
        validate: Callable[..., Event | list[FieldProblem]],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.dossier_topic = dossier_topic
        self.feedback_topic = feedback_topic
        self._validate = validate
        self._now = now

    # --- one record ---------------------------------------------------------------------------

    def _letter(
        self,
        record: Any,
        reason: str,
        detail: str,
        exception: tuple[str, str],
        ident: _Ident = _Ident(),
    ) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            detail=detail,
            exception_class=exception[0],
            exception_message=exception[1],
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            processor=PROCESSOR,
            agency_code=ident.agency_code,
            event_type=ident.event_type,
            dossier_code=ident.dossier_code,
            failed_at=self._now(),
            attempt=attempt_of(record.headers),
        )

    def check(self, record: Any) -> Event | DeadLetter:
        """The valid event of a consumed record, or the dead letter saying why there is none."""
        if record.value is None:
            return self._letter(
                record, "empty-value", "record has no value", ("ValueError", "tombstone")
            )
        try:
            data = _parse(record.value)
        except _UndecodableError as exc:
            return self._letter(
                record, "undecodable", str(exc), (_UndecodableError.__name__, str(exc))
            )
        if not isinstance(data, dict):
            # never hand a JSON string to validate(): it would parse it as a second document
            problems = [FieldProblem("", "type", f"expected a JSON object, got {_kind(data)}")]
            return self._invalid(record, problems, _Ident())
        result = self._validate(data, now=self._now())
        if isinstance(result, list):
            return self._invalid(record, result, _ident(data))
        problems = self._routing_problems(record, result)
        if problems:
            return self._invalid(record, problems, _ident(data))
        return result

    def _invalid(self, record: Any, problems: list[FieldProblem], ident: _Ident) -> DeadLetter:
        summary = f"{len(problems)} problem(s) in the event"
        return self._letter(
            record,
            "validation",
            detail_from_problems(problems),
            ("hub.contract.inbound.FieldProblem", summary),
            ident,
        )

    def _routing_problems(self, record: Any, event: Event) -> list[FieldProblem]:
        problems = []
        want_feedback = record.topic == self.feedback_topic
        if isinstance(event, InboundFeedbackEvent) != want_feedback:
            right = self.feedback_topic if not want_feedback else self.dossier_topic
            problems.append(
                FieldProblem(
                    "event_type",
                    "wrong_topic",
                    f"a {event.event_type.value} event belongs on {right}",
                )
            )
        key = record.key.decode("utf-8", errors="replace") if record.key is not None else None
        if key != event.dossier_code:
            problems.append(
                FieldProblem(
                    "key",
                    "key_mismatch",
                    "the Kafka key must be the dossier code"
                    + (" (the record has no key)" if key is None else ""),
                )
            )
        return problems


class JsonBridge(JsonChecker):
    """Consumes the JSON topics, publishes valid events as Avro, dead-letters the rest."""

    def __init__(
        self,
        bootstrap: str,
        registry_url: str,
        *,
        topic_prefix: str = "",
        group_id: str | None = None,
        procedure_effective_from: Callable[[str], date | None] | None = None,
        partitions: int | None = None,
        replication_factor: int = 1,
        max_poll_records: int = 500,
        ack_timeout_s: float = 30.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.dossier_topic = f"{topic_prefix}{DOSSIER_JSON}"
        self.feedback_topic = f"{topic_prefix}{FEEDBACK_JSON}"
        self.group_id = group_id or f"{topic_prefix}json-bridge"
        self.ack_timeout_s = ack_timeout_s
        self._now = now
        if partitions is not None:
            inputs = [self.dossier_topic, self.feedback_topic]
            TopicCreator(bootstrap, partitions, replication_factor).ensure(
                [*inputs, *(dlq_topic(t) for t in inputs)]
            )
        self.publisher = EventPublisher(
            bootstrap,
            registry_url,
            topic_prefix=topic_prefix,
            procedure_effective_from=procedure_effective_from,
            client_id=PROCESSOR,
        )
        try:
            self.consumer = manual_commit_consumer(
                bootstrap, self.group_id, PROCESSOR, max_poll_records=max_poll_records
            )
        except Exception:
            self.publisher.close()
            raise
        self.consumer.subscribe([self.dossier_topic, self.feedback_topic])
        self.totals = BatchSummary()
        JsonChecker.__init__(
            self, self.dossier_topic, self.feedback_topic, self.publisher.validate, now=now
        )

    # --- batches ------------------------------------------------------------------------------

    def process(self, records: Sequence[Any]) -> BatchSummary:
        """Publish or dead-letter every record and wait until Kafka acknowledged all of them.

        Raises (KafkaError, a registry error…) when something other than the record is wrong;
        the caller must then not commit the batch."""
        summary = BatchSummary(records=len(records))
        pending: list[tuple[Any, DeadLetter | None]] = []
        for record in records:
            outcome = self.check(record)
            if isinstance(outcome, DeadLetter):
                pending.append((self._send_dead_letter(record, outcome), outcome))
                continue
            try:
                future = self.publisher.send_async(outcome)
            except EncodeError:
                unencodable = self._letter(
                    record,
                    "unencodable",
                    self.publisher.unencodable_detail(outcome),
                    ("hub.contract.errors.EncodeError", "record does not fit the Avro schema"),
                    _Ident(outcome.agency_code, outcome.event_type.value, outcome.dossier_code),
                )
                pending.append((self._send_dead_letter(record, unencodable), unencodable))
                continue
            pending.append((future, None))
        for future, letter in pending:
            future.get(timeout=self.ack_timeout_s)
            if letter is None:
                summary.ok += 1
            else:
                count_dead_letter(letter)
                summary.dead_lettered += 1
                log.warning(
                    "dead letter: %s from %s[%s]@%s (%s)",
                    letter.reason,
                    letter.source_topic,
                    letter.source_partition,
                    letter.source_offset,
                    letter.detail,
                )
        return summary

    def _send_dead_letter(self, record: Any, letter: DeadLetter) -> Any:
        dead = dead_letter_record(letter, record.key, record.value, list(record.headers or []))
        return self.publisher.producer.send(
            dead.topic, key=dead.key, value=dead.value, headers=dead.headers
        )

    def poll_once(self, timeout_ms: int = 500) -> BatchSummary:
        """Poll one batch, process it, commit it; an empty summary when nothing came."""
        batch = self.consumer.poll(timeout_ms=timeout_ms)
        records = [r for rs in batch.values() for r in rs]
        if not records:
            return BatchSummary()
        summary = self.process(records)
        offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items() if rs}
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced while the batch was processed; its new owner re-reads it and
            # the hub drops the repeated event ids. Nothing is lost.
            log.warning("commit failed after a rebalance, the batch will be re-read: %s", exc)
        self.totals.records += summary.records
        self.totals.ok += summary.ok
        self.totals.dead_lettered += summary.dead_lettered
        first = min(records, key=lambda r: (r.topic, r.partition, r.offset))
        log.info("%s (first %s[%s]@%s)", summary.line(), first.topic, first.partition, first.offset)
        return summary

    def run(self, stop: threading.Event) -> None:
        """Bridge until ``stop`` is set; returns after the batch in hand is committed."""
        while not stop.is_set():
            self.poll_once()

    def run_once(self, timeout_s: float = 60.0) -> BatchSummary:
        """Bridge everything up to the end offsets of now, then return the totals.

        Waits for the group assignment (up to ``timeout_s``); partitions that another member
        of the group holds are that member's to drain."""
        deadline = time.monotonic() + timeout_s
        ends: dict[Partition, int] = {}
        for topic in (self.dossier_topic, self.feedback_topic):
            for p in self.consumer.partitions_for_topic(topic) or ():
                ends[Partition(topic, p)] = 0
        if ends:
            ends = self.consumer.end_offsets(list(ends))
        while True:
            self.poll_once(timeout_ms=200)
            assigned = self.consumer.assignment()
            if assigned and all(self.consumer.position(tp) >= ends.get(tp, 0) for tp in assigned):
                return self.totals
            if not ends or not any(ends.values()):
                return self.totals  # nothing was there to drain
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"did not reach the end of {self.dossier_topic} and {self.feedback_topic} "
                    f"within {timeout_s:g}s"
                )

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.publisher.close()


# --- command line -----------------------------------------------------------------------------


def build_parser(settings: HubSettings | None = None) -> argparse.ArgumentParser:
    s = settings or HubSettings()
    parser = argparse.ArgumentParser(
        prog="python -m connectors.json_bridge",
        description=(
            "Bridge agency systems that write JSON to Kafka: consume <prefix>dossier.events.json "
            "and <prefix>feedback.events.json (JSON events keyed by dossier code), validate each "
            "record, write valid ones as Avro to <prefix>dossier.events / "
            "<prefix>feedback.events and invalid ones, with their original bytes and "
            "hub.errors.* headers, to <json topic>.dlq. Offsets are committed only after "
            "Kafka acknowledged the outputs and dead letters."
        ),
        epilog="Defaults come from KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL and HUB_* "
        "variables (see README).",
    )
    add_kafka_arguments(parser, s)
    parser.add_argument(
        "--group-id",
        help="consumer group id (default <prefix>json-bridge); members of one group share "
        "the partitions",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=s.partitions,
        help="partitions of the JSON topics and their .dlq topics when the bridge creates "
        "them (default %(default)s)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="bridge everything up to the current end of the topics, then exit",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="with --once: seconds to reach the end before failing (default %(default)s)",
    )
    parser.add_argument("-l", "--log-level", default="info", help="log level (default %(default)s)")
    return parser


def _procedure_lookup() -> Callable[[str], date | None]:
    from hub.reference import load_reference

    procedures = load_reference().procedures

    def effective_from(code: str) -> date | None:
        procedure = procedures.get(code)
        return procedure.effective_from if procedure is not None else None

    return effective_from


def main(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        bridge = JsonBridge(
            args.bootstrap_server,
            args.registry_url,
            topic_prefix=args.topic_prefix,
            group_id=args.group_id,
            procedure_effective_from=_procedure_lookup(),
            partitions=args.partitions,
        )
    except (KafkaError, ConsumerError) as exc:
        print(f"json-bridge: cannot reach Kafka at {args.bootstrap_server}: {exc}", file=sys.stderr)
        return 1
    log.info(
        "json bridge: %s, %s -> Avro (group %s)",
        bridge.dossier_topic,
        bridge.feedback_topic,
        bridge.group_id,
    )
    try:
        if args.once:
            totals = bridge.run_once(args.timeout)
            log.info("done: %s", totals.line().removeprefix("batch: "))
            return 0
        stopping = stop or threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stopping.set())
        bridge.run(stopping)
        return 0
    except TimeoutError as exc:
        print(f"json-bridge: {exc}", file=sys.stderr)
        return 1
    except (KafkaError, ConsumerError, ContractError) as exc:
        # not the records' fault: the batch in hand is not committed and is re-read on restart
        print(f"json-bridge: stopped without committing the batch: {exc}", file=sys.stderr)
        return 1
    finally:
        bridge.close()


if __name__ == "__main__":
    sys.exit(main())
