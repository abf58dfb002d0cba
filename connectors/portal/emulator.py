"""A national-portal emulator: a real HTTP server speaking :mod:`connectors.portal.contract`.

``POST <endpoint_path>`` (default ``/api/dossiers/status``) with a JSON body, the bearer token
and the idempotency header. Answers, in the order they are decided:

* downtime (a period set by ``down_for_s``): ``503`` with ``Retry-After``, or the connection
  closed without an answer (``down_mode="close"``);
* added latency (``latency_s``) before anything else is decided;
* a seeded fraction ``error_rate`` of ``500``/``502``/``503`` answers (nothing stored), and a
  fraction ``lost_ack_rate`` stored first and then answered ``500`` (a lost acknowledgement:
  the retry must come back as a duplicate);
* a seeded fraction ``throttle_rate`` of ``429`` with ``Retry-After: <retry_after_s>``;
* ``401`` without the right bearer token (when one is configured);
* ``400`` without the idempotency header or with a body that is not a JSON object;
* ``422`` naming the required fields that are missing or empty, or for a MaHoSo listed in
  ``reject_dossiers``;
* ``200 {"result": "duplicate"}`` for an idempotency key already stored with the same body
  (stored once only), ``409`` for a key reused with another body;
* ``201 {"result": "stored"}`` otherwise, recording the arrival order per MaHoSo.

Admin endpoints (no token; bind to localhost): ``GET /admin/received`` (everything stored,
the order per MaHoSo, counters), ``GET|POST /admin/faults`` (read or change the faults,
e.g. ``{"down_for_s": 10, "error_rate": 0.1}``), ``POST /admin/reset``, ``GET /health``.

Bodies are never logged (they carry the applicant's name); the log says path, status, key.
Run ``python -m connectors.portal.emulator --port 8089``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from connectors.portal.contract import PortalContract, load_contract

__all__ = ["Faults", "PortalEmulator", "build_parser", "main"]

log = logging.getLogger("connectors.portal.emulator")

DownMode = Literal["503", "close"]
_MAX_BODY = 1 << 20


@dataclass
class Faults:
    """What goes wrong, and how often. Fractions are drawn from one seeded generator."""

    latency_s: float = 0.0
    error_rate: float = 0.0
    lost_ack_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: float = 1.0
    down_mode: DownMode = "503"
    down_until: float = 0.0  # time.monotonic() deadline; 0 = up
    reject_dossiers: set[str] = field(default_factory=set)
    reject_status: int = 422

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("down_until")
        data["down_for_s"] = max(0.0, self.down_until - time.monotonic())
        data["reject_dossiers"] = sorted(self.reject_dossiers)
        return data

    def update(self, changes: dict[str, Any]) -> None:
        for name in ("latency_s", "error_rate", "lost_ack_rate", "throttle_rate", "retry_after_s"):
            if name in changes:
                value = float(changes[name])
                if value < 0 or (name.endswith("_rate") and value > 1):
                    raise ValueError(f"{name} out of range")
                setattr(self, name, value)
        if "down_mode" in changes:
            if changes["down_mode"] not in ("503", "close"):
                raise ValueError("down_mode is 503 or close")
            self.down_mode = changes["down_mode"]
        if "down_for_s" in changes:
            seconds = float(changes["down_for_s"])
            self.down_until = time.monotonic() + seconds if seconds > 0 else 0.0
        if "reject_dossiers" in changes:
            self.reject_dossiers = {str(code) for code in changes["reject_dossiers"]}
        if "reject_status" in changes:
            status = int(changes["reject_status"])
            if not 400 <= status < 500:
                raise ValueError("reject_status must be a 4xx code")
            self.reject_status = status


@dataclass
class _Stored:
    key: str
    body: dict[str, Any]
    arrived_at: float  # time.time()
    seq: int


class _State:
    """Everything the emulator received; one lock, since handlers run in threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[str, _Stored] = {}
        self.by_dossier: dict[str, list[str]] = defaultdict(list)
        self.duplicates = 0
        self.answers: Counter[int] = Counter()
        self.requests = 0

    def reset(self) -> None:
        with self.lock:
            self.items.clear()
            self.by_dossier.clear()
            self.duplicates = 0
            self.answers.clear()
            self.requests = 0


class PortalEmulator:
    """The server. ``start()`` serves in a background thread; ``stop()`` ends it. State and
    faults survive a stop/start on the same port (a portal outage with the data kept)."""

    def __init__(
        self,
        contract: PortalContract | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        latency_s: float = 0.0,
        error_rate: float = 0.0,
        lost_ack_rate: float = 0.0,
        throttle_rate: float = 0.0,
        retry_after_s: float = 1.0,
        down_for_s: float = 0.0,
        down_mode: DownMode = "503",
        reject_dossiers: Iterable[str] = (),
        seed: int | None = 0,
    ) -> None:
        self.contract = contract or PortalContract()
        secret = self.contract.auth.bearer() if token is None else None
        self._token = token if token is not None else (secret.get_secret_value() if secret else "")
        self.host = host
        self.port = port
        self.faults = Faults(
            latency_s=latency_s,
            error_rate=error_rate,
            lost_ack_rate=lost_ack_rate,
            throttle_rate=throttle_rate,
            retry_after_s=retry_after_s,
            down_mode=down_mode,
            reject_dossiers=set(reject_dossiers),
        )
        if down_for_s > 0:
            self.faults.down_until = time.monotonic() + down_for_s
        self.state = _State()
        self._random = random.Random(seed)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> PortalEmulator:
        if self._server is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"emulator": self})
        server = ThreadingHTTPServer((self.host, self.port), handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
            name=f"portal-emulator-{self.port}",
        )  # fmt: skip
        self._thread.start()
        log.info("portal emulator listening on %s%s", self.url, self.contract.endpoint_path)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> PortalEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- decisions ----------------------------------------------------------------------------

    def draw(self) -> float:
        with self.state.lock:
            return self._random.random()

    def received(self) -> dict[str, Any]:
        """What ``GET /admin/received`` answers."""
        with self.state.lock:
            items = sorted(self.state.items.values(), key=lambda s: s.seq)
            return {
                "count": len(items),
                "duplicates": self.state.duplicates,
                "requests": self.state.requests,
                "answers": {str(k): v for k, v in sorted(self.state.answers.items())},
                "items": [
                    {"key": s.key, "body": s.body, "arrived_at": s.arrived_at, "seq": s.seq}
                    for s in items
                ],
                "by_dossier": {code: list(keys) for code, keys in self.state.by_dossier.items()},
            }

    def missing_fields(self, body: dict[str, Any]) -> list[str]:
        return [
            name
            for name in self.contract.required_fields
            if body.get(name) is None or body.get(name) == ""
        ]

    def store(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        code_field = self.contract.fields.dossier_code
        with self.state.lock:
            existing = self.state.items.get(key)
            if existing is not None:
                if existing.body != body:
                    return 409, {"error": "idempotency key reused with a different body"}
                self.state.duplicates += 1
                return 200, {"result": "duplicate", "key": key}
            seq = len(self.state.items)
            self.state.items[key] = _Stored(key, body, time.time(), seq)
            self.state.by_dossier[str(body.get(code_field))].append(key)
            return 201, {"result": "stored", "key": key}


class _Handler(BaseHTTPRequestHandler):
    emulator: PortalEmulator
    protocol_version = "HTTP/1.1"
    server_version = "PortalEmulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the base class would print the request line; we log without bodies ourselves

    # --- plumbing -----------------------------------------------------------------------------

    def _send(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        if not self.path.startswith("/admin"):
            with self.emulator.state.lock:
                self.emulator.state.answers[status] += 1

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("body too large")
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _drop(self) -> None:
        """Close the connection without an answer (a portal that is down mid-request)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(2)

    # --- routes -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        emulator = self.emulator
        if self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/admin/received":
            self._send(200, emulator.received())
        elif self.path == "/admin/faults":
            with emulator.state.lock:
                self._send(200, emulator.faults.describe())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        emulator = self.emulator
        if self.path == "/admin/faults":
            try:
                changes = self._read_json() or {}
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                with emulator.state.lock:
                    emulator.faults.update(changes)
                    described = emulator.faults.describe()
            except (ValueError, TypeError) as exc:
                self._send(400, {"error": str(exc)})
                return
            log.info("faults now %s", described)
            self._send(200, described)
        elif self.path == "/admin/reset":
            emulator.state.reset()
            self._send(200, {"result": "reset"})
        elif self.path == emulator.contract.endpoint_path:
            self._status_sync()
        else:
            self._send(404, {"error": "not found"})

    def _status_sync(self) -> None:
        emulator = self.emulator
        contract = emulator.contract
        faults = emulator.faults
        with emulator.state.lock:
            emulator.state.requests += 1
            down = time.monotonic() < faults.down_until
            down_mode = faults.down_mode
            latency = faults.latency_s
        if down and down_mode == "close":
            self._drop()
            return
        try:  # read the body first, so the kept-alive connection stays in step
            body = self._read_json()
        except (ValueError, UnicodeDecodeError):
            self.close_connection = True  # an oversized body may be left unread
            self._send(400, {"error": "body is not JSON"})
            return
        if down:
            self._send(503, {"error": "portal down for maintenance"}, {"Retry-After": "1"})
            return
        if latency > 0:
            time.sleep(latency)
        key = self.headers.get(contract.idempotency_header, "").strip()
        if emulator.draw() < faults.error_rate:
            status = (500, 502, 503)[int(emulator.draw() * 3)]
            self._send(status, {"error": "injected failure"})
            return
        if emulator.draw() < faults.throttle_rate:
            self._send(
                429, {"error": "too many requests"}, {"Retry-After": f"{faults.retry_after_s:g}"}
            )
            return
        if emulator._token:
            expected = f"{contract.auth.scheme} {emulator._token}"
            if self.headers.get("Authorization", "") != expected:
                self._send(401, {"error": "missing or wrong bearer token"})
                return
        if not key:
            self._send(400, {"error": f"header {contract.idempotency_header} is required"})
            return
        if not isinstance(body, dict):
            self._send(400, {"error": "body must be a JSON object"})
            return
        missing = emulator.missing_fields(body)
        if missing:
            self._send(422, {"error": "missing required fields", "fields": missing})
            return
        dossier = str(body.get(contract.fields.dossier_code))
        if dossier in faults.reject_dossiers:
            self._send(
                faults.reject_status,
                {"error": "dossier rejected", "fields": [contract.fields.dossier_code]},
            )
            return
        status, answer = emulator.store(key, body)
        log.info("POST %s key=%s -> %s %s", self.path, key, status, answer.get("result", ""))
        if status == 201 and emulator.draw() < faults.lost_ack_rate:
            self._send(500, {"error": "injected failure after storing"})
            return
        self._send(status, answer)


# --- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.portal.emulator",
        description=(
            "Serve an emulated national public service portal (status sync) over HTTP, with "
            "bearer-token auth, required-field checks, idempotency-key deduplication and "
            "fault injection. Admin endpoints: GET /admin/received, GET|POST /admin/faults, "
            "POST /admin/reset."
        ),
        epilog="The contract (endpoint, headers, field names, token source) comes from "
        "--contract or HUB_PORTAL_* variables; the token from the contract's auth "
        "(default: the PORTAL_TOKEN variable). No token configured: no auth check.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default %(default)s)")
    parser.add_argument("--port", type=int, default=8089, help="port (default %(default)s)")
    parser.add_argument("--contract", help="portal contract file (.json or .toml)")
    parser.add_argument("--latency", type=float, default=0.0, help="added seconds per request")
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="fraction answered 5xx (0..1)"
    )
    parser.add_argument(
        "--lost-ack-rate",
        type=float,
        default=0.0,
        help="fraction stored and then answered 500 (0..1)",
    )
    parser.add_argument(
        "--throttle-rate", type=float, default=0.0, help="fraction answered 429 (0..1)"
    )
    parser.add_argument(
        "--retry-after", type=float, default=1.0, help="Retry-After of 429 answers, seconds"
    )
    parser.add_argument(
        "--down-for", type=float, default=0.0, help="start down for this many seconds"
    )
    parser.add_argument(
        "--down-mode", choices=["503", "close"], default="503", help="how downtime looks"
    )
    parser.add_argument(
        "--reject", action="append", default=[], metavar="MAHOSO",
        help="answer 422 for this dossier code (repeatable)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault generator")
    parser.add_argument("-l", "--log-level", default="info", help="log level (default %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        contract = load_contract(args.contract)
        emulator = PortalEmulator(
            contract,
            host=args.host,
            port=args.port,
            latency_s=args.latency,
            error_rate=args.error_rate,
            lost_ack_rate=args.lost_ack_rate,
            throttle_rate=args.throttle_rate,
            retry_after_s=args.retry_after,
            down_for_s=args.down_for,
            down_mode=args.down_mode,
            reject_dossiers=args.reject,
            seed=args.seed,
        ).start()
    except (OSError, ValueError) as exc:
        print(f"portal-emulator: {exc}", file=sys.stderr)
        return 1
    stopping = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
    try:
        stopping.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
