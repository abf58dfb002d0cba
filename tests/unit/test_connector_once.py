"""``hub connector run --once``: a polling source stops by itself once drained and exits 0;
anything else is refused (it would never be drained). Kafka is faked
(``tests/fixtures/fake_kafka.py``); the command line and the runtime are the real ones."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from connectors.scenarios import VN, dossier_code, dossier_life
from hub.cli import main as hub_main
from tests.fixtures.fake_kafka import FakeKafka, fake_kafka

__all__ = ["fake_kafka"]  # the fixture, used by name


@pytest.fixture(autouse=True)
def _signals() -> Iterator[None]:
    # the command installs its SIGINT/SIGTERM handlers; give pytest its own back
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_once_drains_a_file_drop_and_exits_0(tmp_path: Path, fake_kafka: FakeKafka) -> None:
    start = datetime.now(VN) - timedelta(days=1)
    code = dossier_code("000.00.03.H40", start, 900)
    events = dossier_life(code, "000.00.03.H40", "2.000488", start, rating=None)[:3]
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.json").write_text(json.dumps(events[:2]))
    (drop / "b.json").write_text(json.dumps(events[2:]))
    config = tmp_path / "filedrop.json"
    config.write_text(
        json.dumps(
            {
                "name": "drop",
                "connector.class": "filedrop",
                "bootstrap.servers": "fake-broker:9092",
                "poll.interval.ms": 10,
                "settings": {"directory": str(drop), "settle_s": 0.05},
            }
        )
    )
    assert hub_main(["connector", "run", "--config", str(config), "--once"]) == 0
    # returned only once both files were published, their offsets stored, and put away
    assert sorted(fake_kafka.event_ids) == sorted(e["event_id"] for e in events)
    assert len(fake_kafka.stored("drop")) == 2
    assert sorted(p.name for p in (drop / "processed").iterdir()) == ["a.json", "b.json"]


def test_once_is_refused_for_a_connector_that_is_never_drained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ingress.json"
    config.write_text(
        json.dumps(
            {
                "name": "ingress",
                "connector.class": "http-ingress",
                "settings": {"credentials_file": str(tmp_path / "c.json")},
            }
        )
    )
    assert hub_main(["connector", "run", "--config", str(config), "--once"]) == 2
    assert "--once is for sources that poll" in capsys.readouterr().err
