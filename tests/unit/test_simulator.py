"""The province simulator without a broker: deterministic, valid, realistic, ordered."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.scenarios import VN
from connectors.simulator import (
    DossierPlan,
    Interleaver,
    MixConfig,
    ProvinceModel,
    ValidatingPrinter,
    build_parser,
    procedure_lookup,
    simulate,
)
from hub.contract.event_types import FEEDBACK_EVENT_TYPES
from hub.contract.inbound import to_avro_record, validate_dossier_event, validate_feedback_event
from hub.domain.events import from_record
from hub.domain.lifecycle import Applied, DossierState, ProcedureRule, RuleContext, apply
from hub.reference import ReferenceData, load_reference

NOW = datetime(2026, 6, 17, 10, 30, tzinfo=VN)  # a Wednesday, mid-morning
COUNT = 2000


@pytest.fixture(scope="module")
def reference() -> ReferenceData:
    return load_reference()


def stream(
    reference: ReferenceData, seed: int, count: int, now: datetime = NOW
) -> tuple[list[DossierPlan], list[tuple[DossierPlan, dict[str, Any]]]]:
    model = ProvinceModel(reference, seed, now=now)
    flow = Interleaver(model.plans(count), seed=seed)
    events = list(flow)
    return flow.admitted, events


@pytest.fixture(scope="module")
def big(
    reference: ReferenceData,
) -> tuple[list[DossierPlan], list[tuple[DossierPlan, dict[str, Any]]]]:
    return stream(reference, 11, COUNT)


def test_same_seed_same_events_other_seed_other_events(reference: ReferenceData) -> None:
    _, first = stream(reference, 5, 150)
    _, again = stream(reference, 5, 150)
    _, other = stream(reference, 6, 150)
    assert [e for _, e in first] == [e for _, e in again]
    assert [e["event_id"] for _, e in first] != [e["event_id"] for _, e in other]


def test_every_event_passes_the_inbound_validation(
    reference: ReferenceData, big: tuple[list[DossierPlan], list[tuple[DossierPlan, Any]]]
) -> None:
    lookup = procedure_lookup(reference)
    now = NOW.astimezone(UTC)
    for _, event in big[1]:
        if event["event_type"] in FEEDBACK_EVENT_TYPES:
            result: Any = validate_feedback_event(event, now=now)
        else:
            result = validate_dossier_event(event, now=now, procedure_effective_from=lookup)
        assert not isinstance(result, list), (event["dossier_code"], result)
        assert datetime.fromisoformat(event["occurred_at"]) <= now


def test_the_hub_state_machine_accepts_every_event_and_sees_the_overdue_ones(
    reference: ReferenceData, big: tuple[list[DossierPlan], list[tuple[DossierPlan, Any]]]
) -> None:
    lookup = procedure_lookup(reference)

    def rule(code: str) -> ProcedureRule | None:
        p = reference.procedures.get(code)
        return None if p is None else ProcedureRule(p.working_days, tuple(s.share for s in p.steps))

    def resolve(code: str, on: Any) -> str:
        return reference.agencies.resolve(code, on).code

    ctx = RuleContext(reference.calendar, rule, resolve)
    states: dict[str, DossierState] = {}
    now = NOW.astimezone(UTC)
    for _, event in big[1]:
        if event["event_type"] in FEEDBACK_EVENT_TYPES:
            model: Any = validate_feedback_event(event, now=now)
        else:
            model = validate_dossier_event(event, now=now, procedure_effective_from=lookup)
        domain_event = from_record(to_avro_record(model, recorded_at=now, schema_version=1))
        outcome = apply(states.get(domain_event.dossier_code), domain_event, ctx)
        assert isinstance(outcome, Applied), outcome
        states[domain_event.dossier_code] = outcome.state
    plans = {p.code: p for p in big[0]}
    today = NOW.date()
    for code, state in states.items():
        plan = plans[code]
        assert state.is_finished == plan.finished
        assert state.appointment_date == plan.appointment_date
        assert state.agency_code == plan.holder
        if not plan.finished:
            assert state.appointment_date is not None
            late = reference.calendar.add_working_days(
                state.appointment_date, state.paused_working_days
            )
            assert (late < today) == plan.overdue, code


def test_mix_is_roughly_as_configured(
    reference: ReferenceData, big: tuple[list[DossierPlan], list[tuple[DossierPlan, Any]]]
) -> None:
    plans = big[0]
    mix = MixConfig()
    n = len(plans)
    assert n == COUNT

    def share(flag: Any) -> float:
        return sum(1 for p in plans if flag(p)) / n

    assert share(lambda p: p.channel == 2) == pytest.approx(mix.online_share, abs=0.04)
    assert share(lambda p: p.supplement) == pytest.approx(mix.supplement_share, abs=0.025)
    assert share(lambda p: p.transfer_to is not None) == pytest.approx(mix.transfer_share, abs=0.02)
    assert share(lambda p: not p.finished) == pytest.approx(mix.unfinished_share, abs=0.02)
    unfinished = [p for p in plans if not p.finished]
    overdue = [p for p in unfinished if p.overdue]
    assert 0.3 * len(unfinished) <= len(overdue) <= 0.7 * len(unfinished)
    finished = [p for p in plans if p.finished]
    rated = [p for p in finished if p.rating is not None]
    assert len(rated) / len(finished) == pytest.approx(mix.rating_share, abs=0.04)
    assert sum(1 for p in rated if p.rating is not None and p.rating >= 4) >= 0.8 * len(rated)
    assert 0 < sum(p.complaint for p in plans) < 0.05 * n
    levels = Counter(reference.procedures[p.procedure_code].level for p in plans)
    assert levels["commune"] / n == pytest.approx(mix.commune_share, abs=0.04)
    # commune procedures at active commune agencies, others at their responsible agency
    for p in plans:
        procedure = reference.procedures[p.procedure_code]
        agency = reference.agencies.version_on(p.agency, p.submitted_at.date())
        assert agency is not None, p.code
        if procedure.level == "commune":
            assert agency.level == "commune"
        else:
            assert procedure.responsible_agency is not None
            assert reference.agencies.resolve(procedure.responsible_agency, NOW.date()).code == (
                p.agency
            )
        assert p.submitted_at.date() >= procedure.effective_from
    assert len({p.agency for p in plans}) > 60  # traffic spread over many communes


def test_work_happens_on_working_days_in_working_hours(
    reference: ReferenceData, big: tuple[list[DossierPlan], list[tuple[DossierPlan, Any]]]
) -> None:
    off_hours_submissions = 0
    for plan, event in big[1]:
        at = datetime.fromisoformat(event["occurred_at"]).astimezone(VN)
        in_hours = (7, 30) <= (at.hour, at.minute) < (11, 31) or (13, 30) <= (
            at.hour,
            at.minute,
        ) < (17, 1)
        in_hours = in_hours and reference.calendar.is_working_day(at.date())
        if event["event_type"] == "DossierSubmitted" and plan.channel == 2 and not in_hours:
            off_hours_submissions += 1  # online applicants submit evenings and weekends too
            continue
        assert in_hours, event
        assert reference.calendar.is_working_day(at.date()), event
    assert 0 < off_hours_submissions < 0.3 * COUNT


def test_each_dossier_in_order_many_in_flight_feedback_held_back(
    big: tuple[list[DossierPlan], list[tuple[DossierPlan, Any]]],
) -> None:
    plans, events = big
    seen: dict[str, list[dict[str, Any]]] = defaultdict(list)
    last_dossier_event: dict[str, int] = {}
    gaps: list[int] = []
    for i, (plan, event) in enumerate(events):
        seen[plan.code].append(event)
        if event["event_type"] in FEEDBACK_EVENT_TYPES:
            gaps.append(i - last_dossier_event[plan.code])
        else:
            last_dossier_event[plan.code] = i
    for plan in plans:
        assert seen[plan.code] == list(plan.events)
        times = [datetime.fromisoformat(e["occurred_at"]) for e in plan.events]
        assert times == sorted(times) and len(set(times)) == len(times)
    assert len(events) == sum(len(p.events) for p in plans)
    # the first 300 events already touch dozens of dossiers
    assert len({p.code for p, _ in events[:300]}) >= 40
    # feedback waits for ~feedback_gap events (less only at the very end of the run)
    assert sorted(gaps)[len(gaps) // 10] >= MixConfig().feedback_gap


def test_simulate_reports_what_it_sent(reference: ReferenceData) -> None:
    lines: list[str] = []
    report = simulate(
        ValidatingPrinter(reference),
        3,
        120,
        100_000.0,
        now=NOW,
        reference=reference,
        progress=lines.append,
        progress_every_s=0.0,
    )
    assert report.dossiers == 120
    assert report.problems == 0 and report.send_errors == 0
    assert report.events == sum(report.by_event_type.values())
    assert report.by_event_type["DossierSubmitted"] == 120
    assert report.by_event_type["ServiceRated"] == report.ratings
    assert report.by_event_type["ComplaintFiled"] == report.complaints
    assert report.by_event_type["DossierTransferred"] == report.transfers
    assert report.by_event_type["DossierProcessed"] == 120 - report.unfinished
    assert sum(report.overdue_by_agency.values()) == report.overdue_expected
    assert "finished" in report.examples
    assert lines and "problems 0" in lines[-1]
    assert "simulated 120 dossiers" in report.summary()


def test_simulate_counts_invalid_events_instead_of_sending_them(reference: ReferenceData) -> None:
    class Strict(ValidatingPrinter):
        sent = 0

        def validate(self, data: Any, *, now: datetime | None = None) -> Any:
            # pretend a procedure became valid only tomorrow: every submission is refused
            if data["event_type"] == "DossierSubmitted":
                return validate_dossier_event(
                    data, now=now, procedure_effective_from=lambda _c: NOW.date().replace(year=2099)
                )
            return super().validate(data, now=now)

    report = simulate(Strict(reference), 3, 10, 100_000.0, now=NOW, reference=reference)
    assert report.problems == 10
    assert report.problem_samples and "before_procedure" in report.problem_samples[0]


def test_duration_stops_admitting_but_finishes_dossiers_in_flight(
    reference: ReferenceData,
) -> None:
    report = simulate(ValidatingPrinter(reference), 4, None, 2000.0, duration=0.5, now=NOW)
    assert report.dossiers > 0
    assert report.by_event_type["DossierSubmitted"] == report.dossiers
    assert report.by_event_type["DossierReceived"] == report.dossiers


def test_help_explains_every_option() -> None:
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
    text = parser.format_help()
    for option in ("--seed", "--rate", "--duration", "--dossiers", "--dry-run", "--online-share",
                   "--via", "--ingress-url", "--credentials"):  # fmt: skip
        assert option in text


def test_mix_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="online_share"):
        MixConfig(online_share=1.5)
    with pytest.raises(ValueError, match="exceed"):
        MixConfig(online_share=0.9, postal_share=0.2)
