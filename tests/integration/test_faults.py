"""Faults under load, each ending with input set = output set (issue #8).

Events flow from a background publisher while a fault is injected again and again; then the
run is judged by the ledger (``tests/fixtures/ledger.py``) on what the broker acknowledged:

* the outbox: every expected ``portal.outbox`` status record is there, none is unexplained,
  each dossier's records are in the order of its events (lost 0, duplicated 0, out-of-order 0);
* the view: every dossier's final status is the domain's, and its timeline holds each
  acknowledged event exactly once;
* the counts: the agency summary, asked of any worker, counts each dossier once.

Each test prints one figures line (faults injected, events checked, lost, duplicated, ...).
Loopback only. The broker restart runs on a stack of its own: the session broker is shared.
The portal outage and the malformed flood have their own tests
(``test_portal_delivery.py``, ``test_bad_input_corpus.py``); ``kill -9`` of a lone worker
is in ``test_worker_guarantees.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.publisher import EventPublisher
from connectors.scenarios import VN
from hub.dlq.headers import HEADER_DETAIL, HEADER_REASON
from hub.stack.stack import LocalStack
from tests.fixtures.ledger import JUSTICE, Check, Ledger, province_events, validated
from tests.fixtures.stack import Broker, _from_local_stack
from tests.fixtures.topics import outputs_against, read_topic
from tests.fixtures.worker import Worker, audit_cli, start_worker, wait_for

pytestmark = pytest.mark.broker


class Load:
    """Publishes ``events`` at about ``rate`` per second from a thread, one at a time, as a
    connector does: an event counts once Kafka acknowledged it; a send that raised (broker
    away) is retried until acknowledged before the dossier's next event, so each dossier's
    order holds. A retried event may have been written twice: the hub must see it once."""

    def __init__(
        self, broker: Broker, prefix: str, events: list[dict[str, Any]], rate: float
    ) -> None:
        self.broker, self.prefix, self.events, self.rate = broker, prefix, events, rate
        self.ledger = Ledger()
        self.send_errors = 0
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        try:
            publisher = EventPublisher(
                self.broker.bootstrap, self.broker.registry_url, topic_prefix=self.prefix
            )
        except BaseException as exc:  # reported by wait(): the test must not hang on it
            self.failure = exc
            return
        try:
            started = time.monotonic()
            for n, event in enumerate(self.events):
                model = validated(event)
                while not self._stop.is_set():
                    try:
                        publisher.send_valid(model, timeout_s=10)
                    except Exception:
                        self.send_errors += 1
                        time.sleep(0.5)
                        continue
                    self.ledger.acknowledged(event)
                    break
                ahead = started + (n + 1) / self.rate - time.monotonic()
                if ahead > 0:
                    self._stop.wait(ahead)
                if self._stop.is_set():
                    return
        except BaseException as exc:
            self.failure = exc
        finally:
            publisher.close()

    @property
    def acknowledged(self) -> int:
        return self.ledger.events

    def wait_acknowledged(self, count: int, timeout_s: float) -> None:
        wait_for(lambda: self.acknowledged >= count or self.failure is not None, timeout_s,
                 f"{count} acknowledged events")  # fmt: skip
        assert self.failure is None, self.failure

    def wait(self, timeout_s: float) -> None:
        self._thread.join(timeout=timeout_s)
        assert self.failure is None, self.failure
        assert not self._thread.is_alive(), f"publisher still at {self.acknowledged} events"
        assert self.acknowledged == len(self.events)


def judge(
    broker: Broker,
    prefix: str,
    workers: list[Worker],
    ledger: Ledger,
    *,
    faults: int,
    what: str,
    capsys: pytest.CaptureFixture[str],
    timeout_s: float = 120,
) -> Check:
    """Outbox, view and counts against the ledger; prints the figures line, then asserts."""
    _, final = ledger.expected()
    check, _ = outputs_against(
        ledger, broker.bootstrap, broker.registry_url, f"{prefix}portal.outbox", timeout_s
    )
    # Good events never belong in a dead-letter topic: one there was judged on a stale state
    # (or a rating overtook its dossier's events: the two input topics are separate streams).
    letters = dead_letters(broker, f"{prefix}dossier.events.dlq") + dead_letters(
        broker, f"{prefix}feedback.events.dlq"
    )
    view = view_against(workers[0], ledger, final)
    counts = counts_against(workers, final)
    with capsys.disabled():
        print(
            f"\n{what}: {check.figures(faults)} dead-lettered={sum(letters.values())}; "
            f"view: dossiers={len(final)} events lost={view.lost} applied twice={view.twice} "
            f"wrong status={view.wrong_status}; counts (submitted, returned): {counts}; "
            f"uncommitted input records at the end: {input_lag(workers[0])}"
        )
    failed = not (check.ok and not letters and counts.ok)
    if failed or (view.lost, view.twice, view.wrong_status) != (0, 0, 0):
        for worker in workers:
            worker.dump_stacks()  # into each worker's log, kept in the test's tmp dir
    assert check.ok, (check.problems, letters)
    assert not letters
    assert (view.lost, view.twice, view.wrong_status) == (0, 0, 0), view.problems
    assert counts.ok, counts
    # the audit trail after the faults: every chain intact and signed, every entry matching
    # its input record, every consumed record accounted for
    audit = audit_cli(
        broker, "verify", "--topic", f"{prefix}hub.audit", app_id=workers[0].env["HUB_APP_ID"]
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    return check


@dataclass
class ViewCheck:
    lost: int = 0  # acknowledged events missing from their dossier's timeline
    twice: int = 0  # timeline entries of an event already there
    wrong_status: int = 0
    problems: list[str] = field(default_factory=list)


def view_against(asker: Worker, ledger: Ledger, final: dict[str, str]) -> ViewCheck:
    """Every dossier's view (a worker answers for any dossier: faust routes the request to
    the partition's owner) against the ledger, once it matches or 60 s have passed: the
    feedback topic is a stream of its own, so a rating may land after the final status."""
    deadline = time.monotonic() + 60
    pending = dict(final)
    last: dict[str, ViewCheck] = {}
    while pending:
        for code, status in list(pending.items()):
            answer, body = asker.get(f"/dossiers/{code}")
            if answer != 200:
                # no answer at the end counts as a wrong status: the view did not give it
                last[code] = ViewCheck(wrong_status=1, problems=[f"{code}: HTTP {answer}"])
                continue
            timeline = [entry[0] for entry in body["timeline"]]
            lost = ledger.event_ids(code) - set(timeline)
            seen = ViewCheck(
                lost=len(lost),
                twice=len(timeline) - len(set(timeline)),
                wrong_status=int(body["status"] != status),
                problems=[f"{code}: status {body['status']} (want {status}), missing {lost}"],
            )
            if (seen.lost, seen.twice, seen.wrong_status) == (0, 0, 0):
                del pending[code]
                last.pop(code, None)
            else:
                last[code] = seen
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1)
    total = ViewCheck()
    for seen in last.values():
        total.lost += seen.lost
        total.twice += seen.twice
        total.wrong_status += seen.wrong_status
        total.problems.extend(seen.problems)
    return total


@dataclass
class CountsCheck:
    want: tuple[int, int]
    got: list[tuple[int, int]]  # each worker's answer; (-1, -1): it did not answer 200

    @property
    def ok(self) -> bool:
        return all(got == self.want for got in self.got)

    def __str__(self) -> str:
        shown = self.got[0] if len(set(self.got)) == 1 else self.got
        return f"{shown} (want {self.want})"


def counts_against(workers: list[Worker], final: dict[str, str]) -> CountsCheck:
    """The agency summary asked of every worker: each answers for the whole province (its
    own partitions and the others'), so each must count every dossier once; checked once
    they all match or 45 s have passed."""

    def counted() -> list[tuple[int, int]]:
        answers = []
        for worker in workers:
            status, summary = worker.get(f"/agencies/{JUSTICE}/summary")
            if status != 200:
                answers.append((-1, -1))
                continue
            counts = summary["counts"]
            answers.append((counts.get("submitted_total", 0), counts.get("returned", 0)))
        return answers

    want = (len(final), sum(1 for s in final.values() if s == "RESULT_RETURNED"))
    check = CountsCheck(want, counted())
    deadline = time.monotonic() + 45
    while not check.ok and time.monotonic() < deadline:
        time.sleep(1)
        check = CountsCheck(want, counted())
    return check


def input_lag(worker: Worker) -> dict[str, float]:
    """``hub_consumer_lag_messages`` by topic: records the group has not committed. Not
    zero after a failure tells a stuck partition (not consumed) from a lost record."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = worker.get("/metrics")
    if status != 200 or not isinstance(text, str):
        return {}
    return {
        sample.labels["topic"].split(".", 1)[-1]: sample.value  # without the prefix
        for family in text_string_to_metric_families(text)
        if family.name == "hub_consumer_lag_messages"
        for sample in family.samples
    }


def dead_letters(broker: Broker, topic: str) -> Counter[str]:
    """Dead letters on ``topic`` by reason and detail."""
    reasons: Counter[str] = Counter()
    for message in read_topic(broker.bootstrap, topic, settle_s=0):
        headers = {k: v.decode(errors="replace") for k, v in message.headers or []}
        reason = f"{topic}: {headers.get(HEADER_REASON)}: {headers.get(HEADER_DETAIL, '')[:80]}"
        reasons[reason] += 1
    return reasons


# --------------------------------------------------------------------------- broker restart
@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A local stack of this module's own, so its broker can be restarted without touching
    the session's. Needs the local stack (Java and Maven), whatever the session broker is."""
    yield from _from_local_stack(tmp_path_factory.mktemp("own-stack"))


def restart_broker(stack: LocalStack, *, kill: bool, down_s: float) -> None:
    """Stop the broker (``kill -9`` or SIGTERM), leave it down ``down_s`` seconds, start it
    again on the same state directory and ports. The registry stays up."""
    pid = stack.kafka.process.pid()
    assert pid is not None, "the test's broker is not running"
    if kill:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not stack.kafka.process.alive(), 30, "the broker to die")
    else:
        stack.kafka.process.stop(timeout_s=60)
    time.sleep(down_s)
    stack.kafka.start()
    stack.kafka.wait_ready(timeout_s=120)


@pytest.mark.timeout(420)  # includes starting a stack of its own
def test_broker_restarts_under_load_lose_nothing_and_apply_nothing_twice(
    own_broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = own_broker.local
    assert stack is not None
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"br{tag}.", f"hub-broker-restart-{tag}"
    events = province_events(100, datetime.now(VN) - timedelta(hours=8))
    worker = start_worker(own_broker, tmp_path / "w", prefix=prefix, app_id=app_id)
    faults = 0
    try:
        with Load(own_broker, prefix, events, rate=40) as load:
            # one clean stop and one kill -9, each while events are in flight
            for share, kill in ((0.25, False), (0.55, True)):
                load.wait_acknowledged(int(len(events) * share), 120)
                restart_broker(stack, kill=kill, down_s=5)
                faults += 1
            load.wait(180)
        assert worker.process.poll() is None, f"the worker died:\n{worker.log_tail()}"
        judge(
            own_broker, prefix, [worker], load.ledger, faults=faults,
            what=f"broker restart x{faults} ({load.send_errors} sends retried)", capsys=capsys,
        )  # fmt: skip
    finally:
        worker.stop(kill=True)


# --------------------------------------------------------------------------- rebalance storm
@pytest.mark.timeout(420)  # may include starting the session's broker
def test_a_rebalance_storm_under_load_loses_nothing_and_applies_nothing_twice(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"rb{tag}.", f"hub-storm-{tag}"
    events = province_events(100, datetime.now(VN) - timedelta(hours=8))
    started = 0
    free_dirs: list[Path] = []  # data dirs of stopped members: a restart reuses its disk
    dir_of: dict[int, Path] = {}  # member pid -> its data dir

    def new_worker(*, wait_ready: bool = False) -> Worker:
        nonlocal started
        started += 1
        workdir = free_dirs.pop(0) if free_dirs else tmp_path / f"w{started}"
        worker = start_worker(
            broker, workdir, prefix=prefix, app_id=app_id, wait_ready=wait_ready,
            extra={"HUB_SESSION_TIMEOUT_S": "6"},
        )  # fmt: skip
        dir_of[worker.process.pid] = workdir
        return worker

    def stop(worker: Worker, *, kill: bool) -> None:
        worker.stop(kill=kill)
        free_dirs.append(dir_of[worker.process.pid])

    live = [new_worker(wait_ready=True)]
    faults = 0
    try:
        with Load(broker, prefix, events, rate=20) as load:
            # Members join, leave cleanly and die every few seconds while events flow, often
            # before the previous rebalance settled; members 1, 2, 3, 2, 1, 2, 1, 2, 3, 2.
            # A join after a stop reuses the stopped member's data dir, as a restart would.
            plan = ["join", "join", "term", "kill", "join", "kill", "join", "join", "term"]
            for action in plan:
                load.wait_acknowledged(min(len(events), load.acknowledged + 70), 120)
                if action == "join":
                    live.append(new_worker())
                else:
                    stop(live.pop(0), kill=action == "kill")
                faults += 1
            load.wait(240)
        assert len(live) == 2
        for worker in live:
            wait_for(lambda w=worker: w.get("/ready")[0] == 200, 180, "the survivors ready")
        judge(
            broker, prefix, live, load.ledger, faults=faults,
            what=f"rebalance storm x{faults} ({started} members started)", capsys=capsys,
        )  # fmt: skip
    finally:
        for worker in live:
            worker.stop(kill=True)


# --------------------------------------------------------------------------- zombie worker
@pytest.mark.timeout(420)
def test_a_frozen_worker_that_wakes_after_the_takeover_writes_nothing_visible(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker frozen (SIGSTOP) past its session timeout while it has a transaction open,
    another taking its partitions, then the first resumed (SIGCONT): a zombie. Whatever it
    wrote before or after waking must not reach a read-committed reader (KIP-447: its offsets
    carry a stale group generation, so its transaction cannot commit), and nothing is lost.
    Its checkpoints are long (3 s), so a transaction with outputs is open when it freezes."""
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"zb{tag}.", f"hub-zombie-{tag}"
    events = province_events(100, datetime.now(VN) - timedelta(hours=8))
    session = {"HUB_SESSION_TIMEOUT_S": "6"}
    zombie = start_worker(
        broker, tmp_path / "zombie", prefix=prefix, app_id=app_id,
        extra={**session, "HUB_COMMIT_INTERVAL_MS": "3000"},
    )  # fmt: skip
    workers = [zombie]
    try:
        with Load(broker, prefix, events, rate=25) as load:
            load.wait_acknowledged(len(events) // 4, 120)
            os.kill(zombie.process.pid, signal.SIGSTOP)
            heir = start_worker(
                broker, tmp_path / "heir", prefix=prefix, app_id=app_id, extra=session
            )  # ready: it holds every partition, the zombie having been expelled
            workers.append(heir)
            load.wait_acknowledged(min(len(events), load.acknowledged + 150), 120)
            os.kill(zombie.process.pid, signal.SIGCONT)
            load.wait(240)
        for worker in workers:
            assert worker.process.poll() is None, f"a worker died:\n{worker.log_tail()}"
            wait_for(lambda w=worker: w.get("/ready")[0] == 200, 180, "both workers ready")
        judge(
            broker, prefix, workers, load.ledger, faults=1,
            what="zombie (SIGSTOP past the session, SIGCONT after the takeover)", capsys=capsys,
        )  # fmt: skip
        log = zombie.log_path.read_text(errors="replace")
        assert "aborted" in log or "lost" in log, "the zombie's transaction was not fenced"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(zombie.process.pid, signal.SIGCONT)
        for worker in workers:
            worker.stop(kill=True)


def test_a_frozen_named_worker_replaced_under_its_name_wakes_and_stops_writing_nothing(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The zombie of a named worker (HUB_WORKER_NAME): frozen (SIGSTOP) with a transaction
    open, and replaced at once by a worker started under the same name on a new disk, as an
    orchestrator reschedules a pod whose node stopped answering; nobody waits for its session.
    The new one's producer fences the old one's (same transactional id) and its consumer
    takes the old one's place in the group (same group.instance.id). Resumed (SIGCONT), the
    zombie writes nothing a read-committed reader sees and stops, saying why; nothing is lost."""
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"zn{tag}.", f"hub-named-zombie-{tag}"
    events = province_events(100, datetime.now(VN) - timedelta(hours=8))
    named = {"HUB_WORKER_NAME": "pod-0", "HUB_SESSION_TIMEOUT_S": "30"}
    zombie = start_worker(
        broker, tmp_path / "zombie", prefix=prefix, app_id=app_id,
        extra={**named, "HUB_COMMIT_INTERVAL_MS": "3000"},
    )  # fmt: skip
    heir: Worker | None = None
    try:
        with Load(broker, prefix, events, rate=25) as load:
            load.wait_acknowledged(len(events) // 4, 120)
            os.kill(zombie.process.pid, signal.SIGSTOP)
            heir = start_worker(broker, tmp_path / "heir", prefix=prefix, app_id=app_id,
                                extra=named)  # fmt: skip
            load.wait_acknowledged(min(len(events), load.acknowledged + 150), 120)
            os.kill(zombie.process.pid, signal.SIGCONT)
            try:
                zombie.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the woken zombie kept running:\n{zombie.log_tail()}")
            load.wait(240)
        assert zombie.process.returncode != 0
        assert "HUB_WORKER_NAME=pod-0" in zombie.log_path.read_text(errors="replace")
        assert heir.process.poll() is None, f"the heir died:\n{heir.log_tail()}"
        judge(
            broker, prefix, [heir], load.ledger, faults=1,
            what="named zombie (SIGSTOP, replaced under its name at once, SIGCONT)",
            capsys=capsys,
        )  # fmt: skip
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(zombie.process.pid, signal.SIGCONT)
        zombie.stop(kill=True)
        if heir is not None:
            heir.stop(kill=True)
