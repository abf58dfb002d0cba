"""A simulated province: agency systems sending dossier events to the hub.

Realistic traffic from the reference data, deterministic under a seed:

* dossiers are submitted and handled on working days in working hours (07:30-11:30,
  13:30-17:00 Vinh time); online applicants also submit in the evening or over a weekend,
  and the desk receives those the next working day. Every timestamp lies in a recent window
  ending now (the hub refuses timestamps more than 5 minutes ahead of its clock);
* commune-level procedures make most of the volume, at active commune-level agencies
  (busier and quieter communes); department procedures go to their responsible agency;
* about 70% are submitted online (DOMAIN.md), ~10% go through a supplement round, ~5% are
  transferred to another agency (liên thông), ~3% finish after their appointment date, ~8%
  are still open, and about half of those have an old submission date so their appointment
  date has passed: they show in the hub's overdue alerts and ``/overdue``;
* ~40% of finished dossiers are rated (mostly 4-5), and the odd applicant complains (late
  dossiers more often).

Each dossier's events come from :func:`connectors.scenarios.dossier_life`; dossiers are
interleaved so that many are in flight at once while each dossier's events stay in order.
Feedback (ratings, complaints, on ``feedback.events``) is held back until the dossier's
events were acknowledged by Kafka and some more traffic passed, so the hub sees the dossier
before its feedback.

Where the events go (``--via``): straight to Kafka as Avro (``kafka``, the default: the
simulator plays the connectors too), or as JSON to the HTTP ingress with each agency's own
credentials (``ingress``: :mod:`connectors.simulator_ingress`), so the province's traffic
takes the path real agency systems take.

Run ``python -m connectors.simulator --help``; or call :func:`simulate` from Python.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

from connectors.scenarios import VN, dossier_code, dossier_life
from hub.contract.event_types import FEEDBACK_EVENT_TYPES
from hub.contract.inbound import (
    FieldProblem,
    InboundDossierEvent,
    InboundFeedbackEvent,
    validate_dossier_event,
    validate_feedback_event,
)
from hub.reference import Agency, Procedure, ReferenceData, load_reference

__all__ = [
    "DossierPlan",
    "Interleaver",
    "MixConfig",
    "ProvinceModel",
    "Publisher",
    "SimulationReport",
    "TokenBucket",
    "ValidatingPrinter",
    "main",
    "procedure_lookup",
    "simulate",
]

SOURCE_SYSTEM = "province-simulator"

#: Working minutes of a day: 07:30-11:30 then 13:30-17:00 (450 minutes).
_MORNING_START = 7 * 60 + 30
_MORNING_MINUTES = 240
_AFTERNOON_START = 13 * 60 + 30
_WORK_MINUTES = 450

#: Procedures that make a larger share of a commune's or department's volume (relative
#: weight; others weigh 1). Certification and civil status dominate one-stop desks.
_POPULAR = {
    "2.000815": 10.0,  # chứng thực bản sao
    "2.000884": 5.0,  # chứng thực chữ ký
    "1.001193": 6.0,  # đăng ký khai sinh
    "1.004194": 3.0,  # đăng ký tạm trú
    "1.004222": 2.0,  # đăng ký thường trú
    "1.000894": 2.0,  # đăng ký kết hôn
    "1.000656": 1.5,  # đăng ký khai tử
    "1.001612": 2.0,  # thành lập hộ kinh doanh
    "1.012762": 2.0,  # đăng ký đất đai (commune)
    "2.000488": 4.0,  # phiếu lý lịch tư pháp
    "1.012790": 4.0,  # biến động đất đai
    "2.001610": 1.5,
    "2.002036": 2.0,
}

_FAMILY = ["Nguyễn", "Trần", "Lê", "Hồ", "Phan", "Võ", "Hoàng", "Đặng", "Bùi", "Đinh", "Thái"]
_MIDDLE = ["Văn", "Thị", "Đức", "Minh", "Hữu", "Thanh", "Xuân", "Ngọc", "Quang", "Hồng"]
_GIVEN = ["An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hải", "Hoa", "Hùng", "Lan", "Linh",
          "Long", "Mai", "Nam", "Nga", "Phương", "Quân", "Sơn", "Tâm", "Thảo", "Trung", "Tú",
          "Vinh", "Yến"]  # fmt: skip
_COMPLAINTS = ["Chậm trả kết quả", "Thái độ phục vụ", "Yêu cầu bổ sung nhiều lần",
               "Không nhận được thông báo"]  # fmt: skip


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class MixConfig:
    """The traffic mix. Shares are probabilities per dossier (rating: per finished dossier)."""

    online_share: float = 0.70
    postal_share: float = 0.03
    commune_share: float = 0.80
    supplement_share: float = 0.10
    transfer_share: float = 0.05
    unfinished_share: float = 0.08
    #: of the unfinished, the share with an old submission date (appointment date passed)
    overdue_share: float = 0.5
    #: of the finished, the share processed after the appointment date
    late_share: float = 0.03
    rating_share: float = 0.40
    complaint_share: float = 0.01
    #: complaint probability for overdue or late dossiers
    complaint_share_late: float = 0.25
    #: online submissions made outside working hours (received next working day)
    off_hours_share: float = 0.25
    #: submissions fall in this many calendar days before today (older for the overdue)
    window_days: int = 60
    #: dossiers in flight at once
    concurrency: int = 64
    #: events sent between a dossier's last event and its feedback
    feedback_gap: int = 200

    def __post_init__(self) -> None:
        for name in ("online_share", "postal_share", "commune_share", "supplement_share",
                     "transfer_share", "unfinished_share", "overdue_share", "late_share",
                     "rating_share", "complaint_share", "complaint_share_late",
                     "off_hours_share"):  # fmt: skip
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.online_share + self.postal_share > 1.0:
            raise ValueError("online_share + postal_share must not exceed 1")
        if self.window_days < 1 or self.concurrency < 1 or self.feedback_gap < 0:
            raise ValueError("window_days and concurrency must be >= 1, feedback_gap >= 0")


@dataclass(frozen=True)
class DossierPlan:
    """One simulated dossier: what was decided about it and its events, in order."""

    code: str
    agency: str
    procedure_code: str
    channel: int  # 1 in person, 2 online, 3 postal
    submitted_at: datetime
    appointment_date: date
    supplement: bool
    transfer_to: str | None
    finished: bool
    late: bool
    overdue: bool  # open and past its (supplement-shifted) appointment date today
    rating: int | None
    complaint: bool
    events: tuple[dict[str, Any], ...]

    @property
    def holder(self) -> str:
        """The agency holding the dossier after its last event."""
        return self.transfer_to or self.agency


def procedure_lookup(reference: ReferenceData) -> Callable[[str], date | None]:
    """``procedure_effective_from`` for validation: a code's effective date, None if unknown."""

    def lookup(code: str) -> date | None:
        procedure = reference.procedures.get(code)
        return procedure.effective_from if procedure is not None else None

    return lookup


# --------------------------------------------------------------------------- the province
class ProvinceModel:
    """Draws dossiers from the reference data; the same seed and ``now`` give the same ones."""

    def __init__(
        self,
        reference: ReferenceData,
        seed: int,
        *,
        now: datetime | None = None,
        mix: MixConfig | None = None,
        number_base: int | None = None,
    ) -> None:
        self.reference = reference
        self.mix = mix or MixConfig()
        self.seed = seed
        self.rng = random.Random(f"province:{seed}")
        self.now = (now or datetime.now(UTC)).astimezone(VN)
        self.today = self.now.date()
        #: dossier numbers start here, so runs with other seeds do not reuse codes
        self.number_base = (seed % 1000) * 10_000 if number_base is None else number_base
        self._numbers: Counter[tuple[str, date]] = Counter()
        calendar = reference.calendar
        first_year = min(calendar.years)
        earliest = max(
            date(first_year, 1, 1), self.today - timedelta(days=self.mix.window_days + 120)
        )
        self.days = [
            earliest + timedelta(days=i)
            for i in range((self.today - earliest).days)
            if calendar.is_working_day(earliest + timedelta(days=i))
        ]
        if len(self.days) < 30:
            raise ValueError(
                f"the working calendar covers too few days before {self.today} "
                f"(years {calendar.years}): add the calendar of the previous year"
            )
        self.last = len(self.days) - 1  # the last working day before today
        window_start = self.today - timedelta(days=self.mix.window_days)
        self.window_first = next(
            (i for i, d in enumerate(self.days) if d >= window_start), self.last
        )
        on = (self.days[0], self.today)
        self.communes = [
            a
            for a in reference.agencies.active(self.today)
            if a.level == "commune" and all(a.is_active_on(d) for d in on)
        ]
        self.commune_weights = _cumulative(self.rng.lognormvariate(0.0, 0.6) for _ in self.communes)
        usable = [
            p for p in sorted(reference.procedures.values(), key=lambda p: p.code)
            if p.effective_from <= self.days[0]
        ]  # fmt: skip
        self.commune_procedures = [p for p in usable if p.level == "commune"]
        self.department_procedures: list[tuple[Procedure, Agency]] = []
        for p in usable:
            if p.level != "commune" and p.responsible_agency is not None:
                agency = self._resolve(p.responsible_agency)
                if agency is not None:
                    self.department_procedures.append((p, agency))
        if not self.communes and not self.department_procedures:
            raise ValueError(f"no agency in the reference data is active on {self.today}")
        self.commune_proc_weights = _cumulative(
            _POPULAR.get(p.code, 1.0) for p in self.commune_procedures
        )
        self.department_proc_weights = _cumulative(
            _POPULAR.get(p.code, 1.0) for p, _ in self.department_procedures
        )
        self.departments = sorted({a.code for _, a in self.department_procedures})

    def _resolve(self, code: str) -> Agency | None:
        try:
            first = self.reference.agencies.resolve(code, self.days[0])
            last = self.reference.agencies.resolve(code, self.today)
        except KeyError:
            return None
        return last if first.code == last.code else None

    # --- one dossier ------------------------------------------------------------------------
    def next_plan(self) -> DossierPlan:
        rng, mix = self.rng, self.mix
        commune = self.communes and (
            not self.department_procedures or rng.random() < mix.commune_share
        )
        if commune:
            procedure = rng.choices(self.commune_procedures, cum_weights=self.commune_proc_weights)[
                0
            ]
            agency = rng.choices(self.communes, cum_weights=self.commune_weights)[0].code
        else:
            procedure, dept = rng.choices(
                self.department_procedures, cum_weights=self.department_proc_weights
            )[0]
            agency = dept.code
        r = rng.random()
        channel = 2 if r < mix.online_share else 3 if r < mix.online_share + mix.postal_share else 1
        finished = rng.random() >= mix.unfinished_share
        overdue = not finished and rng.random() < mix.overdue_share
        late = finished and rng.random() < mix.late_share
        supplement = rng.random() < mix.supplement_share
        transfer_to: str | None = None
        if rng.random() < mix.transfer_share:
            targets = [d for d in self.departments if d != agency]
            if targets:
                transfer_to = rng.choice(targets)
        rating: int | None = None
        if finished and rng.random() < mix.rating_share:
            rating = rng.choices([5, 4, 3, 2, 1], weights=[62, 26, 7, 3, 2])[0]
        complaint = rng.random() < (mix.complaint_share_late if late or overdue
                                    else mix.complaint_share)  # fmt: skip
        off_hours = channel == 2 and rng.random() < mix.off_hours_share

        steps = [(s.name, s.unit, self._person()) for s in procedure.steps]
        shares = [s.share for s in procedure.steps]
        wd = procedure.working_days
        pause = rng.randint(1, 3) if supplement else 0
        # r0: receipt day index; span: working days from receipt to the last step's end.
        if finished:
            span = wd + rng.randint(1, 3) if late else min(wd, round(wd * rng.betavariate(2, 2)))
            returned_after = 0 if channel == 2 else rng.randint(0, 2)
            rated_after = rng.randint(0, 1)
            complaint_after = rng.randint(1, 5)
            length = (1 if off_hours else 0) + pause + span + returned_after + rated_after
            length += complaint_after if complaint else 0
            newest = max(0, self.last - length)
            oldest = min(self.window_first, newest)
            s0 = rng.randint(oldest, newest)
            r0 = s0 + (1 if off_hours else 0)
        else:
            returned_after = rated_after = 0
            complaint_after = rng.randint(0, 3)
            if overdue:
                r0 = max(0, self.last - wd - pause - rng.randint(0, 10))
                span = rng.randint(0, wd)
            else:
                r0 = max(0, self.last - rng.randint(0, max(0, wd - 1 - pause)))
                span = max(0, self.last - r0 - pause)
            if len(steps) > 1:
                steps = steps[: rng.randint(1, len(steps) - 1)]
                shares = shares[: len(steps)]
            s0 = max(0, r0 - 1) if off_hours else r0
            off_hours = off_hours and s0 < r0
        receipt_day = self.days[r0]
        appointment = self.reference.calendar.add_working_days(receipt_day, wd)

        submitted_day = self.days[s0]
        self._numbers[(agency, submitted_day)] += 1
        code = dossier_code(
            agency,
            datetime.combine(submitted_day, datetime.min.time()),
            self.number_base + self._numbers[(agency, submitted_day)],
        )
        options: dict[str, Any] = {
            "channel": channel,
            "applicant": self._person(),
            "transfer_to": transfer_to,
            "supplement": supplement,
            "finish": finished,
            "rating": rating,
            "steps": steps,
            "appointment_date": appointment,
            "complaint": rng.choice(_COMPLAINTS) if complaint else None,
            "electronic_result": channel == 2,
            "source_system": SOURCE_SYSTEM,
        }
        shape = dossier_life(code, agency, procedure.code, self.now, **options)
        kinds = [e["event_type"] for e in shape]
        days = self._days_of(
            kinds, r0=r0, s0=s0, pause=pause, span=span, shares=shares,
            returned_after=returned_after, rated_after=rated_after,
            complaint_after=complaint_after,
        )  # fmt: skip
        times = self._times(days, off_hours_submission=off_hours)
        ticks = iter(times)
        events = dossier_life(
            code,
            agency,
            procedure.code,
            times[0],
            clock=lambda _kind, _previous: next(ticks),
            **options,
        )
        if not finished:  # the hub's deadline is the appointment shifted by the pause
            overdue = self.reference.calendar.add_working_days(appointment, pause) < self.today
        return DossierPlan(
            code=code,
            agency=agency,
            procedure_code=procedure.code,
            channel=channel,
            submitted_at=times[0],
            appointment_date=appointment,
            supplement=supplement,
            transfer_to=transfer_to,
            finished=finished,
            late=late,
            overdue=overdue,
            rating=rating,
            complaint=complaint,
            events=tuple(events),
        )

    def plans(self, count: int | None = None) -> Iterator[DossierPlan]:
        """``count`` dossiers, or an endless supply."""
        made = 0
        while count is None or made < count:
            yield self.next_plan()
            made += 1

    # --- timing -----------------------------------------------------------------------------
    def _days_of(
        self,
        kinds: Sequence[str],
        *,
        r0: int,
        s0: int,
        pause: int,
        span: int,
        shares: Sequence[float],
        returned_after: int,
        rated_after: int,
        complaint_after: int,
    ) -> list[int]:
        """The working-day index of every event, never decreasing, never after ``last``."""
        total = sum(shares) or 1.0
        ends: list[int] = []
        cumulative = 0.0
        for share in shares:
            cumulative += share
            ends.append(r0 + pause + round(span * cumulative / total))
        out: list[int] = []
        step = 0
        for kind in kinds:
            if kind == "DossierSubmitted":
                day = s0
            elif kind in ("DossierReceived", "SupplementRequested"):
                day = r0
            elif kind == "DossierSupplemented":
                day = r0 + pause
            elif kind == "StepStarted":
                step += 1
                day = r0 if step == 1 else ends[step - 2]
            elif kind in ("StepCompleted", "DossierTransferred"):
                day = ends[step - 1]
            elif kind == "DossierProcessed":
                day = r0 + pause + span
            elif kind == "ResultReturned":
                day = out[-1] + returned_after
            elif kind == "ServiceRated":
                day = out[-1] + rated_after
            else:  # ComplaintFiled
                day = out[-1] + complaint_after
            out.append(min(self.last, max(day, out[-1] if out else day)))
        return out

    def _times(self, days: Sequence[int], *, off_hours_submission: bool) -> list[datetime]:
        """Strictly increasing times in working hours on the given days."""
        out: list[datetime] = []
        i = 0
        if off_hours_submission:
            # evening, night or weekend between one working day and the next
            evening = datetime.combine(self.days[days[0]], datetime.min.time(), VN).replace(
                hour=17, minute=30
            )
            morning = datetime.combine(self.days[days[0] + 1], datetime.min.time(), VN).replace(
                hour=7
            )
            seconds = int((morning - evening).total_seconds())
            out.append(evening + timedelta(seconds=self.rng.randrange(seconds)))
            i = 1
        while i < len(days):
            j = i
            while j < len(days) and days[j] == days[i]:
                j += 1
            day = self.days[days[i]]
            for minute in sorted(self.rng.sample(range(_WORK_MINUTES), j - i)):
                clock = (
                    _MORNING_START + minute
                    if minute < _MORNING_MINUTES
                    else (_AFTERNOON_START + minute - _MORNING_MINUTES)
                )
                out.append(
                    datetime.combine(day, datetime.min.time(), VN)
                    + timedelta(minutes=clock, seconds=self.rng.randrange(60))
                )
            i = j
        return out

    def _person(self) -> str:
        rng = self.rng
        return f"{rng.choice(_FAMILY)} {rng.choice(_MIDDLE)} {rng.choice(_GIVEN)}"


def _cumulative(weights: Iterable[float]) -> list[float]:
    out: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


# --------------------------------------------------------------------------- interleaving
class Interleaver:
    """Many dossiers in flight: each step picks one of ``concurrency`` open dossiers at random
    and yields its next event, so each dossier's events stay in order. A dossier's feedback
    events wait until ``feedback_gap`` more events were yielded.

    ``stop_admitting()`` starts no new dossier; the ones in flight are still finished.
    """

    def __init__(
        self,
        plans: Iterator[DossierPlan],
        *,
        seed: int,
        concurrency: int = 64,
        feedback_gap: int = 200,
    ) -> None:
        self._plans = plans
        self._rng = random.Random(f"interleave:{seed}")
        self.concurrency = concurrency
        self.feedback_gap = feedback_gap
        self.admitting = True
        self.admitted: list[DossierPlan] = []

    def stop_admitting(self) -> None:
        self.admitting = False

    def __iter__(self) -> Iterator[tuple[DossierPlan, dict[str, Any]]]:
        active: list[list[Any]] = []  # [plan, next position]
        deferred: deque[tuple[int, DossierPlan, dict[str, Any]]] = deque()
        emitted = 0
        while True:
            while self.admitting and len(active) < self.concurrency:
                plan = next(self._plans, None)
                if plan is None:
                    self.admitting = False
                    break
                self.admitted.append(plan)
                active.append([plan, 0])
            while deferred and (deferred[0][0] <= emitted or not active):
                _, plan, event = deferred.popleft()
                emitted += 1
                yield plan, event
            if not active:
                if not deferred:
                    return
                continue
            slot = self._rng.randrange(len(active))
            plan, position = active[slot]
            event = plan.events[position]
            if event["event_type"] in FEEDBACK_EVENT_TYPES:
                for later in plan.events[position:]:
                    deferred.append((emitted + self.feedback_gap, plan, later))
                position = len(plan.events)
            else:
                emitted += 1
                yield plan, event
                position += 1
            if position >= len(plan.events):
                active[slot] = active[-1]
                active.pop()
            else:
                active[slot][1] = position


# --------------------------------------------------------------------------- pacing, output
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take()`` sleeps until one is
    there."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate) - 1.0
        self.stamp = now
        if self.tokens < 0:
            # the debt is paid by the sleep; oversleeping is refilled on the next take()
            time.sleep(-self.tokens / self.rate)


class Publisher(Protocol):
    """What the simulator needs of :class:`connectors.publisher.EventPublisher`.

    A publisher that sends each dossier's events one after the other, each only once the
    previous one was acknowledged (:class:`connectors.simulator_ingress.IngressPublisher`),
    says so with a true ``acknowledges_in_order`` attribute: the simulator then flushes only
    at the end, since the order a flush would enforce is already kept, and a flush would only
    stall the other dossiers' sends.
    """

    def validate(
        self, data: Any, *, now: datetime | None = None
    ) -> InboundDossierEvent | InboundFeedbackEvent | list[FieldProblem]: ...

    def send_async(self, event: InboundDossierEvent | InboundFeedbackEvent) -> Any: ...

    def flush(self, timeout_s: float = 30.0) -> None: ...


class ValidatingPrinter:
    """A publisher without Kafka: validates like EventPublisher and prints JSON lines."""

    def __init__(self, reference: ReferenceData, out: IO[str] | None = None) -> None:
        self._lookup = procedure_lookup(reference)
        self._out = out

    def validate(
        self, data: Any, *, now: datetime | None = None
    ) -> InboundDossierEvent | InboundFeedbackEvent | list[FieldProblem]:
        if isinstance(data, dict) and data.get("event_type") in FEEDBACK_EVENT_TYPES:
            return validate_feedback_event(data, now=now)
        return validate_dossier_event(data, now=now, procedure_effective_from=self._lookup)

    def send_async(self, event: InboundDossierEvent | InboundFeedbackEvent) -> Any:
        if self._out is not None:
            self._out.write(event.model_dump_json() + "\n")
        return None

    def flush(self, timeout_s: float = 30.0) -> None:
        if self._out is not None:
            self._out.flush()


# --------------------------------------------------------------------------- the report
@dataclass
class SimulationReport:
    seed: int
    dossiers: int = 0
    events: int = 0  # events handed to Kafka (validated, sent)
    by_event_type: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    by_agency: Counter[str] = field(default_factory=Counter)  # dossiers by receiving agency
    supplements: int = 0
    transfers: int = 0
    late: int = 0
    unfinished: int = 0
    overdue_expected: int = 0  # open and past the appointment date today
    overdue_by_agency: Counter[str] = field(default_factory=Counter)  # by current holder
    ratings: int = 0
    complaints: int = 0
    problems: int = 0  # events that failed validation (not sent)
    problem_samples: list[str] = field(default_factory=list)
    send_errors: int = 0  # sends not acknowledged (Kafka, or refused by the ingress)
    send_error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    examples: dict[str, str] = field(default_factory=dict)  # kind -> a dossier code

    @property
    def rate(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def add(self, plan: DossierPlan) -> None:
        self.dossiers += 1
        self.by_channel[{1: "in person", 2: "online", 3: "postal"}[plan.channel]] += 1
        self.by_agency[plan.agency] += 1
        self.supplements += plan.supplement
        self.transfers += plan.transfer_to is not None
        self.late += plan.late
        self.unfinished += not plan.finished
        self.ratings += plan.rating is not None
        self.complaints += plan.complaint
        if plan.overdue:
            self.overdue_expected += 1
            self.overdue_by_agency[plan.holder] += 1
        for kind, wanted in (
            ("transferred", plan.transfer_to is not None and plan.finished),
            ("supplemented", plan.supplement and plan.finished),
            ("overdue", plan.overdue),
            ("rated", plan.rating is not None),
            ("finished", plan.finished),
        ):
            if wanted:
                self.examples.setdefault(kind, plan.code)

    def summary(self) -> str:
        channels = ", ".join(
            f"{name} {count / self.dossiers:.0%}" for name, count in self.by_channel.most_common()
        ) if self.dossiers else "-"  # fmt: skip
        types = ", ".join(f"{k} {v}" for k, v in sorted(self.by_event_type.items()))
        return "\n".join(
            [
                f"simulated {self.dossiers} dossiers, {self.events} events in "
                f"{self.elapsed_s:.1f}s ({self.rate:.0f} events/s), seed {self.seed}",
                f"  channels: {channels}",
                f"  supplement rounds {self.supplements}, transfers {self.transfers}, "
                f"finished late {self.late}, unfinished {self.unfinished} "
                f"(overdue today {self.overdue_expected}), ratings {self.ratings}, "
                f"complaints {self.complaints}",
                f"  events: {types}",
                f"  validation problems {self.problems}, send errors {self.send_errors}",
            ]
        )


# --------------------------------------------------------------------------- simulate
def simulate(
    publisher: Publisher,
    seed: int,
    dossiers: int | None,
    rate: float,
    *,
    duration: float | None = None,
    now: datetime | None = None,
    reference: ReferenceData | None = None,
    mix: MixConfig | None = None,
    progress: Callable[[str], None] | None = None,
    progress_every_s: float = 3.0,
    flush_every_s: float = 0.5,
    stop: threading.Event | None = None,
) -> SimulationReport:
    """Send ``dossiers`` dossiers (None: no limit) at ``rate`` events/s through ``publisher``.

    With ``duration`` no new dossier starts after that many seconds; dossiers in flight are
    finished, so none is left half-sent. Setting ``stop`` does the same at any time. Returns
    once every event was flushed to Kafka.
    """
    if dossiers is None and duration is None:
        raise ValueError("give dossiers, duration or both")
    mix = mix or MixConfig()
    model = ProvinceModel(reference or load_reference(), seed, now=now, mix=mix)
    flow = Interleaver(
        model.plans(dossiers), seed=seed, concurrency=mix.concurrency, feedback_gap=mix.feedback_gap
    )
    report = SimulationReport(seed=seed)
    bucket = TokenBucket(rate)
    errors: list[BaseException] = []
    last_sent: dict[str, int] = {}  # dossier code -> sequence number of its last dossier event
    sent = flushed_upto = 0
    in_order = bool(getattr(publisher, "acknowledges_in_order", False))
    started = last_progress = last_flush = time.monotonic()

    def on_error(exc: BaseException) -> None:
        errors.append(exc)

    def say(message: str) -> None:
        if progress is not None:
            progress(message)

    def flush() -> None:
        nonlocal flushed_upto, last_flush
        publisher.flush()
        flushed_upto, last_flush = sent, time.monotonic()

    for plan, event in flow:
        now_s = time.monotonic()
        if flow.admitting and (
            (duration is not None and now_s - started >= duration)
            or (stop is not None and stop.is_set())
        ):
            flow.stop_admitting()
        code = plan.code
        is_feedback = event["event_type"] in FEEDBACK_EVENT_TYPES
        if is_feedback and not in_order and last_sent.get(code, -1) >= flushed_upto:
            flush()  # the dossier's own events are acknowledged before its feedback goes out
        validated = publisher.validate(event)
        if isinstance(validated, list):
            report.problems += 1
            if len(report.problem_samples) < 10:
                detail = "; ".join(f"{p.path}: {p.rule} ({p.message})" for p in validated)
                report.problem_samples.append(f"{code} {event['event_type']}: {detail}")
            continue
        bucket.take()
        future = publisher.send_async(validated)
        if future is not None:
            future.add_errback(on_error)
        if not is_feedback:
            last_sent[code] = sent
        sent += 1
        report.events += 1
        report.by_event_type[event["event_type"]] += 1
        now_s = time.monotonic()
        if not in_order and now_s - last_flush >= flush_every_s:
            flush()
        if now_s - last_progress >= progress_every_s:
            last_progress = now_s
            elapsed = now_s - started
            say(
                f"sent {report.events} events of {len(flow.admitted)} dossiers · "
                f"{report.events / elapsed:.0f} events/s · problems {report.problems} · "
                f"send errors {len(errors)}"
            )
    flush()
    for plan in flow.admitted:
        report.add(plan)
    report.send_errors = len(errors)
    report.send_error_samples = [str(e) for e in errors[:10]]
    report.elapsed_s = time.monotonic() - started
    return report


# --------------------------------------------------------------------------- command line
def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return value


def _positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    d = MixConfig()
    parser = argparse.ArgumentParser(
        prog="python -m connectors.simulator",
        description=(
            "Simulate Nghệ An's agency systems: validated dossier and feedback events, as JSON "
            "agencies send, published as Avro to dossier.events / feedback.events, either "
            "directly (--via kafka) or through the HTTP ingress with each agency's credentials "
            "(--via ingress). Traffic "
            "follows the reference data (working days and hours, commune and department "
            "procedures, active agencies) and is the same for the same --seed on the same day."
        ),
        epilog=(
            "Stops after --dossiers dossiers or --duration seconds, whichever comes first "
            "(default: 300 dossiers); dossiers in flight are always finished. With --via kafka, "
            "broker and registry: --bootstrap-server / --registry-url, else "
            "KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL, else the local stack's defaults. "
            "With --via ingress, each event is POSTed to --ingress-url with the credentials of "
            "the agency holding the dossier (after a transfer, the receiving agency), taken from "
            "--credentials, a file in the ingress's own format with keys in clear; make one with "
            "`python -m connectors.ingress.credentials generate --out FILE` and start the "
            "ingress with it (`hub connector run --config connectors/examples/http-ingress.toml`). "
            "Each dossier's events are sent one after the other; 429 and 503 are retried; "
            "any other refusal is counted as a send error with its rule and field problems."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run = parser.add_argument_group("how much and how fast")
    run.add_argument("--seed", type=int, default=1, help="random seed: same seed, same events")
    run.add_argument(
        "--rate", type=_positive(float), default=200.0,
        help="events per second (token bucket, short bursts of rate/10)",
    )  # fmt: skip
    run.add_argument(
        "--dossiers", type=_positive(int), default=None,
        help="number of dossiers to simulate (default 300 when --duration is not given)",
    )  # fmt: skip
    run.add_argument(
        "--duration", type=_positive(float), default=None,
        help="seconds after which no new dossier starts (dossiers in flight are finished)",
    )  # fmt: skip
    run.add_argument(
        "--concurrency", type=_positive(int), default=d.concurrency,
        help="dossiers in flight at once, their events interleaved",
    )  # fmt: skip
    run.add_argument(
        "--window-days", type=_positive(int), default=d.window_days,
        help="submissions fall in this many days before today (overdue ones may be older)",
    )  # fmt: skip
    run.add_argument(
        "--progress-every", type=_positive(float), default=3.0,
        help="seconds between progress lines",
    )  # fmt: skip
    shares = parser.add_argument_group("traffic mix (shares between 0 and 1)")
    for option, name, text in (
        ("--online-share", "online_share", "dossiers submitted online (DOMAIN.md: about 70%%)"),
        ("--postal-share", "postal_share", "dossiers sent by post (the rest: at the desk)"),
        ("--commune-share", "commune_share", "dossiers of commune-level procedures"),
        ("--supplement-share", "supplement_share", "dossiers with a supplement round"),
        ("--transfer-share", "transfer_share", "dossiers transferred to another agency"),
        ("--unfinished-share", "unfinished_share", "dossiers still open at the end"),
        ("--overdue-share", "overdue_share", "of the open ones, those past their appointment"),
        ("--late-share", "late_share", "of the finished ones, those finished late"),
        ("--rating-share", "rating_share", "finished dossiers the applicant rates (mostly 4-5)"),
        ("--complaint-share", "complaint_share", "dossiers with a complaint (late ones: 25%%)"),
    ):
        shares.add_argument(option, dest=name, type=_share, default=getattr(d, name), help=text)
    out = parser.add_argument_group("where to")
    out.add_argument(
        "--via", choices=["kafka", "ingress"], default="kafka",
        help="kafka: publish Avro directly; ingress: POST JSON to the HTTP ingress as each "
        "agency's system would",
    )  # fmt: skip
    out.add_argument(
        "--ingress-url", default="http://127.0.0.1:8088",
        help="--via ingress: the ingress's base URL (it serves /v1/dossier-events)",
    )  # fmt: skip
    out.add_argument(
        "--credentials", type=Path, default=None,
        help="--via ingress: credentials file with an api_key or hmac_secret in clear per agency",
    )  # fmt: skip
    out.add_argument(
        "--ingress-workers", type=_positive(int), default=8,
        help="--via ingress: dossiers sent in parallel (each dossier's events stay in order)",
    )  # fmt: skip
    out.add_argument("--bootstrap-server", help="Kafka bootstrap servers")
    out.add_argument("--registry-url", help="schema registry, Confluent-compatible API base URL")
    out.add_argument(
        "--topic-prefix", default=None, help="topic prefix (default $HUB_TOPIC_PREFIX or none)"
    )
    out.add_argument(
        "--dry-run", action="store_true",
        help="validate and print the events as JSON lines instead of publishing (no broker)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mix = MixConfig(
        online_share=args.online_share,
        postal_share=args.postal_share,
        commune_share=args.commune_share,
        supplement_share=args.supplement_share,
        transfer_share=args.transfer_share,
        unfinished_share=args.unfinished_share,
        overdue_share=args.overdue_share,
        late_share=args.late_share,
        rating_share=args.rating_share,
        complaint_share=args.complaint_share,
        window_days=args.window_days,
        concurrency=args.concurrency,
    )
    dossiers = args.dossiers if args.dossiers or args.duration else 300
    reference = load_reference()
    log = sys.stderr if args.dry_run else sys.stdout

    def progress(message: str) -> None:
        print(message, file=log, flush=True)

    publisher: Any
    if args.dry_run:
        publisher = ValidatingPrinter(reference, sys.stdout)
    elif args.via == "ingress":
        from connectors.simulator_ingress import IngressPublisher, load_signing

        if args.credentials is None:
            print("simulator: --via ingress needs --credentials FILE", file=sys.stderr)
            return 2
        try:
            signing = load_signing(args.credentials, reference.agencies)
        except (OSError, ValueError) as exc:
            print(f"simulator: {exc}", file=sys.stderr)
            return 2
        publisher = IngressPublisher(
            args.ingress_url, signing, procedure_effective_from=procedure_lookup(reference),
            workers=args.ingress_workers,
        )  # fmt: skip
        progress(
            f"sending to the HTTP ingress at {args.ingress_url} with the credentials of "
            f"{len(signing.agencies)} agencies from {args.credentials}"
        )
    else:
        from connectors.publisher import EventPublisher
        from hub.settings import HubSettings

        settings = HubSettings()
        bootstrap = args.bootstrap_server or settings.kafka_bootstrap_servers
        registry = args.registry_url or settings.schema_registry_url
        prefix = settings.topic_prefix if args.topic_prefix is None else args.topic_prefix
        try:
            publisher = EventPublisher(
                bootstrap, registry, topic_prefix=prefix,
                procedure_effective_from=procedure_lookup(reference),
                client_id="province-simulator",
            )  # fmt: skip
        except Exception as exc:
            print(f"simulator: cannot reach Kafka at {bootstrap}: {exc}", file=sys.stderr)
            return 1
        progress(f"publishing to {bootstrap} (registry {registry}), prefix {prefix!r}")
    stop = threading.Event()
    try:
        report = simulate(
            publisher, args.seed, dossiers, args.rate, duration=args.duration,
            reference=reference, mix=mix, progress=progress,
            progress_every_s=args.progress_every, stop=stop,
        )  # fmt: skip
    except KeyboardInterrupt:
        print("simulator: interrupted", file=sys.stderr)
        return 130
    finally:
        close = getattr(publisher, "close", None)
        if close is not None:
            close()
    progress(report.summary())
    describe = getattr(publisher, "summary", None)
    if describe is not None:
        progress(f"  {describe()}")
    for sample in report.problem_samples:
        progress(f"  problem: {sample}")
    for sample in report.send_error_samples:
        progress(f"  send error: {sample}")
    return 0 if report.problems == 0 and report.send_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
