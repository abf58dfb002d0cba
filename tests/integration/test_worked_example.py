"""The connector guide's worked example (``connectors/examples/agency_registry``), shipped the
way an agency team ships theirs: pip-installed into a directory of its own, then found by
``hub connector`` through its entry point alone, validated, run against the broker until its
rows are dossier events, stopped with SIGTERM, and put through the contract suite.

Every subprocess gets ``PYTHONPATH=<install dir>:<repo>``: the example's sources are never
on the path, so whatever runs is what pip installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.version import Version

from connectors.sdk.offsets import OffsetStore
from hub.contract.inbound import VN_TZ
from hub.contract.registry import SchemaRegistryClient
from hub.contract.serde import AvroDeserializer
from hub.dlq import DeadLetter
from hub.stack.tools import free_port
from tests.fixtures.stack import Broker
from tests.fixtures.topics import read_topic

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "connectors" / "examples" / "agency_registry"
CONFIG = EXAMPLE / "commune-registry.toml"
NAME = "anh-son-registry"  # the config's name
AGENCY = "005.01.00.H40"  # the config's agency_code
APPLICANT = "Hồ Thị Thanh Xuân"  # personal data: must never reach the log
COUNTERS = (
    f'hub_connector_records_total{{connector="{NAME}",outcome="published"}} 3.0',
    f'hub_connector_records_total{{connector="{NAME}",outcome="dead_lettered"}} 1.0',
)


def offline_build_possible() -> bool:
    """setuptools 70.1 and later build wheels on their own; then pip needs no index."""
    try:
        return Version(version("setuptools")) >= Version("70.1")
    except PackageNotFoundError:
        return False


def hub_env(target: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SCHEMA_", "HUB_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(target), str(ROOT)]),
        PYTHONDONTWRITEBYTECODE="1",  # nothing written next to the example's sources
        **extra,
    )
    return env


def hub(target: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", "connector", *args],
        cwd=ROOT,
        env=hub_env(target, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example pip-installed (no dependencies) into a directory of its own. Built from a
    copy: setuptools leaves build/ and *.egg-info next to the sources it builds."""
    work = tmp_path_factory.mktemp("worked-example")
    source, target = work / "src", work / "site"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target)]
    if offline_build_possible():
        # the environment's setuptools builds it: no index, no network
        command += ["--no-build-isolation", "--no-index"]
    # else pip fetches setuptools>=70.1 for an isolated build, as it does by default
    done = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "commune_registry" / "connector.py").is_file()
    return target


def test_hub_connector_list_finds_the_installed_example_by_its_entry_point(
    installed: Path, tmp_path: Path
) -> None:
    listed = hub(installed, "list")
    assert listed.returncode == 0, listed.stderr
    [line] = [x for x in listed.stdout.splitlines() if x.startswith("commune-registry ")]
    assert line.split()[1:3] == ["source", "commune_registry.connector:CommuneRegistrySource"]
    assert "Commune one-stop desk register (SQLite)" in line

    # the entry point comes from the installed package, nowhere else
    without = hub(tmp_path, "list")
    assert without.returncode == 0, without.stderr
    assert "commune-registry" not in without.stdout


def test_hub_connector_validate_accepts_the_example_config(installed: Path, tmp_path: Path) -> None:
    database = str(tmp_path / "so-ho-so.db")
    valid = hub(installed, "validate", "--config", str(CONFIG), COMMUNE_REGISTRY_DB=database)
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.rstrip().endswith(f"{CONFIG}: ok (source commune-registry)")
    described = json.loads(valid.stdout[: valid.stdout.rindex("}") + 1])
    assert described["settings"]["database"] == database  # ${env:COMMUNE_REGISTRY_DB}
    assert described["errors_tolerance"] == "all"

    unset = hub(installed, "validate", "--config", str(CONFIG))
    assert unset.returncode == 1
    assert f"{CONFIG}: settings.database: missing_env" in unset.stderr


# --- on the broker ------------------------------------------------------------------------------


def desk_register(path: Path) -> tuple[dict[str, tuple[str, str]], str]:
    """The desk software's register (``desk-schema.sql``) with two receipts,
    a returned result and a receipt without its procedure code. Returns ``{event id: (event
    type, dossier code)}`` of the three valid rows and the invalid row's id."""
    # the desk writes Vietnam's local time without an offset
    local = (datetime.now(VN_TZ) - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    day = datetime.now(VN_TZ).strftime("%y%m%d")
    ids = [str(uuid.uuid4()) for _ in range(4)]
    codes = [f"{AGENCY}-{day}-{uuid.uuid4().int % 10**6:06d}" for _ in range(3)]
    rows = [
        (ids[0], codes[0], "TIEP_NHAN", local, "1.001193", 1, APPLICANT),
        (ids[1], codes[1], "TIEP_NHAN", local, "1.001193", 2, "Nguyễn Văn An"),
        (ids[2], codes[0], "TRA_KET_QUA", local, None, None, None),
        (ids[3], codes[2], "TIEP_NHAN", local, None, 1, "Trần Thị Bình"),
    ]
    db = sqlite3.connect(path)
    try:
        with db:
            db.executescript((EXAMPLE / "desk-schema.sql").read_text(encoding="utf-8"))
            db.executemany(
                "INSERT INTO nhat_ky_ho_so (ma_giao_dich, ma_ho_so, loai, thoi_diem, ma_thu_tuc,"
                " kenh, nguoi_nop) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    finally:
        db.close()
    valid = {
        ids[0]: ("DossierSubmitted", codes[0]),
        ids[1]: ("DossierSubmitted", codes[1]),
        ids[2]: ("ResultReturned", codes[0]),
    }
    return valid, ids[3]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


@pytest.mark.broker
def test_hub_connector_run_turns_the_register_into_dossier_events_and_stops_on_sigterm(
    broker: Broker, installed: Path, tmp_path: Path
) -> None:
    prefix = f"we{uuid.uuid4().hex[:8]}."
    valid, invalid = desk_register(tmp_path / "so-ho-so.db")
    # the example's config as shipped, only its health port moved to a free one
    health_port = free_port()
    text, moved = re.subn(
        r'^"health\.port" = \d+', f'"health.port" = {health_port}', CONFIG.read_text(), flags=re.M
    )
    assert moved == 1
    config = tmp_path / "commune-registry.toml"
    config.write_text(text, encoding="utf-8")
    env = hub_env(
        installed,
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
        SCHEMA_REGISTRY_URL=broker.registry_url,
        HUB_TOPIC_PREFIX=prefix,
        COMMUNE_REGISTRY_DB=str(tmp_path / "so-ho-so.db"),
    )
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub", "connector", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            events = read_topic(broker.bootstrap, f"{prefix}dossier.events", len(valid), 90)
            dead = read_topic(broker.bootstrap, f"{prefix}dossier.events.dlq", 1, 30, 0)
            # the counters move once the acknowledgements are handled: give them a moment
            base = f"http://127.0.0.1:{health_port}"
            deadline = time.monotonic() + 15
            while not all(c in (metrics := get(f"{base}/metrics")[1]) for c in COUNTERS):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            status, health = get(f"{base}/health")
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log_path.read_text(encoding="utf-8", errors="replace")
    assert code == 0, output

    decode = AvroDeserializer(SchemaRegistryClient(broker.registry_url))
    got = {}
    for message in events:
        event = decode(message.value)
        assert message.key.decode() == event["dossier_code"]
        assert (event["agency_code"], event["source_system"]) == (AGENCY, "mot-cua-xa-anh-son")
        got[str(event["event_id"])] = (event["event_type"], event["dossier_code"])
    assert got == valid, "the three valid rows, each once"

    [letter_record] = dead
    letter = DeadLetter.from_headers(letter_record.headers)
    assert (letter.reason, letter.processor) == ("validation", f"connector:{NAME}")
    assert "payload.procedure_code: missing" in letter.detail
    assert json.loads(letter_record.value)["event_id"] == invalid

    assert status == 200, health
    assert json.loads(health)["last_id"] == 4
    assert all(counter in metrics for counter in COUNTERS), metrics
    # the offsets the next start resumes from: all four rows are done
    stored = OffsetStore(broker.bootstrap, f"{prefix}hub.connect.offsets", NAME).load()
    assert stored == {"nhat_ky_ho_so": {"id": 4}}
    assert APPLICANT not in output  # personal data never logged


@pytest.mark.broker
@pytest.mark.timeout(900)
def test_the_installed_example_passes_its_contract_suite(broker: Broker, installed: Path) -> None:
    """The example's own test module (the contract suite's subclass and its mapping tests),
    run by pytest as its team runs it, on the installed package and this session's broker."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(EXAMPLE / "tests")],
        cwd=ROOT,
        env=hub_env(
            installed,
            KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
            SCHEMA_REGISTRY_URL=broker.registry_url,
        ),
        capture_output=True,
        text=True,
        timeout=840,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    # 7 contract tests for a source (3 shared, 4 source) and the example's 3 mapping tests
    assert re.search(r"\b10 passed\b", output), output[-3000:]
    assert not re.search(r"\b(skipped|xfailed|deselected)\b", output), output[-3000:]
