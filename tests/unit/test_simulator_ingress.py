"""The simulator's ingress publisher against a tiny local HTTP server: each agency's own
credentials, per-dossier order, 429/503 retried, every other refusal counted, never dropped."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connectors.ingress.credentials import CredentialStore, generate_credentials, write_credentials
from connectors.ingress.credentials import main as credentials_main
from connectors.scenarios import VN
from connectors.simulator import MixConfig, main, procedure_lookup, simulate
from connectors.simulator_ingress import IngressPublisher, SignedCredentials, load_signing
from hub.reference import ReferenceData, load_reference

NOW = datetime(2026, 6, 17, 10, 30, tzinfo=VN)


@dataclass
class Received:
    event: dict[str, Any]
    path: str
    agency: str | None  # the agency the credentials proved, None if they proved nothing


@dataclass
class Stub:
    """Answers each POST with ``script(event, attempt)`` -> (status, headers, body)."""

    store: CredentialStore
    script: Callable[[dict[str, Any], int], tuple[int, dict[str, str], dict[str, Any]]]
    received: list[Received] = field(default_factory=list)
    attempts: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


def accept(event: dict[str, Any], attempt: int) -> tuple[int, dict[str, str], dict[str, Any]]:
    return 202, {}, {"accepted": 1, "event_ids": [event["event_id"]]}


@pytest.fixture(scope="module")
def reference() -> ReferenceData:
    return load_reference()


@pytest.fixture
def credentials_file(tmp_path: Path, reference: ReferenceData) -> Path:
    agencies = [a.code for a in reference.agencies.active(NOW.date())]
    return write_credentials(generate_credentials(agencies), tmp_path / "credentials.json")


@pytest.fixture
def stub(credentials_file: Path) -> Iterator[Stub]:
    state = Stub(CredentialStore(credentials_file), accept)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the publisher's connections expect
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            event = json.loads(body)
            if "X-Signature" in self.headers:
                found: Any = state.store.by_signature(
                    self.headers["X-Key-Id"],
                    self.headers["X-Timestamp"],
                    self.headers["X-Signature"],
                    body,
                )
            else:
                found = state.store.by_api_key(self.headers.get("X-Api-Key", ""))
            agency = getattr(found, "agency_code", None)
            with state.lock:
                attempt = state.attempts[event["event_id"]]
                state.attempts[event["event_id"]] += 1
                status, headers, answer = state.script(event, attempt)
                if status == 202:
                    state.received.append(Received(event, self.path, agency))
            data = json.dumps(answer).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def publisher_for(
    stub: Stub, reference: ReferenceData, credentials: SignedCredentials, **options: Any
) -> IngressPublisher:
    return IngressPublisher(
        stub.url,
        credentials,
        procedure_effective_from=procedure_lookup(reference),
        **options,
    )


def run(
    stub: Stub, reference: ReferenceData, credentials_file: Path, dossiers: int, **options: Any
) -> tuple[Any, IngressPublisher]:
    publisher = publisher_for(stub, reference, load_signing(credentials_file), **options)
    try:
        report = simulate(
            publisher,
            9,
            dossiers,
            100_000.0,
            now=NOW,
            reference=reference,
            mix=MixConfig(transfer_share=0.5, rating_share=0.8),
        )
    finally:
        publisher.close()
    return report, publisher


def test_each_event_goes_with_the_credentials_of_the_agency_holding_the_dossier_in_order(
    stub: Stub, reference: ReferenceData, credentials_file: Path
) -> None:
    report, publisher = run(stub, reference, credentials_file, 40, workers=4)
    assert report.send_errors == 0 and report.problems == 0
    assert len(stub.received) == report.events == len(publisher.stats.acknowledged)
    by_dossier: defaultdict[str, list[Received]] = defaultdict(list)
    for got in stub.received:
        # the key presented is the key of the agency the event is written for
        assert got.agency == got.event["agency_code"], got.event["event_type"]
        feedback = got.event["event_type"] in ("ServiceRated", "ComplaintFiled")
        assert got.path == ("/v1/feedback-events" if feedback else "/v1/dossier-events")
        by_dossier[got.event["dossier_code"]].append(got)
    transferred = 0
    for code, events in by_dossier.items():
        times = [datetime.fromisoformat(g.event["occurred_at"]) for g in events]
        assert times == sorted(times), f"{code} arrived out of order"
        types = [g.event["event_type"] for g in events]
        if "DossierTransferred" in types:
            transferred += 1
            at = types.index("DossierTransferred")
            transfer = events[at].event["payload"]
            # the sender writes the transfer; the receiving agency writes every later event
            assert events[at].agency == transfer["from_agency_code"]
            assert {g.agency for g in events[at + 1 :]} <= {transfer["to_agency_code"]}
    assert transferred == report.transfers > 0


def test_hmac_credentials_are_signed(stub: Stub, reference: ReferenceData, tmp_path: Path) -> None:
    agencies = [a.code for a in reference.agencies.active(NOW.date())]
    hmac_file = write_credentials(
        generate_credentials(agencies, method="hmac"), tmp_path / "hmac.json"
    )
    stub.store = CredentialStore(hmac_file)
    report, _ = run(stub, reference, hmac_file, 5)
    assert report.send_errors == 0
    assert stub.received and all(g.agency == g.event["agency_code"] for g in stub.received)


def test_429_waits_retry_after_and_503_backs_off_capped_then_202(
    stub: Stub, reference: ReferenceData, credentials_file: Path
) -> None:
    def flaky(event: dict[str, Any], attempt: int) -> tuple[int, dict[str, str], dict[str, Any]]:
        if attempt == 0:
            return 429, {"Retry-After": "2"}, {"rule": "max_in_flight"}
        if attempt in (1, 2):
            return 503, {"Retry-After": "5"}, {"rule": "broker_unavailable"}
        return accept(event, attempt)

    stub.script = flaky
    slept: list[float] = []
    report, publisher = run(
        stub, reference, credentials_file, 1, workers=1, max_backoff_s=3.0, sleep=slept.append
    )
    assert report.send_errors == 0
    assert len(stub.received) == report.events > 0  # each acknowledged exactly once
    # per event: Retry-After of the 429, then 503's Retry-After capped by max_backoff_s
    assert slept == [2.0, 3.0, 3.0] * report.events
    assert publisher.stats.throttled == report.events
    assert publisher.stats.retried == 2 * report.events
    assert publisher.stats.statuses[202] == report.events


def test_a_503_that_lasts_is_given_up_and_counted(
    stub: Stub, reference: ReferenceData, credentials_file: Path
) -> None:
    stub.script = lambda event, attempt: (503, {}, {"rule": "broker_unavailable"})
    report, publisher = run(
        stub, reference, credentials_file, 1,
        workers=1, backoff_s=0.01, max_backoff_s=0.02, give_up_after_s=0.1,
    )  # fmt: skip
    assert report.send_errors == report.events == len(publisher.stats.rejected) > 0
    assert "still failing" in report.send_error_samples[0]
    assert "broker_unavailable" in report.send_error_samples[0]


def test_other_refusals_are_send_errors_with_their_field_problems(
    stub: Stub, reference: ReferenceData, credentials_file: Path
) -> None:
    problem = {"index": 0, "path": "payload.score", "rule": "range", "message": "1 to 5"}

    def strict(event: dict[str, Any], attempt: int) -> tuple[int, dict[str, str], dict[str, Any]]:
        if event["event_type"] == "ServiceRated":
            return 422, {}, {"rule": "validation", "message": "1 problem(s)", "problems": [problem]}
        return accept(event, attempt)

    stub.script = strict
    report, publisher = run(stub, reference, credentials_file, 20)
    assert report.ratings > 0
    assert report.send_errors == report.ratings == len(publisher.stats.rejected)
    assert len(stub.received) == report.events - report.ratings
    sample = report.send_error_samples[0]
    assert "ServiceRated: 422 validation" in sample and "payload.score: range" in sample
    assert "validation problems 0, send errors" in report.summary()


def test_an_agency_without_credentials_is_a_send_error_not_a_silent_drop(
    stub: Stub, reference: ReferenceData, tmp_path: Path
) -> None:
    empty = SignedCredentials([])
    publisher = publisher_for(stub, reference, empty)
    try:
        report = simulate(publisher, 9, 3, 100_000.0, now=NOW, reference=reference)
    finally:
        publisher.close()
    assert report.send_errors == report.events > 0
    assert "no credentials for agency" in report.send_error_samples[0]
    assert stub.received == []


def test_generated_credentials_are_what_the_ingress_reads(
    credentials_file: Path, reference: ReferenceData
) -> None:
    assert credentials_file.stat().st_mode & 0o777 == 0o600  # secrets in clear
    document = json.loads(credentials_file.read_text())
    entry = document["credentials"][0]
    assert set(entry) == {"agency_code", "key_id", "api_key"}
    store = CredentialStore(credentials_file)
    caller = store.by_api_key(entry["api_key"])
    assert caller is not None and caller.agency_code == entry["agency_code"]
    signing = load_signing(credentials_file, reference.agencies)
    assert len(signing.agencies) == len(reference.agencies.active(NOW.date()))


def test_a_file_of_hashes_only_is_refused_with_the_way_out(tmp_path: Path) -> None:
    hashes = tmp_path / "hashes.json"
    hashes.write_text(
        json.dumps(
            {"credentials": [{"agency_code": "000.00.12.H40", "key_id": "k", "api_key_sha256":
                              "0" * 64}]}
        )
    )  # fmt: skip
    with pytest.raises(ValueError, match="generate --out"):
        load_signing(hashes)


def test_command_line_via_ingress(
    stub: Stub, credentials_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--via", "ingress", "--ingress-url", stub.url, "--dossiers", "3", "--rate", "1000"]
    assert main([*argv, "--credentials", str(credentials_file)]) == 0
    out = capsys.readouterr().out
    assert f"sending to the HTTP ingress at {stub.url}" in out
    assert f"ingress {stub.url}: {len(stub.received)} acknowledged (202), 0 rejected" in out
    assert main(argv) == 2  # no credentials: said so, nothing sent
    assert "--via ingress needs --credentials" in capsys.readouterr().err


def test_generate_command_writes_a_file_the_simulator_and_ingress_read(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "creds.json"
    agencies = ["000.00.12.H40", "015.04.00.H40"]
    argv = ["generate", "--out", str(out), "--method", "hmac"]
    assert credentials_main([*argv, *(f"--agency={a}" for a in agencies)]) == 0
    signing = load_signing(out)
    assert signing.agencies == set(agencies)
    assert CredentialStore(out).size == 2
    with pytest.raises(SystemExit):
        credentials_main(["generate"])  # where to? said, not guessed
