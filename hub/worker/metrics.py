"""Prometheus metrics of the hub worker. Labels are bounded: topic, event type, outcome,
reason code, agency, procedure and channel from reference data; never a dossier code."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from hub.domain.supervision import Figures
from hub.worker.figures import LocalView

__all__ = ["export_figures"]

EVENTS_IN = Counter("hub_events_in_total", "Records read by the hub worker", ["topic", "outcome"])
EVENTS_OUT = Counter("hub_events_out_total", "Records written by the hub worker", ["topic_kind"])
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
OVERDUE_OPEN = Gauge("hub_overdue_open_dossiers", "Open dossiers past their deadline", ["agency"])


def export_figures(view: LocalView) -> None:
    """Refresh the figure gauges from the worker's local view (called before each scrape)."""
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
