"""Monitoring as code: Prometheus config, alert and recording rules, Grafana dashboards.

- ``promtool`` checks the config and the rules and runs the rules' unit tests
  (monitoring/tests/hub.rules.test.yml); every alert must have a case where it fires and a
  case where it stays silent.
- Cross-check: every metric name in a PromQL expression of the rules or the dashboards is one
  the hub exports (read from prometheus_client's registry after importing the modules that
  declare the hub's metrics), ``up``, or a name recorded by the rules. A copy of the rules
  with a renamed metric must fail it, so the check can fail.
- The worker's metrics module itself: the overdue gauge and the build info.

promtool comes from Debian's ``prometheus`` package, which scripts/test.sh installs (see
scripts/_env.sh). Without it these tests fail; they never skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

import connectors.portal.connector
import connectors.sdk.metrics
import hub.dlq.publisher
import hub.worker.lag
import hub.worker.metrics as metrics
from hub.domain.supervision import FigureKey, Figures
from hub.reference import load_reference
from hub.worker.figures import LocalView, agency_summary

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
RULES = MONITORING / "rules" / "hub.rules.yml"
RULE_TESTS = MONITORING / "tests" / "hub.rules.test.yml"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
GRAFANA_PROVISIONING = MONITORING / "grafana" / "provisioning"

#: Series Prometheus itself adds to every scrape target.
SCRAPE_SERIES = frozenset({"up"})

# imported for their metrics: the cross-check reads names from the default registry
assert hub.dlq.publisher.DEAD_LETTERS  # hub_dead_letters_total
assert hub.worker.lag.CONSUMER_LAG  # hub_consumer_lag_messages
assert connectors.portal.connector.DELIVERIES  # hub_portal_* (the portal sink)
assert connectors.sdk.metrics.UP  # hub_connector_* (connectors on the SDK)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH. scripts/test.sh installs it (Debian's prometheus package, "
            "via scripts/_env.sh, as root); or run `apt-get install prometheus`.",
            pytrace=False,
        )
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules_of(path: Path) -> list[dict[str, Any]]:
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def alerts_of(path: Path) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules_of(path) if "alert" in rule}


# --- promtool -------------------------------------------------------------------------------


def test_promtool_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    # the hub job scrapes with a key file the compose stack makes (/access/prometheus.key):
    # checked here with a stand-in key at a path that exists, the rest unchanged
    config = load_yaml(PROMETHEUS_CONFIG)
    (hub_job,) = [job for job in config["scrape_configs"] if job["job_name"] == "hub"]
    assert hub_job["authorization"]["credentials_file"] == "/access/prometheus.key"
    stand_in = tmp_path / "prometheus.key"
    stand_in.write_text("a-figures-key-for-promtool\n")
    hub_job["authorization"]["credentials_file"] = str(stand_in)
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / f) for f in config["rule_files"]]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = run_promtool("check", "config", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr
    (hub_job,) = [job for job in config["scrape_configs"] if job["job_name"] == "hub"]
    assert hub_job.get("metrics_path", "/metrics") == "/metrics"
    targets = {t for static in hub_job["static_configs"] for t in static["targets"]}
    assert targets == {"hub-worker-1:6066", "hub-worker-2:6066"}
    assert [(PROMETHEUS_CONFIG.parent / f).resolve() for f in config["rule_files"]] == [RULES]


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = run_promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = set(alerts_of(RULES))
    assert alerts, "no alert rules found"
    assert alerts - fires == set(), "alerts without a test where they fire"
    assert alerts - silent == set(), "alerts without a test where they stay silent"
    assert (fires | silent) - alerts == set(), "tests of alerts that do not exist"


def test_the_expected_alerts_exist_with_severity_and_text() -> None:
    alerts = alerts_of(RULES)
    assert set(alerts) >= {
        "HubWorkerDown",
        "HubDeadLettersGrowing",
        "HubSlowProcessing",
        "HubOverdueRising",
        "HubOnTimeRateLow",
        "HubConsumerLagHigh",
        "ConnectorDown",
        "PortalBacklogGrowing",
        "PortalCircuitOpen",
    }
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert annotations.get("summary") and annotations.get("description"), name
        if "agency" in rule["expr"]:  # per-agency alerts say which agency
            assert "$labels.agency" in annotations["summary"], name
            assert "$labels.agency" in annotations["description"], name


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (Grafana variables replaced by plain values),
    by checking them as recording rules of a throwaway rules file."""
    with_values = {
        "$__rate_interval": "5m",
        "$__interval": "1m",
        "$__range": "1d",
        "${agency}": ".*",
        "$agency": ".*",
    }
    rules = []
    for dashboard in DASHBOARDS:
        for expr in dashboard_queries(dashboard):
            for variable, value in with_values.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unknown Grafana variable in {dashboard.name}: {expr}"
            rules.append({"record": "dashboard:query:check", "expr": expr})
    assert rules
    generated = tmp_path / "dashboard-queries.rules.yml"
    generated.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run_promtool("check", "rules", str(generated))
    assert result.returncode == 0, result.stdout + result.stderr


# --- cross-check: metric names -----------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_LABEL_VALUES = re.compile(r"\blabel_values\s*\(\s*([^,()]*?)\s*(?:,\s*[A-Za-z_]\w*\s*)?\)")
# An identifier not glued to a number, a variable or another name, and not called.
_NAME = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
     "bool", "offset", "inf", "nan", "atan2"}
)  # fmt: skip


def metric_names_in(expr: str) -> set[str]:
    """Metric names a PromQL expression (or a Grafana ``label_values`` query) selects."""
    text = _LABEL_VALUES.sub(r"\1", expr)
    text = _STRINGS.sub(" ", text)
    text = _MATCHERS.sub(" ", text)  # label names and values, Grafana variables in matchers
    text = _RANGES.sub(" ", text)  # range and subquery durations, $__rate_interval
    text = _LABEL_LISTS.sub(" ", text)  # by (...), on (...), group_left (...)
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def dashboard_queries(path: Path) -> Iterator[str]:
    """The PromQL of every panel (rows and nested panels included) of a Grafana dashboard."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))

    def panels(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield target["expr"]


def variable_queries(path: Path) -> Iterator[str]:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and query:
            yield query


def exported_metric_names(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """The series names the hub exposes on /metrics, from the families in ``registry``.

    A labelled metric with no child yet has no samples, so names come from the family and
    its type: a Counter ``x`` is ``x_total``, a Histogram ``x_bucket``/``x_sum``/``x_count``."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(sample.name for sample in family.samples)
        base = family.name
        if family.type == "counter":
            names.add(f"{base}_total")
        elif family.type in {"histogram", "gaugehistogram"}:
            names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count"})
        elif family.type == "summary":
            names.update({base, f"{base}_sum", f"{base}_count"})
        elif family.type == "info":
            names.add(f"{base}_info")
        else:
            names.add(base)
    return names | SCRAPE_SERIES


def unknown_metric_names(
    rule_files: Iterable[Path], dashboards: Iterable[Path], exported: set[str]
) -> dict[str, set[str]]:
    """Metric name -> where it is used, for every name that is neither exported nor
    recorded by one of ``rule_files``."""
    used: dict[str, set[str]] = {}
    recorded: set[str] = set()

    def use(expr: str, where: str) -> None:
        for name in metric_names_in(expr):
            used.setdefault(name, set()).add(where)

    for path in rule_files:
        for rule in rules_of(path):
            if "record" in rule:
                recorded.add(rule["record"])
            use(rule["expr"], f"{path.name}: {rule.get('alert') or rule.get('record')}")
    for path in dashboards:
        for expr in [*dashboard_queries(path), *variable_queries(path)]:
            use(expr, path.name)
    known = exported | recorded
    return {name: where for name, where in used.items() if name not in known}


def test_the_name_extractor_finds_metrics_and_nothing_else() -> None:
    expr = (
        'sum by (agency) (rate(a_total{figure="x", agency=~"$agency"}[5m] offset 1h)) '
        "/ on (agency) group_left (instance) (b:rec:sum > 0.95) "
        'and bool c unless d_bucket{le="+Inf"}'
        " or histogram_quantile(0.9, sum without (le) (rate(e_bucket[$__rate_interval]))) * 1e3"
    )
    assert metric_names_in(expr) == {"a_total", "b:rec:sum", "c", "d_bucket", "e_bucket"}
    assert metric_names_in("label_values(hub_dossiers, agency)") == {"hub_dossiers"}
    assert metric_names_in("up") == {"up"}


def test_the_exported_names_include_the_expansions() -> None:
    exported = exported_metric_names()
    assert {
        "hub_events_in_total",
        "hub_events_out_total",
        "hub_event_processing_latency_seconds_bucket",
        "hub_event_processing_latency_seconds_sum",
        "hub_event_processing_latency_seconds_count",
        "hub_dossiers",
        "hub_on_time_ratio",
        "hub_overdue_open_dossiers",
        "hub_dead_letters_total",
        "hub_build_info",
        "hub_consumer_lag_messages",
        "hub_portal_deliveries_total",
        "hub_portal_circuit_state",
        "hub_connector_up",
        "up",
    } <= exported
    assert "hub_events_in" not in exported  # a counter is only ever exposed with _total
    assert "hub_event_processing_latency_seconds" not in exported


def test_rules_and_dashboards_use_only_metrics_the_hub_exports() -> None:
    assert len(DASHBOARDS) >= 2, DASHBOARDS
    used = set().union(*(metric_names_in(r["expr"]) for r in rules_of(RULES)))
    assert "hub_dossiers" in used and "up" in used  # the extraction saw the rules at all
    assert unknown_metric_names([RULES], DASHBOARDS, exported_metric_names()) == {}


def test_the_cross_check_fails_on_a_renamed_metric(tmp_path: Path) -> None:
    renamed = tmp_path / "hub.rules.yml"
    text = RULES.read_text(encoding="utf-8")
    assert "hub_dead_letters_total" in text
    renamed.write_text(text.replace("hub_dead_letters_total", "hub_dead_letter_total"))
    unknown = unknown_metric_names([renamed], DASHBOARDS, exported_metric_names())
    assert set(unknown) >= {"hub_dead_letter_total"}
    assert any("HubDeadLettersGrowing" in where for where in unknown["hub_dead_letter_total"])


def test_the_cross_check_fails_when_a_recording_rule_the_dashboards_use_is_gone(
    tmp_path: Path,
) -> None:
    renamed = tmp_path / "hub.rules.yml"
    text = RULES.read_text(encoding="utf-8")
    renamed.write_text(text.replace("record: agency:hub_on_time:ratio", "record: x:y:ratio"))
    unknown = unknown_metric_names([renamed], DASHBOARDS, exported_metric_names())
    assert "agency:hub_on_time:ratio" in unknown
    assert "supervision.json" in unknown["agency:hub_on_time:ratio"]


# --- Grafana provisioning ----------------------------------------------------------------


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    (source,) = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    (provider,) = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "dashboards.yml")["providers"]
    assert provider["type"] == "file"
    names = {path.name for path in DASHBOARDS}
    assert {"operations.json", "supervision.json"} <= names
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        uids.add(dashboard["uid"])
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == source["uid"], (path.name, panel["title"])
    assert len(uids) == len(DASHBOARDS)


# --- hub.worker.metrics ----------------------------------------------------------------


def test_overdue_gauge_counts_open_dossiers_past_their_deadline_by_agency() -> None:
    justice, health, commune = "000.00.03.H40", "000.00.09.H40", "000.21.20.H40"
    view = LocalView(load_reference().calendar)
    view.figures[FigureKey(commune, "1.002", "ONLINE")] = Figures(submitted_total=1)
    view.open_deadlines.update(
        {
            "J-1": (justice, "2025-03-07"),
            "J-2": (justice, "2025-03-09"),
            "J-3": (justice, "2025-03-10"),  # due today: not overdue yet
            "H-1": (health, "2025-03-11"),
        }
    )
    registry = CollectorRegistry()
    collector = metrics.FiguresCollector(today=lambda: date(2025, 3, 10))
    registry.register(collector)
    collector.watch(view)

    def overdue(agency: str) -> float | None:
        return registry.get_sample_value("hub_overdue_open_dossiers", {"agency": agency})

    assert overdue(justice) == 2
    assert overdue(health) == 0  # known, nothing overdue: a 0 series, so a rise shows
    assert overdue(commune) == 0
    view.open_deadlines.clear()
    view.figures.clear()
    assert overdue(justice) is None  # no stale series once the worker holds none


def test_figures_are_read_from_the_view_at_each_scrape() -> None:
    commune = "000.21.20.H40"
    key = FigureKey(commune, "1.002", "ONLINE")
    view = LocalView(load_reference().calendar)
    registry = CollectorRegistry()
    collector = metrics.FiguresCollector(today=lambda: date(2025, 3, 10))
    registry.register(collector)
    labels = {"agency": commune, "channel": "ONLINE"}

    def count(figure: str) -> float | None:
        return registry.get_sample_value("hub_dossiers", {**labels, "figure": figure})

    assert count("received") is None  # no view yet: the families exist, empty
    collector.watch(view)
    view.figures[key] = Figures(submitted_total=2, online=2, received=2, finished_on_time=1,
                                processed=1)  # fmt: skip
    assert count("received") == 2 and count("online") == 2
    assert count("refused") is None  # zero counts are not exported
    assert registry.get_sample_value("hub_online_share_ratio", {"agency": commune}) == 1.0
    assert registry.get_sample_value("hub_on_time_ratio", {"agency": commune}) == 1.0
    view.figures[key] = Figures(submitted_total=2, online=1, received=2)
    assert count("online") == 1  # the next scrape sees the change, nothing cached


def test_build_info_is_one_with_the_version() -> None:
    assert metrics.HUB_VERSION
    value = REGISTRY.get_sample_value("hub_build_info", {"version": metrics.HUB_VERSION})
    assert value == 1


def test_a_province_scaled_up_stays_within_twenty_thousand_series() -> None:
    """200 agencies handling 2,000 procedures (ten each) over three channels, every figure
    non-zero, five units each with late steps: Prometheus carries agency x channel x figure
    and agency x unit, not the procedures."""
    view = LocalView(load_reference().calendar)
    everything = Figures(*(1 for _ in Figures.__struct_fields__))
    for agency in range(200):
        for procedure in range(10):
            for channel in ("IN_PERSON", "ONLINE", "POSTAL"):
                key = FigureKey(
                    f"{agency:03d}.00.00.H40", f"1.{agency * 10 + procedure:06d}", channel
                )
                view.figures[key] = everything
        for unit in range(5):  # late steps by agency and unit (never by official)
            view.late_steps[(f"{agency:03d}.00.00.H40", f"Phòng {unit}")] = 1
    registry = CollectorRegistry()
    collector = metrics.FiguresCollector(today=lambda: date(2025, 3, 10))
    collector.watch(view)
    registry.register(collector)
    series = sum(len(family.samples) for family in registry.collect())
    assert len(view.figures) == 6_000
    # dossiers; 3 ratios and overdue per agency; late steps per unit
    assert series == 200 * 3 * len(Figures.__struct_fields__) + 200 * 4 + 200 * 5
    assert series < 20_000
    # the per-procedure figures are the API's
    summary = agency_summary(view.figures, "007.00.00.H40")
    assert len(summary["by_procedure"]) == 10
    assert summary["counts"]["submitted_total"] == 30
    assert summary["by_procedure"]["1.000070"]["counts"]["submitted_total"] == 3
