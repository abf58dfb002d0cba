"""``hub demo``: the whole province on one machine, then a tour.

1. starts the local stack (``hub stack up``: Kafka in KRaft mode and the schema registry);
2. starts one hub worker (``python -m hub worker -l info``) logging to
   ``$HUB_DEMO_DIR/worker.log`` with its state in ``$HUB_DEMO_DIR/worker-data``
   (``HUB_DEMO_DIR`` defaults to ``.hub/demo``) and waits until it answers ``/ready``;
3. starts the national-portal side: the portal emulator and the portal sink;
4. starts the HTTP ingress as in production (``hub connector run --config
   $HUB_DEMO_DIR/ingress.json``, port ``HUB_DEMO_INGRESS_PORT``, default 8088) with a fresh
   key for every agency in ``$HUB_DEMO_DIR/ingress-credentials.json``;
5. runs the province simulator (:mod:`connectors.simulator`) through the ingress: each
   agency's events are POSTed with that agency's key, as its own system would;
6. waits until the worker has read every event the ingress acknowledged
   (``hub_events_in_total`` on /metrics);
7. shows where to look, with real answers fetched from the worker and the ingress;
8. keeps running until Ctrl-C (or ``--duration`` seconds), then stops the connectors, the
   worker and, unless ``--keep-stack`` or the stack was already running before, the stack.

Whatever happens (an error, Ctrl-C, SIGTERM), the processes the demo started are stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Any

from kafka.errors import KafkaError

from hub.access.commands import add_key
from hub.access.roles import Role
from hub.audit.signing import generate_key, public_key_path
from hub.settings import HubSettings
from hub.stack.errors import StackError
from hub.stack.stack import LocalStack
from hub.stack.tools import require_free_port

__all__ = ["add_demo_parser", "demo_dir", "run_demo_command"]

ROOT = Path(__file__).resolve().parents[1]
#: the agency the demo makes an agency key for (the Department of Justice: the simulator
#: sends it civil-status dossiers)
DEMO_AGENCY_KEY = "000.00.03.H40"
READY_TIMEOUT_S = 180.0


class DemoError(Exception):
    """The demo cannot go on; the message is the one line the user sees."""


def demo_dir() -> Path:
    return Path(os.environ.get("HUB_DEMO_DIR", ".hub/demo")).resolve()


def add_demo_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="the whole province on this machine: broker, registry, a worker, connectors and "
        "a simulated province",
        description=(
            "Start the local Kafka broker and schema registry, one hub worker, the portal "
            "emulator and sink, the HTTP ingress, and the province simulator sending every "
            "agency's events through the ingress with that agency's key; wait until the worker "
            "has caught up; show the dossier view, the overdue list, an agency's figures, the "
            "ingress, the metrics and the dead letters with live answers; then keep running "
            "until Ctrl-C. Ports come from HUB_KAFKA_PORT, HUB_CONTROLLER_PORT, "
            "HUB_REGISTRY_PORT, HUB_WEB_PORT, HUB_DEMO_PORTAL_PORT and HUB_DEMO_INGRESS_PORT; "
            "files go to $HUB_DEMO_DIR (default .hub/demo) and $HUB_STATE_DIR (default "
            ".hub/stack)."
        ),
    )
    demo.add_argument(
        "--dossiers", type=int, default=300, help="dossiers to simulate (default 300)"
    )
    demo.add_argument(
        "--rate", type=float, default=200.0, help="events per second sent (default 200)"
    )
    demo.add_argument(
        "--seed", type=int, help="simulator seed (default: a new one each run, printed)"
    )
    demo.add_argument(
        "--duration",
        type=float,
        help="after the tour, stop by itself after this many seconds (default: wait for Ctrl-C)",
    )
    demo.add_argument(
        "--keep-stack",
        action="store_true",
        help="leave the broker and registry running on exit (stop them with: hub stack down)",
    )
    demo.add_argument(
        "--catch-up-timeout",
        type=float,
        default=180.0,
        help="seconds to wait for the worker to read every event sent (default 180)",
    )


# --------------------------------------------------------------------------- helpers
def _http(url: str, timeout_s: float = 10.0, *, key: str | None = None) -> tuple[int, bytes]:
    """GET ``url``; ``key``: the API key to present (the worker's API needs one)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout_s
        ) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _json(url: str, key: str | None = None) -> Any:
    status, body = _http(url, key=key)
    try:
        data = json.loads(body)
    except ValueError:
        raise DemoError(f"{url} answered {status} with no JSON") from None
    return data


def _pretty(data: Any) -> str:
    """Indented JSON, but each timeline entry on one line."""
    if not isinstance(data, dict) or "timeline" not in data:
        return json.dumps(data, indent=2, ensure_ascii=False)
    lines = ["{"]
    items = list(data.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if key == "timeline" and isinstance(value, list):
            lines.append(f'  "{key}": [')
            for j, entry in enumerate(value):
                sep = "," if j < len(value) - 1 else ""
                lines.append(f"    {json.dumps(entry, ensure_ascii=False)}{sep}")
            lines.append(f"  ]{comma}")
        else:
            text = json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n  ")
            lines.append(f'  "{key}": {text}{comma}')
    lines.append("}")
    return "\n".join(lines)


def metric_total(metrics_text: str, family_name: str, **labels: str) -> float:
    """The sum of the ``<family>_total`` samples whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == family_name
        for sample in family.samples
        if sample.name.endswith("_total")
        and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def events_read(metrics_text: str, topics: set[str]) -> dict[str, float]:
    """``hub_events_in_total`` for the given input topics, by outcome."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "hub_events_in":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("topic") in topics:
                outcome = sample.labels.get("outcome", "?")
                out[outcome] = out.get(outcome, 0.0) + sample.value
    return out


class _Stopped(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped()


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """While cleaning up, a second Ctrl-C or SIGTERM must not cut the cleanup short."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------- the demo
class Demo:
    def __init__(self, args: argparse.Namespace, say: Callable[[str], None]) -> None:
        self.args = args
        self.say = say
        self.dir = demo_dir()
        self.settings = HubSettings()
        self.stack = LocalStack()
        self.stack_started = False
        self.worker: subprocess.Popen[bytes] | None = None
        self.base = f"http://{self.settings.web_host}:{self.settings.web_port}"
        self.prefix = self.settings.topic_prefix
        #: the national-portal side: emulator and sink, as (name, process)
        self.helpers: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.portal_port = int(os.environ.get("HUB_DEMO_PORTAL_PORT", "8089"))
        self.ingress_port = int(os.environ.get("HUB_DEMO_INGRESS_PORT", "8088"))
        self.ingress_credentials = self.dir / "ingress-credentials.json"
        #: the worker's API keys: hashes in access.json, the keys themselves (demo only) in
        #: access-keys.json, both mode 600
        self.access_file = self.dir / "access.json"
        self.access_keys_file = self.dir / "access-keys.json"
        self.keys: dict[str, str] = {}

    # --- 1. the stack -----------------------------------------------------------------------
    def start_stack(self) -> None:
        require_free_port(self.settings.web_port, "the hub worker's HTTP API", "HUB_WEB_PORT")
        before = self.stack.status()
        self.stack_started = not before.running
        config = self.stack.config
        self.say(
            f"starting the local stack: Kafka on 127.0.0.1:{config.kafka_port}, schema "
            f"registry on 127.0.0.1:{config.registry_port}, state in {config.state_dir}"
        )
        self.stack.up(progress=lambda message: self.say(f"  {message}"))
        self.say(f"  ready: KAFKA_BOOTSTRAP_SERVERS={self.stack.bootstrap}")
        self.say(f"  ready: SCHEMA_REGISTRY_URL={self.stack.registry_url}")

    # --- 2. the worker ----------------------------------------------------------------------
    def audit_key(self) -> Path:
        """The demo's audit signing key (made once, kept with the demo's state): the worker
        signs chain heads with it; `hub audit verify` checks them with its .pub file."""
        path = self.dir / "audit" / "signing.key"
        if not path.exists():
            generate_key(path)
            self.say(f"  audit signing key {path} (public key {public_key_path(path)})")
        return path

    def make_access_keys(self) -> None:
        """Fresh API keys for this run: the province office's (every dossier, names shown),
        a figures key (what Prometheus scrapes with) and one agency's; the previous run's
        are replaced."""
        self.access_file.unlink(missing_ok=True)
        self.keys = {
            "province": add_key(self.access_file, "demo-province-office", Role.PROVINCE),
            "figures": add_key(self.access_file, "demo-prometheus", Role.FIGURES),
            "agency": add_key(
                self.access_file, "demo-justice", Role.AGENCY, agency_code=DEMO_AGENCY_KEY
            ),
        }
        fd = os.open(self.access_keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({**self.keys, "agency_code": DEMO_AGENCY_KEY}, out, indent=1)
        self.say(
            f"  API keys: hashes in {self.access_file}, the keys (demo only) in "
            f"{self.access_keys_file}"
        )

    def start_worker(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.make_access_keys()
        log_path = self.dir / "worker.log"
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.stack.bootstrap,
            "SCHEMA_REGISTRY_URL": self.stack.registry_url,
            "HUB_DATA_DIR": str(self.dir / "worker-data"),
            "HUB_CLOCK_INTERVAL_S": "5",
            "HUB_AUDIT_SIGNING_KEY": str(self.audit_key()),
            "HUB_ACCESS_FILE": str(self.access_file),
            "PYTHONPATH": pythonpath,
        }
        self.say(
            f"starting a hub worker (python -m hub worker -l info), API on {self.base}, "
            f"log {log_path}"
        )
        with log_path.open("ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "hub", "worker", "-l", "info"],
                cwd=self.dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops it in order
            )
        started = time.monotonic()
        while time.monotonic() - started < READY_TIMEOUT_S:
            code = self.worker.poll()
            if code is not None:
                raise DemoError(
                    f"the hub worker exited with code {code} while starting; see {log_path}"
                )
            try:
                status, _ = _http(f"{self.base}/ready", timeout_s=2)
            except (urllib.error.URLError, OSError):
                status = 0
            if status == 200:
                self.say(
                    f"  worker ready (pid {self.worker.pid}) after "
                    f"{time.monotonic() - started:.0f}s"
                )
                return
            time.sleep(0.5)
        raise DemoError(
            f"the hub worker was not ready within {READY_TIMEOUT_S:.0f}s; see {log_path}"
        )

    # --- 2b. the national portal: an emulator and the sink that feeds it ---------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log_path = self.dir / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", *argv],
                cwd=self.dir,
                env={**os.environ, **env, "PYTHONPATH": self._pythonpath()},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.helpers.append((name, process))
        return process

    @staticmethod
    def _pythonpath() -> str:
        return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

    @property
    def portal_url(self) -> str:
        return f"http://127.0.0.1:{self.portal_port}"

    def start_portal(self) -> None:
        require_free_port(self.portal_port, "the portal emulator", "HUB_DEMO_PORTAL_PORT")
        token = {"PORTAL_TOKEN": "demo-portal-token"}  # a demo secret, shared by both sides
        self.say(f"starting the national portal emulator on {self.portal_url} and the portal sink")
        self._spawn(
            "portal-emulator",
            ["connectors.portal.emulator", "--port", str(self.portal_port)],
            token,
        )
        started = time.monotonic()
        while time.monotonic() - started < 30:
            try:
                if _http(f"{self.portal_url}/admin/received", timeout_s=2)[0] == 200:
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        else:
            raise DemoError(
                f"the portal emulator did not start; see {self.dir}/portal-emulator.log"
            )
        config = self.dir / "portal-sink.json"
        config.write_text(
            json.dumps(
                {
                    "name": "national-portal",
                    "connector.class": "portal-sink",
                    "topics": "portal.outbox",
                    "value.converter": "avro",
                    "errors.tolerance": "all",
                    "errors.retry.timeout": -1,
                    "bootstrap.servers": self.stack.bootstrap,
                    "schema.registry.url": self.stack.registry_url,
                    "topic.prefix": self.prefix,
                    "settings": {"portal_url": self.portal_url, "token_env": "PORTAL_TOKEN"},
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        self._spawn("portal-sink", ["hub", "connector", "run", "--config", str(config)], token)

    def outbox_size(self) -> int:
        """Status records the worker wrote to portal.outbox (hub_events_out_total)."""
        _, body = _http(f"{self.base}/metrics", key=self.keys["figures"])
        return int(metric_total(body.decode(), "hub_events_out", topic_kind="portal.outbox"))

    # --- 2c. the agency side: the HTTP ingress, run as a connector --------------------------
    INGRESS_NAME = "demo-http-ingress"

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    def start_ingress(self) -> None:
        from connectors.ingress.credentials import generate_credentials, write_credentials
        from hub.reference import load_reference

        require_free_port(self.ingress_port, "the HTTP ingress", "HUB_DEMO_INGRESS_PORT")
        # a fresh key for every agency in force today: whatever the simulator draws has one
        agencies = [a.code for a in load_reference().agencies.active(date.today())]
        write_credentials(generate_credentials(agencies, key_id_suffix="demo"),
                          self.ingress_credentials)  # fmt: skip
        config = self.dir / "ingress.json"
        config.write_text(
            json.dumps(
                {
                    "name": self.INGRESS_NAME,
                    "connector.class": "http-ingress",
                    "bootstrap.servers": self.stack.bootstrap,
                    "schema.registry.url": self.stack.registry_url,
                    "topic.prefix": self.prefix,
                    "settings": {
                        "host": "127.0.0.1",
                        "port": self.ingress_port,
                        "credentials_file": str(self.ingress_credentials),
                    },
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        self.say(
            f"starting the HTTP ingress (hub connector run --config {config}) on "
            f"{self.ingress_url}, {len(agencies)} agency keys in {self.ingress_credentials}"
        )
        process = self._spawn(
            "http-ingress", ["hub", "connector", "run", "--config", str(config)], {}
        )
        started = time.monotonic()
        while time.monotonic() - started < 60:
            if process.poll() is not None:
                raise DemoError(
                    f"the HTTP ingress exited with code {process.returncode}; "
                    f"see {self.dir}/http-ingress.log"
                )
            try:
                # 200 once it listens and reaches Kafka
                if _http(f"{self.ingress_url}/health", timeout_s=2)[0] == 200:
                    self.say(f"  ingress ready (pid {process.pid})")
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise DemoError(f"the HTTP ingress did not start; see {self.dir}/http-ingress.log")

    def ingress_published(self) -> int:
        """Events the ingress acknowledged (hub_connector_records_total, outcome published)."""
        _, body = _http(f"{self.ingress_url}/metrics")
        return int(
            metric_total(
                body.decode(), "hub_connector_records",
                connector=self.INGRESS_NAME, outcome="published",
            )
        )  # fmt: skip

    def wait_portal(self, expected: int) -> dict[str, Any]:
        """Until the emulator holds ``expected`` statuses (or stops growing for 20 s)."""
        self.say(f"waiting for the portal to receive the {expected} status updates")
        last, still_since = -1, time.monotonic()
        while True:
            received = _json(f"{self.portal_url}/admin/received")
            count = int(received.get("count", 0))
            if count >= expected:
                return dict(received)
            if count != last:
                last, still_since = count, time.monotonic()
            elif time.monotonic() - still_since > 20:
                self.say(
                    f"  the portal holds {count} of {expected}; see {self.dir}/portal-sink.log"
                )
                return dict(received)
            time.sleep(0.5)

    def check_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is not None:
            raise DemoError(
                f"the hub worker stopped (exit code {self.worker.returncode}); "
                f"see {self.dir / 'worker.log'}"
            )

    # --- 3. the province --------------------------------------------------------------------
    def simulate(self) -> Any:
        from connectors.simulator import procedure_lookup, simulate
        from connectors.simulator_ingress import IngressPublisher, load_signing
        from hub.reference import load_reference

        seed = self.args.seed if self.args.seed is not None else int(time.time()) % 100_000
        reference = load_reference()
        self.say(
            f"simulating {self.args.dossiers} dossiers at {self.args.rate:g} events/s through "
            f"the HTTP ingress, each agency with its own key (seed {seed}: repeat with "
            f"--seed {seed})"
        )
        publisher = IngressPublisher(
            self.ingress_url,
            load_signing(self.ingress_credentials, reference.agencies),
            procedure_effective_from=procedure_lookup(reference),
        )
        try:
            report = simulate(
                publisher,
                seed,
                self.args.dossiers,
                self.args.rate,
                reference=reference,
                progress=lambda message: self.say(f"  {message}"),
            )
        finally:
            publisher.close()
        for line in report.summary().splitlines():
            self.say(f"  {line.strip()}")
        self.say(f"  {publisher.summary()}")
        for sample in report.problem_samples:
            self.say(f"  validation problem: {sample}")
        for sample in report.send_error_samples:
            self.say(f"  send error: {sample}")
        return report

    # --- 4. catching up ---------------------------------------------------------------------
    def wait_caught_up(self, sent: int) -> dict[str, float]:
        topics = {f"{self.prefix}dossier.events", f"{self.prefix}feedback.events"}
        self.say(f"waiting for the worker to read all {sent} events (hub_events_in_total)")
        started = last_say = time.monotonic()
        outcomes: dict[str, float] = {}
        while True:
            self.check_worker()
            _, body = _http(f"{self.base}/metrics", key=self.keys["figures"])
            outcomes = events_read(body.decode(), topics)
            read = sum(outcomes.values())
            if read >= sent:
                break
            now = time.monotonic()
            if now - started > self.args.catch_up_timeout:
                raise DemoError(
                    f"the worker read {read:.0f} of {sent} events in "
                    f"{self.args.catch_up_timeout:g}s; see {self.dir / 'worker.log'}"
                )
            if now - last_say >= 3:
                last_say = now
                self.say(f"  read {read:.0f} of {sent}")
            time.sleep(0.5)
        detail = ", ".join(f"{k} {v:.0f}" for k, v in sorted(outcomes.items()))
        self.say(f"  caught up after {time.monotonic() - started:.1f}s: {detail}")
        return outcomes

    # --- 5. the tour ------------------------------------------------------------------------
    def tour(self, report: Any) -> None:
        say, base = self.say, self.base
        province = self.keys["province"]
        auth = '-H "Authorization: Bearer $HUB_KEY"'
        rule = "-" * 78
        say(rule)
        say("Where to look (the worker answers on " + base + "):")
        say("")
        say(f"# the web page (Vietnamese; ?lang=en for English): open {base}/ui and sign in")
        say(f"# with a key from {self.access_keys_file}: 'province' sees the whole province,")
        say(f"# 'agency' the dossiers of {DEMO_AGENCY_KEY} only, 'figures' the figures only")
        say("")
        say("# every API call presents a key (401 without one, 403 outside its role):")
        say(f"$ export HUB_KEY=$(python3 -c \"import json; print(json.load(open("
            f"'{self.access_keys_file}'))['province'])\")")  # fmt: skip

        code = next(
            (report.examples[k] for k in ("transferred", "supplemented", "rated", "finished")
             if k in report.examples),
            None,
        )  # fmt: skip
        if code is not None:
            say("")
            say("# one dossier, the hub's single view of it (a province key sees the applicant's")
            say("# name, and the read is recorded in the audit trail; other keys see it masked)")
            say(f"$ curl -s {auth} {base}/dossiers/{code}")
            say(_pretty(_json(f"{base}/dossiers/{code}", province)))

        overdue_agency = next(iter(report.overdue_by_agency.most_common(1)), (None, 0))[0]
        say("")
        say("# open dossiers past their appointment date (also alerted on dossier.alerts)")
        query = f"?agency={overdue_agency}&size=5" if overdue_agency else "?size=5"
        say(f"$ curl -s {auth} '{base}/overdue{query}'")
        say(json.dumps(_json(f"{base}/overdue{query}", province), indent=2, ensure_ascii=False))
        total = _json(f"{base}/overdue?size=1", province).get("total")
        say(f"  (province-wide: {total} overdue; the simulator planned {report.overdue_expected})")

        busiest = next(iter(report.by_agency.most_common(1)), (None, 0))[0]
        if busiest is not None:
            say("")
            say("# an agency's figures: on-time rate, online share, satisfaction")
            say(f"$ curl -s {auth} {base}/agencies/{busiest}/summary")
            say(json.dumps(_json(f"{base}/agencies/{busiest}/summary", province), indent=2,
                           ensure_ascii=False))  # fmt: skip

        _, body = _http(f"{base}/metrics", key=self.keys["figures"])
        lines = body.decode().splitlines()
        dossier_lines = [line for line in lines if line.startswith("hub_dossiers{")]
        shown = [line for line in dossier_lines if busiest and f'"{busiest}"' in line][:8]
        shown = shown or dossier_lines[:8]
        say("")
        say("# Prometheus metrics (figures by agency and channel; per procedure: the summaries)")
        say(f"$ curl -s {auth} {base}/metrics | grep '^hub_dossiers{{'")
        for line in shown:
            say(line)
        say(f"  ... {len(dossier_lines)} hub_dossiers lines in all; also hub_events_in_total, "
            "hub_on_time_ratio, hub_online_share_ratio, hub_satisfaction_ratio")  # fmt: skip
        for line in lines:
            if line.startswith(("hub_events_in_total{", "hub_events_out_total{")):
                say(line)

        say("")
        say("# the agency side: the HTTP ingress every simulated agency system posted to")
        say(f"ingress: {self.ingress_url}/v1/dossier-events and /v1/feedback-events")
        say(f"OpenAPI document: {self.ingress_url}/openapi.json")
        say(
            f"credentials (one API key per agency, in clear: demo only): {self.ingress_credentials}"
        )
        agency = busiest or "<agency code>"
        say(
            f"$ curl -s -X POST {self.ingress_url}/v1/dossier-events -H 'Content-Type: "
            f"application/json' -H 'X-Api-Key: <api_key of {agency} in that file>' -d @event.json"
        )
        say(f"$ curl -s {self.ingress_url}/metrics | grep -E "
            "'^hub_(ingress_requests|connector_records)_total'")  # fmt: skip
        _, body = _http(f"{self.ingress_url}/metrics")
        for line in body.decode().splitlines():
            if line.startswith(("hub_ingress_requests_total{", "hub_connector_records_total{")):
                say(line)
        say(f"  the ingress acknowledged {self.ingress_published()} events (202 after Kafka's ack)")

        say("")
        say("# dead letters: events the hub could not apply (none expected)")
        for topic in ("dossier.events.dlq", "feedback.events.dlq"):
            full = f"{self.prefix}{topic}"
            say(f"$ KAFKA_BOOTSTRAP_SERVERS={self.stack.bootstrap} hub dlq list --topic {full}")
            result = subprocess.run(
                [sys.executable, "-m", "hub", "dlq", "list", "--topic", full,
                 "--bootstrap-server", self.stack.bootstrap],
                capture_output=True, text=True, timeout=60, check=False,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)},
            )  # fmt: skip
            say((result.stdout + result.stderr).rstrip())
        say("")
        say("# the audit trail: every applied event chained, each chain's head signed by the")
        say("# worker's key, every entry held against its input record")
        public = public_key_path(self.audit_key())
        audit = f"{self.prefix}hub.audit"
        say(f"$ SCHEMA_REGISTRY_URL={self.stack.registry_url} hub audit verify --topic {audit} "
            f"--public-key {public} --bootstrap-server {self.stack.bootstrap}")  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "hub", "audit", "verify", "--topic", audit,
             "--public-key", str(public), "--bootstrap-server", self.stack.bootstrap],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "SCHEMA_REGISTRY_URL": self.stack.registry_url,
                 "PYTHONPATH": self._pythonpath()},
        )  # fmt: skip
        say((result.stdout + result.stderr).rstrip())
        say("")
        say(f"worker log: {self.dir / 'worker.log'} · ingress log: {self.dir / 'http-ingress.log'}"
            " · stack logs: hub stack logs")  # fmt: skip
        say(rule)

    # --- 6. waiting and stopping ------------------------------------------------------------
    def wait(self) -> None:
        duration = self.args.duration
        if duration is None:
            self.say("the hub keeps running; press Ctrl-C to stop")
        else:
            self.say(f"the hub keeps running for {duration:g}s (--duration); Ctrl-C stops it early")
        started = time.monotonic()
        while duration is None or time.monotonic() - started < duration:
            self.check_worker()
            time.sleep(0.5)

    def stop(self) -> None:
        for name, process in reversed(self.helpers):
            if process.poll() is None:
                self.say(f"stopping the {name} (pid {process.pid})")
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        worker = self.worker
        if worker is not None and worker.poll() is None:
            self.say(f"stopping the hub worker (pid {worker.pid})")
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.say("  the worker did not stop within 30s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)  # its own session: only its group
                worker.wait()
        if self.args.keep_stack:
            self.say("leaving the broker and registry running (--keep-stack); stop them with "
                     "`hub stack down`")  # fmt: skip
        elif not self.stack_started:
            self.say("the stack was running before the demo: leaving it running")
        else:
            self.say("stopping the stack (hub stack down)")
            stopped = self.stack.down()
            self.say(f"  stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


def run_demo_command(args: argparse.Namespace) -> int:
    started = time.monotonic()

    def say(message: str) -> None:
        print(message, flush=True)

    def phase(message: str) -> None:
        say(f"[{time.monotonic() - started:6.1f}s] {message}")

    if args.dossiers < 1 or args.rate <= 0:
        print("hub demo: --dossiers and --rate must be positive", file=sys.stderr)
        return 2
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_stopped),
        # also when started with SIGINT ignored (a background job of a script)
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    demo = Demo(args, phase)
    touring = False
    code = 0
    try:
        demo.start_stack()
        demo.start_worker()
        demo.start_portal()
        demo.start_ingress()
        report = demo.simulate()
        # what the ingress refused never reached Kafka: the worker cannot read it
        demo.wait_caught_up(report.events - report.send_errors)
        demo.tour(report)
        outbox = demo.outbox_size()
        portal = demo.wait_portal(outbox)
        phase(
            f"the national portal holds {portal.get('count', 0)} status updates of {outbox} on "
            f"portal.outbox ({portal.get('duplicates', 0)} repeats suppressed by idempotency "
            f"key); see {demo.portal_url}/admin/received"
        )
        touring = True
        demo.wait()
        if report.problems or report.send_errors:
            code = 1
    except KeyboardInterrupt:
        if not touring:
            print("hub demo: interrupted", file=sys.stderr)
            code = 130
    except (StackError, DemoError) as exc:
        print(f"hub demo: {exc}", file=sys.stderr)
        code = 1
    except (OSError, KafkaError) as exc:
        print(f"hub demo: {exc}", file=sys.stderr)
        code = 1
    finally:
        with _signals_ignored():
            demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    phase("demo finished")
    return code
