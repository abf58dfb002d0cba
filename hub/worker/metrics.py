"""Prometheus metrics of the hub worker. Labels are bounded: topic, event type, outcome,
reason code, agency and channel from reference data; never a dossier code or a procedure
(too many: see ``FiguresCollector``).

Names follow the Prometheus conventions: ``hub_`` prefix, base units (seconds), ``_total``
on counters, ``_ratio`` on fractions in 0..1, ``_info`` on the constant build gauge. The
dead-letter counter (``hub_dead_letters_total``) lives in :mod:`hub.dlq.publisher`.

Figures are per worker: each worker holds the dossiers of its partitions, so province or
agency totals are ``sum`` over workers, and rates are recomputed from the summed
``hub_dossiers`` counts (recording rules in ``monitoring/rules/hub.rules.yml``), not by
averaging the per-worker ``*_ratio`` gauges.

Elsewhere on the same /metrics (the default registry): the consumer lag of the input topics
(``hub_consumer_lag_messages{topic}``, :mod:`hub.worker.lag`, sampled every 15 s).
Connector metrics are on each connector's own endpoint (``hub_portal_*``,
``hub_connector_*``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Final

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.domain.events import local_date
from hub.domain.supervision import Figures
from hub.worker.figures import LocalView

__all__ = [
    "BLOCK_CACHE",
    "CHECKPOINTS",
    "CHECKPOINT_SECONDS",
    "DISK_FULL",
    "FIGURES",
    "HUB_VERSION",
    "RESTORED",
    "FiguresCollector",
    "overdue_by_agency",
]


def _hub_version() -> str:
    try:
        return package_version("nghean-hub")
    except PackageNotFoundError:
        return "unknown"


HUB_VERSION = _hub_version()

BUILD_INFO = Gauge("hub_build_info", "Always 1; the hub's version as a label", ["version"])

DISK_FULL = Gauge(
    "hub_disk_full",
    "1 while the worker waits for space on HUB_DATA_DIR (processing stopped, nothing lost)",
)
BLOCK_CACHE = Gauge(
    "hub_rocksdb_block_cache_bytes",
    "Bytes held in the block cache the worker's partition stores share "
    "(at most HUB_ROCKSDB_BLOCK_CACHE_MB)",
)
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
CHECKPOINTS = Counter(
    "hub_checkpoints_total",
    "Checkpoints of the engine (one Kafka transaction each): committed, or aborted and read "
    "again (a fenced member, a broker or coordinator change, a revocation mid-transaction)",
    ["outcome"],
)
CHECKPOINT_SECONDS = Histogram(
    "hub_checkpoint_seconds",
    "Time to commit a checkpoint: changelog flush, offsets, commit, store write",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RESTORED = Counter(
    "hub_changelog_restored_records_total",
    "Changelog records replayed into the local stores (after an assignment)",
)


class FiguresCollector(Collector):
    """The supervision figures of the worker's local view, computed when Prometheus scrapes.

    A custom collector rather than labelled gauges refreshed before each scrape: with a few
    thousand (agency, procedure, channel) keys, clearing and re-creating the gauges' children
    cost about a fifth of a worker's time under a 0.5 s scrape (pyinstrument, bench.run);
    families built at collect time allocate no children at all. Until :meth:`watch` is given
    a view (and in processes without one) the families are exported empty.

    Labels stay bounded by the province's agencies: ``hub_dossiers`` is agency x channel x
    figure. Per procedure (about 1,900 in Nghệ An) the same label set would reach hundreds of
    thousands of series, so per-procedure figures are the API's
    (``GET /agencies/{code}/summary``: ``by_procedure``), not Prometheus's."""

    def __init__(self, today: Callable[[], date] | None = None) -> None:
        self.view: LocalView | None = None
        self.today = today or (lambda: local_date(datetime.now(UTC)))

    def watch(self, view: LocalView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        dossiers = GaugeMetricFamily(
            "hub_dossiers",
            "Dossiers held by this worker, by figure (received, in_progress, processed, ...)",
            labels=["agency", "channel", "figure"],
        )
        ratios = {
            "on_time_rate": GaugeMetricFamily(
                "hub_on_time_ratio", "Finished on time / finished", labels=["agency"]
            ),
            "online_share": GaugeMetricFamily(
                "hub_online_share_ratio", "Submitted online / submitted", labels=["agency"]
            ),
            "satisfaction": GaugeMetricFamily(
                "hub_satisfaction_ratio", "Satisfaction (0..1), Decision 766 style",
                labels=["agency"],
            ),
        }  # fmt: skip
        late_steps = GaugeMetricFamily(
            "hub_late_steps",
            "Processing steps completed after their deadline, in dossiers held by this worker, "
            "by the agency and unit that handled them (never an official's name)",
            labels=["agency", "unit"],
        )
        overdue = GaugeMetricFamily(
            "hub_overdue_open_dossiers",
            "Open dossiers held by this worker whose deadline is before today (local date)",
            labels=["agency"],
        )
        view = self.view
        if view is not None:
            per_agency: dict[str, Figures] = {}
            per_channel: dict[tuple[str, str], Figures] = {}
            for key, figures in list(view.figures.items()):
                labels = (key.agency_code, key.channel)
                per_channel[labels] = per_channel.get(labels, Figures()) + figures
                per_agency[key.agency_code] = per_agency.get(key.agency_code, Figures()) + figures
            for (agency, channel), figures in per_channel.items():
                for name in FIGURE_NAMES:
                    count = getattr(figures, name)
                    if count:
                        dossiers.add_metric([agency, channel, name], count)
            for agency, figures in per_agency.items():
                for attribute, family in ratios.items():
                    value = getattr(figures, attribute)
                    if value is not None:
                        family.add_metric([agency], value)
            for agency, count in overdue_by_agency(view, self.today()).items():
                overdue.add_metric([agency], count)
            for (agency, unit), count in list(view.late_steps.items()):
                late_steps.add_metric([agency, unit], count)
        yield dossiers
        yield late_steps
        yield from ratios.values()
        yield overdue


def overdue_by_agency(view: LocalView, today: date) -> dict[str, int]:
    """Open dossiers past their deadline per agency. Every agency this worker knows gets a
    count, 0 included, so that increase() sees an agency's first overdue dossier as a rise
    rather than as a new series."""
    cutoff = today.isoformat()  # deadlines are ISO dates: string order is date order
    overdue: dict[str, int] = dict.fromkeys((key.agency_code for key in view.figures), 0)
    for agency, deadline in list(view.open_deadlines.values()):
        overdue[agency] = overdue.get(agency, 0) + (1 if deadline < cutoff else 0)
    return overdue


FIGURE_NAMES: Final = Figures.__struct_fields__
#: registered once in the default registry; the worker points it at its view
FIGURES = FiguresCollector()
REGISTRY.register(FIGURES)
