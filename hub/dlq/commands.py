"""``hub dlq list | replay``: show dead letters and put them back on their source topic.

Both read the dead-letter topic from its first record to the end offsets taken when the
command starts, then stop: an empty topic ends at once, records written meanwhile wait for
the next run. No consumer group is used, so reading commits nothing and moves nobody's
offsets.

``replay`` re-publishes the original key and value bytes to the topic named in
``hub.errors.topic``, with the record's own headers, ``hub.replay.of`` =
``<dlq topic>:<partition>:<offset>`` and ``hub.errors.attempt`` one higher. The dead-letter
topic is append-only and keeps the record; replaying twice publishes twice, which the hub
absorbs because it deduplicates by event id.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from hub.consumers import committed_consumer
from hub.dlq.headers import (
    HEADER_ATTEMPT,
    HEADER_REPLAY_OF,
    DeadLetter,
    DeadLetterError,
    DeadLetterHeaderError,
    header_text,
    passthrough_headers,
)
from hub.security.environment import env_client_kwargs

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DlqCommandError",
    "DlqEntry",
    "DlqReader",
    "Selection",
    "add_dlq_parser",
    "replay_headers",
    "run_dlq_command",
]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
_DETAIL_WIDTH = 80


class DlqCommandError(DeadLetterError):
    """A ``hub dlq`` command cannot go on; the message is the one line the user sees."""


@dataclass(frozen=True)
class DlqEntry:
    """One record of a dead-letter topic, with its dead letter when the headers are readable."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    letter: DeadLetter | None
    problem: str | None = None  # why ``letter`` is None

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    def as_json(self) -> dict[str, Any]:
        letter = self.letter
        return {
            "dlq_topic": self.topic,
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            "key": None if self.key is None else header_text(self.key),
            "value_bytes": None if self.value is None else len(self.value),
            "reason": letter.reason if letter else None,
            "detail": letter.detail if letter else self.problem,
            "exception_class": letter.exception_class if letter else None,
            "exception_message": letter.exception_message if letter else None,
            "source_topic": letter.source_topic if letter else None,
            "source_partition": letter.source_partition if letter else None,
            "source_offset": letter.source_offset if letter else None,
            "processor": letter.processor if letter else None,
            "agency": letter.agency_code if letter else None,
            "event_type": letter.event_type if letter else None,
            "dossier": letter.dossier_code if letter else None,
            "failed_at": letter.failed_at.isoformat() if letter else None,
            "attempt": letter.attempt if letter else None,
        }


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on; unset criteria match everything."""

    reason: str | None = None
    agency: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    offsets: frozenset[tuple[int | None, int]] = frozenset()  # (partition or any, offset)

    @property
    def empty(self) -> bool:
        return (
            not self.offsets
            and self.reason is None
            and self.agency is None
            and self.since is None
            and self.until is None
        )

    def matches(self, entry: DlqEntry) -> bool:
        if self.offsets and not (
            (entry.partition, entry.offset) in self.offsets or (None, entry.offset) in self.offsets
        ):
            return False
        if (
            self.reason is None
            and self.agency is None
            and self.since is None
            and self.until is None
        ):
            return True
        letter = entry.letter
        if letter is None:
            return False  # a record we cannot read matches no header criterion
        if self.reason is not None and letter.reason != self.reason:
            return False
        if self.agency is not None and letter.agency_code != self.agency:
            return False
        if self.since is not None and letter.failed_at < self.since:
            return False
        return self.until is None or letter.failed_at < self.until


class DlqReader:
    """Reads whole dead-letter topics with a group-less kafka-python consumer."""

    def __init__(self, bootstrap: str, *, timeout_s: float = 15.0) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        try:
            # committed records only: a dead letter of an aborted transaction never happened
            self._consumer = committed_consumer(
                bootstrap,
                client_id="hub-dlq",
                allow_auto_create_topics=False,
                auto_offset_reset="earliest",
                bootstrap_timeout_ms=int(timeout_s * 1000),
            )
        except KafkaError as exc:
            raise DlqCommandError(
                f"cannot reach Kafka at {bootstrap} within {timeout_s:g}s ({type(exc).__name__})"
            ) from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._consumer.close(autocommit=False)

    def topics(self) -> set[str]:
        return set(self._consumer.topics())

    def require(self, topic: str, what: str = "topic") -> None:
        if topic not in self.topics():
            raise DlqCommandError(f"{what} {topic} does not exist on {self.bootstrap}")

    def read(self, topic: str) -> Iterator[DlqEntry]:
        """Every record of ``topic`` up to the end offsets of now, partition by partition order."""
        self.require(topic)
        consumer = self._consumer
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))
        ]
        begin = consumer.beginning_offsets(partitions)
        end = consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if end[tp] > begin[tp]}
        if not pending:
            return
        consumer.assign(sorted(pending))
        for tp in pending:
            consumer.seek(tp, begin[tp])
        last_progress = time.monotonic()
        while pending:
            batch = consumer.poll(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < end[tp]:
                        yield _entry(record)
            for tp in list(pending):
                if consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self.timeout_s:
                stuck = ", ".join(f"{tp.partition}" for tp in sorted(pending))
                raise DlqCommandError(
                    f"no records from {topic} (partitions {stuck}) for {self.timeout_s:.0f}s "
                    "before reaching their end offsets"
                )
        consumer.unsubscribe()


def _entry(record: Any) -> DlqEntry:
    headers = tuple((name, raw) for name, raw in (record.headers or ()))
    letter: DeadLetter | None
    try:
        letter = DeadLetter.from_headers(headers)
        problem = None
    except DeadLetterHeaderError as exc:
        letter, problem = None, f"not a readable dead letter: {exc}"
    return DlqEntry(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value,
        headers=headers,
        letter=letter,
        problem=problem,
    )


def replay_headers(entry: DlqEntry) -> list[tuple[str, bytes]]:
    """Headers of a replayed record: its own, ``hub.replay.of`` and the next attempt."""
    attempt = entry.letter.attempt + 1 if entry.letter else 2
    return [
        *passthrough_headers(entry.headers),
        (HEADER_REPLAY_OF, f"{entry.topic}:{entry.partition}:{entry.offset}".encode()),
        (HEADER_ATTEMPT, str(attempt).encode()),
    ]


# --- command line ---------------------------------------------------------------------------


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or time: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _offset(text: str) -> tuple[int | None, int]:
    partition, _, offset = text.rpartition(":")
    try:
        return (int(partition) if partition else None), int(offset)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an offset (N or PARTITION:N): {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topic", required=True, help="the dead-letter topic, e.g. dossier.events.dlq"
    )
    parser.add_argument(
        "--bootstrap-server",
        help=f"Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS or {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument("--reason", help="only dead letters with this reason code")
    parser.add_argument("--agency", help="only dead letters of this agency code")
    parser.add_argument(
        "--since",
        type=_when,
        help="only dead letters that failed at or after this ISO time (UTC if naive)",
    )
    parser.add_argument(
        "--until",
        type=_when,
        help="only dead letters that failed before this ISO time (UTC if naive)",
    )
    parser.add_argument(
        "--timeout", type=float, default=15.0, help="seconds to wait for the broker (default 15)"
    )


def add_dlq_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = subparsers.add_parser(
        "dlq",
        help="show dead letters and replay them to their source topic",
        description=(
            "Dead-letter topics (<topic>.dlq) hold records the hub or a connector could not "
            "decode, validate or apply, with their original bytes and hub.errors.* headers."
        ),
    )
    actions = dlq.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="print the dead letters of a topic",
        description="Read a dead-letter topic to its current end and print its records, "
        "oldest failure first.",
    )
    _common(listing)
    listing.add_argument(
        "--limit", type=_positive, help="print at most N dead letters (the oldest)"
    )
    listing.add_argument(
        "--json", action="store_true", help="one JSON object per line instead of a table"
    )

    replay = actions.add_parser(
        "replay",
        help="re-publish dead letters' original bytes to their source topic",
        description="Re-publish the chosen dead letters' original key and value to the topic "
        "in their hub.errors.topic header, marked with hub.replay.of and the next attempt.",
    )
    _common(replay)
    replay.add_argument(
        "--offset",
        dest="offsets",
        type=_offset,
        nargs="+",
        action="extend",
        default=[],
        metavar="N",
        help="dead-letter offsets to replay (N, or PARTITION:N on multi-partition topics)",
    )
    replay.add_argument(
        "--all", action="store_true", help="replay every dead letter when no criterion is given"
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="show what would be replayed, publish nothing"
    )


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        reason=args.reason,
        agency=args.agency,
        since=args.since,
        until=args.until,
        offsets=frozenset(getattr(args, "offsets", ())),
    )


def _bootstrap(args: argparse.Namespace) -> str:
    return str(
        args.bootstrap_server or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP
    )


def _sort_key(entry: DlqEntry) -> tuple[datetime, int, int]:
    when = (
        entry.letter.failed_at
        if entry.letter
        else datetime.fromtimestamp(entry.timestamp_ms / 1000, UTC)
    )
    return when, entry.partition, entry.offset


def _cell(text: str | None, width: int | None = None) -> str:
    value = " ".join((text or "-").split())  # one line per record, whatever the detail holds
    if width is not None and len(value) > width:
        value = value[: width - 1] + "…"
    return value


def _row(entry: DlqEntry) -> list[str]:
    letter = entry.letter
    if letter is None:
        return [entry.position, "-", "?", "-", "-", "-", _cell(entry.problem, _DETAIL_WIDTH)]
    return [
        entry.position,
        letter.failed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        _cell(letter.reason),
        _cell(letter.agency_code),
        _cell(letter.event_type),
        f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}",
        _cell(letter.detail, _DETAIL_WIDTH),
    ]


def _table(entries: Sequence[DlqEntry]) -> str:
    head = ["OFFSET", "FAILED AT", "REASON", "AGENCY", "EVENT TYPE", "SOURCE", "DETAIL"]
    rows = [head, *(_row(e) for e in entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    )


def _list(args: argparse.Namespace, reader: DlqReader) -> int:
    selection = _selection(args)
    read = 0
    chosen: list[DlqEntry] = []
    for entry in reader.read(args.topic):
        read += 1
        if selection.matches(entry):
            chosen.append(entry)
    chosen.sort(key=_sort_key)
    if args.limit is not None:
        chosen = chosen[: args.limit]
    note = sys.stderr if args.json else sys.stdout
    if read == 0:
        print(f"no dead letters in {args.topic}", file=note)
        return 0
    if not chosen:
        print(f"no dead letters in {args.topic} match ({read} read)", file=note)
        return 0
    if args.json:
        for entry in chosen:
            print(json.dumps(entry.as_json(), ensure_ascii=False))
    else:
        print(_table(chosen))
    print(f"{len(chosen)} of {read} dead letters in {args.topic}", file=note)
    return 0


def _replay(args: argparse.Namespace, reader: DlqReader) -> int:
    selection = _selection(args)
    if selection.empty and not args.all:
        raise DlqCommandError(
            "choose dead letters with --offset, --reason, --agency, --since or --until, "
            "or replay every one with --all"
        )
    read = 0
    chosen: list[DlqEntry] = []
    unreadable: list[DlqEntry] = []
    for entry in reader.read(args.topic):
        read += 1
        if selection.matches(entry):
            (chosen if entry.letter else unreadable).append(entry)
    chosen.sort(key=lambda e: (e.partition, e.offset))  # per-key order as in the DLQ
    for entry in unreadable:
        print(
            f"skipped {args.topic}:{entry.position}: {entry.problem} (no source topic)",
            file=sys.stderr,
        )
    if not chosen:
        print(f"nothing to replay from {args.topic} ({read} read)")
        return 1 if unreadable else 0

    targets = sorted({e.letter.source_topic for e in chosen if e.letter})
    available = reader.topics()
    missing = [t for t in targets if t not in available]
    if missing:
        raise DlqCommandError(
            f"source topic {', '.join(missing)} does not exist on {reader.bootstrap}; "
            "nothing replayed"
        )
    if args.dry_run:
        print(_table(chosen))
        print(
            f"dry run: would replay {len(chosen)} of {read} dead letters from {args.topic} to "
            f"{', '.join(targets)}; nothing published"
        )
        return 0

    replayed = _publish(reader.bootstrap, args.timeout, chosen)
    print(
        f"replayed {replayed} of {read} dead letters from {args.topic} to {', '.join(targets)}"
        + (f"; skipped {len(unreadable)} unreadable" if unreadable else "")
    )
    return 1 if unreadable else 0


def _publish(bootstrap: str, timeout_s: float, entries: Sequence[DlqEntry]) -> int:
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            **env_client_kwargs(),
            client_id="hub-dlq-replay",
            acks="all",
            enable_idempotence=True,
            allow_auto_create_topics=False,
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as exc:
        raise DlqCommandError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    total = len(entries)
    done = 0
    try:
        futures = []
        for entry in entries:
            assert entry.letter is not None
            futures.append(
                (
                    entry,
                    producer.send(
                        entry.letter.source_topic,
                        key=entry.key,
                        value=entry.value,
                        headers=replay_headers(entry),
                    ),
                )
            )
        last_report = time.monotonic()
        for entry, future in futures:
            try:
                future.get(timeout=max(timeout_s, 30.0))
            except KafkaError as exc:
                raise DlqCommandError(
                    f"replay of {entry.topic}:{entry.position} not acknowledged after "
                    f"{done}/{total} replayed: {exc}"
                ) from exc
            done += 1
            now = time.monotonic()
            if done == total or done % 100 == 0 or now - last_report >= 1.0:
                print(f"replayed {done}/{total}", file=sys.stderr, flush=True)
                last_report = now
    finally:
        producer.close(timeout=timeout_s)
    return done


def run_dlq_command(args: argparse.Namespace) -> int:
    # kafka-python logs connection failures through the root logger's last resort; the
    # command says what went wrong in one line instead
    logging.getLogger("kafka").addHandler(logging.NullHandler())
    action = args.dlq_action
    bootstrap = _bootstrap(args)
    try:
        with DlqReader(bootstrap, timeout_s=args.timeout) as reader:
            if action == "list":
                return _list(args, reader)
            return _replay(args, reader)
    except DlqCommandError as exc:
        print(f"hub dlq {action}: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        print(f"hub dlq {action}: Kafka error at {bootstrap}: {exc}", file=sys.stderr)
        return 1
