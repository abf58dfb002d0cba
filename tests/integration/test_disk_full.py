"""A full disk: the worker's data directory on a small filesystem that fills up under load.

The test mounts a tmpfs of a few MiB (as root, as CI runs) for the worker's HUB_DATA_DIR,
publishes dossier events, and fills the filesystem to the last byte with a file of its own
while they flow. The worker must stop processing with one clear log line and a failing
``/ready``, lose nothing, and resume by itself once the file is deleted; then the outbox is
judged against the ledger (lost, duplicated, redelivered, out of order 0), the view and the
counts, and ``hub audit verify`` passes.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from connectors.scenarios import VN
from tests.fixtures.ledger import province_events
from tests.fixtures.stack import Broker
from tests.fixtures.worker import start_worker, wait_for
from tests.integration.test_faults import Load, judge

pytestmark = pytest.mark.broker

DISK_MIB = 24
FULL_LINE = "the disk of HUB_DATA_DIR is full"
BACK_LINE = "disk space is back on HUB_DATA_DIR: processing resumes"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m,mode=0700", "tmpfs", str(where)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.fail(
            f"cannot mount a {DISK_MIB} MiB tmpfs for the full-disk test (it needs root, as CI "
            f"runs): {mounted.stderr.strip()}",
            pytrace=False,
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """A file that takes every free byte of ``disk`` (unbuffered: a write that does not fit
    fails at once, and the next smaller one takes what is left)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            chunk = b"\0" * size
            try:
                while True:
                    os.write(fd, chunk)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


@pytest.mark.timeout(420)
def test_a_full_disk_stops_the_worker_clearly_loses_nothing_and_it_resumes_by_itself(
    broker: Broker, small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"df{tag}.", f"hub-disk-full-{tag}"
    events = province_events(100, datetime.now(VN) - timedelta(hours=8))
    worker = start_worker(
        broker, tmp_path / "w", prefix=prefix, app_id=app_id,
        extra={"HUB_DATA_DIR": str(small_disk / "data")},
    )  # fmt: skip
    try:
        with Load(broker, prefix, events, rate=40) as load:
            load.wait_acknowledged(len(events) // 4, 120)
            filler = fill(small_disk)
            wait_for(lambda: FULL_LINE in worker.log_tail(200_000), 60, "the disk-full line")
            wait_for(lambda: worker.get("/ready", key=None)[0] == 503, 30, "/ready to fail")
            status, metrics = worker.get("/metrics", key="figures")
            assert status == 200 and "hub_disk_full 1.0" in metrics
            stopped_at = load.acknowledged
            time.sleep(8)  # events keep coming; the worker holds, it does not crash
            assert worker.process.poll() is None, f"the worker died:\n{worker.log_tail()}"
            assert worker.get("/ready", key=None)[0] == 503
            filler.unlink()
            wait_for(lambda: BACK_LINE in worker.log_tail(200_000), 60, "the worker to resume")
            wait_for(lambda: worker.get("/ready", key=None)[0] == 200, 60, "/ready again")
            load.wait(240)
        log = worker.log_path.read_text(errors="replace")
        assert log.count(FULL_LINE) == 1, "one line says why, not one per retry"
        assert load.acknowledged > stopped_at
        judge(
            broker, prefix, [worker], load.ledger, faults=1,
            what=f"disk full ({DISK_MIB} MiB tmpfs filled, then freed)", capsys=capsys,
        )  # fmt: skip
        assert worker.get("/metrics", key="figures")[1].count("hub_disk_full 0.0") == 1
    finally:
        worker.stop(kill=True)
        os.sync()
