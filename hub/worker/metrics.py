"""Prometheus metrics of the hub worker. Labels are bounded: topic, event type, outcome,
reason code, agency, procedure and channel from reference data; never a dossier code.

Names follow the Prometheus conventions: ``hub_`` prefix, base units (seconds), ``_total``
on counters, ``_ratio`` on fractions in 0..1, ``_info`` on the constant build gauge. The
dead-letter counter (``hub_dead_letters_total``) lives in :mod:`hub.dlq.publisher`.

Figures are per worker: each worker holds the dossiers of its partitions, so province or
agency totals are ``sum`` over workers, and rates are recomputed from the summed
``hub_dossiers`` counts (recording rules in ``monitoring/rules/hub.rules.yml``), not by
averaging the per-worker ``*_ratio`` gauges.

Elsewhere on the same /metrics (the default registry): the consumer lag of the input topics
(``hub_consumer_lag_messages{topic}``, :mod:`hub.worker.lag`, sampled every 15 s) and
faust's own sensor metrics (``hub_faust_*``, faust.sensors.prometheus, wired in
:mod:`hub.worker.app`). Connector metrics are on each connector's own endpoint
(``hub_portal_*``, ``hub_connector_*``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from prometheus_client import Counter, Gauge, Histogram

from hub.domain.events import local_date
from hub.domain.supervision import Figures
from hub.worker.figures import LocalView

__all__ = ["HUB_VERSION", "export_figures"]


def _hub_version() -> str:
    try:
        return package_version("nghean-hub")
    except PackageNotFoundError:
        return "unknown"


HUB_VERSION = _hub_version()

BUILD_INFO = Gauge("hub_build_info", "Always 1; the hub's version as a label", ["version"])
BUILD_INFO.labels(HUB_VERSION).set(1)

EVENTS_IN = Counter(
    "hub_events_in_total",
    "Records read by the hub worker, by topic, event type (from the contract's closed list, "
    "or 'unknown' when undecodable) and outcome",
    ["topic", "event_type", "outcome"],
)
EVENTS_OUT = Counter(
    "hub_events_out_total", "Records written by the hub worker", ["topic_kind", "event_type"]
)
EVENT_LATENCY = Histogram(
    "hub_event_processing_latency_seconds",
    "Event time (occurred_at) to processed by the hub",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
DOSSIERS = Gauge(
    "hub_dossiers",
    "Dossiers held by this worker, by figure (received, in_progress, processed, ...)",
    ["agency", "procedure", "channel", "figure"],
)
ON_TIME_RATE = Gauge("hub_on_time_ratio", "Finished on time / finished", ["agency"])
ONLINE_SHARE = Gauge("hub_online_share_ratio", "Submitted online / submitted", ["agency"])
SATISFACTION = Gauge(
    "hub_satisfaction_ratio", "Satisfaction (0..1), Decision 766 style", ["agency"]
)
OVERDUE_OPEN = Gauge(
    "hub_overdue_open_dossiers",
    "Open dossiers held by this worker whose deadline is before today (local date)",
    ["agency"],
)


def export_figures(view: LocalView, today: date | None = None) -> None:
    """Refresh the figure gauges from the worker's local view (called before each scrape).

    ``today`` (the local date in Asia/Ho_Chi_Minh) defaults to now; a dossier is overdue
    when its deadline is strictly before it."""
    DOSSIERS.clear()
    per_agency: dict[str, Figures] = {}
    for key, figures in view.figures.items():
        for name, count in figures.to_dict().items():
            DOSSIERS.labels(key.agency_code, key.procedure_code, key.channel, name).set(count)
        per_agency[key.agency_code] = per_agency.get(key.agency_code, Figures()) + figures
    for gauge in (ON_TIME_RATE, ONLINE_SHARE, SATISFACTION):
        gauge.clear()
    for agency, figures in per_agency.items():
        for gauge, value in (
            (ON_TIME_RATE, figures.on_time_rate),
            (ONLINE_SHARE, figures.online_share),
            (SATISFACTION, figures.satisfaction),
        ):
            if value is not None:
                gauge.labels(agency).set(value)
    _export_overdue(view, today or local_date(datetime.now(UTC)))


def _export_overdue(view: LocalView, today: date) -> None:
    # Every agency this worker knows gets a series, 0 included, so that increase() sees the
    # first overdue dossier of an agency as a rise rather than as a new series.
    cutoff = today.isoformat()  # deadlines are ISO dates: string order is date order
    overdue: dict[str, int] = dict.fromkeys((key.agency_code for key in view.figures), 0)
    for agency, deadline in view.open_deadlines.values():
        overdue[agency] = overdue.get(agency, 0) + (1 if deadline < cutoff else 0)
    OVERDUE_OPEN.clear()
    for agency, count in overdue.items():
        OVERDUE_OPEN.labels(agency).set(count)
