"""The engine's parts that need no broker: the stores' all-or-nothing write, the meta's
round trip, the due index, the partitioner and the directory's rule."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import cast

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException
from pydantic import ValidationError

from hub.domain.lifecycle import DossierState
from hub.engine.directory import Claim, Claims, partition_for
from hub.engine.loop import (
    CATCHUP_BATCHES,
    DUE_SLACK,
    CheckpointLoop,
    Task,
    checkpoint_due,
    fetch_batch,
    unwrapped,
    worker_id,
)
from hub.engine.store import META_KEY, BlockCache, Meta, RocksStore, open_store
from hub.settings import HubSettings, settings_problems
from hub.worker.processor import Processor


@pytest.mark.parametrize("kind", ["rocksdb", "memory"])
def test_a_store_writes_states_and_meta_together_and_deletes_on_none(
    kind: str, tmp_path: Path
) -> None:
    store = open_store(kind, tmp_path, 3)
    assert store.meta() == Meta()
    meta = Meta({"dossier.events": 42}, 7, {"dossier.events:3": {"seq": 1, "hash": "ab"}})
    store.write({b"A": b"1", b"B": b"2"}, meta)
    assert (store.get(b"A"), store.get(b"B")) == (b"1", b"2")
    assert store.meta() == meta
    store.write({b"A": None}, Meta({"dossier.events": 43}, 8))
    assert store.get(b"A") is None
    assert sorted(store.states()) == [(b"B", b"2")]  # the meta is not a state
    assert store.meta().inputs == {"dossier.events": 43}
    store.close()


def test_a_rocksdb_store_keeps_its_checkpoint_across_a_reopen(tmp_path: Path) -> None:
    store = open_store("rocksdb", tmp_path, 0)
    store.write({b"X": b"state"}, Meta({"feedback.events": 5}, 11))
    store.close()
    again = open_store("rocksdb", tmp_path, 0)
    assert again.get(b"X") == b"state"
    assert again.meta() == Meta({"feedback.events": 5}, 11)
    again.close()


def test_a_workers_stores_share_one_bounded_block_cache_that_whole_scans_leave_alone(
    tmp_path: Path,
) -> None:
    megabyte = 1024 * 1024
    cache = BlockCache(1)
    stores = [cast(RocksStore, open_store("rocksdb", tmp_path, p, cache=cache)) for p in (0, 1)]
    keys = [f"D-{i:05}".encode() for i in range(3000)]
    for number, store in enumerate(stores):
        store.write({key: bytes([number]) * 1000 for key in keys}, Meta())  # ~3 MB each
        store._db.flush()  # into table files, read through the cache from now on
    for store in stores:
        assert sum(1 for _ in store.states()) == len(keys)
    assert cache.usage() < megabyte // 4  # a rebuild's scan keeps no data blocks
    for number, store in enumerate(stores):
        assert all(store.get(key) == bytes([number]) * 1000 for key in keys)
    # lookups do fill it, both stores' blocks in the one cache, up to its capacity
    assert megabyte // 2 < cache.usage() <= megabyte * 1.1
    for store in stores:
        store.close()


def test_the_meta_key_is_no_dossier_code() -> None:
    # dossier codes are letters, digits, dots and dashes (hub.contract.inbound)
    assert META_KEY.startswith(b"\x00")


def test_the_due_index_hands_out_each_dossier_once_when_its_date_comes(tmp_path: Path) -> None:
    task = Task(0, open_store("memory", tmp_path, 0), Meta())
    state = cast(DossierState, object())  # the index only needs "a state exists"
    task.index_due(b"A", state, date(2026, 3, 2))
    task.index_due(b"B", state, date(2026, 3, 5))
    task.index_due(b"A", state, date(2026, 3, 4))  # moved: the old entry is void
    assert task.due_keys(date(2026, 3, 3)) == []
    assert task.due_keys(date(2026, 3, 4)) == [b"A"]
    assert task.due_keys(date(2026, 3, 4)) == []  # once
    task.index_due(b"B", state, None)  # nothing left to alert
    assert task.due_keys(date(2026, 12, 31)) == []


def test_the_due_index_does_not_keep_what_moved_or_finished(tmp_path: Path) -> None:
    task = Task(0, open_store("memory", tmp_path, 0), Meta())
    state = cast(DossierState, object())
    first = date(2026, 3, 2)
    for n in range(20_000):  # dossiers whose next alert date moves a few times, then finish
        key = f"D-{n}".encode()
        for step in range(3):
            task.index_due(key, state, first + timedelta(days=step + n % 5))
        if n % 4:
            task.index_due(key, state, None)
    live = len(task.due_at)
    assert live == 5_000
    assert len(task.due) <= 2 * live + DUE_SLACK + 1  # void entries are dropped, not kept
    # and each open dossier is still handed out once, on its date
    due = task.due_keys(date(2026, 12, 31))
    assert sorted(due) == sorted(
        task_key for task_key in (f"D-{n}".encode() for n in range(0, 20_000, 4))
    )


#: murmur2 of Kafka's Java client (its UtilsTest), as signed 32-bit values
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java_hash"), JAVA_MURMUR2.items())
def test_keys_land_where_the_java_client_puts_them(key: bytes, java_hash: int) -> None:
    # the Java DefaultPartitioner: toPositive(murmur2(key)) % partitions
    for partitions in (1, 3, 6, 100):
        assert partition_for(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions


def test_the_newest_claim_of_a_partition_names_its_owner() -> None:
    claims = Claims()
    claims.update("w1", Claim("http://a", frozenset({0, 1, 2}), at=10.0))
    claims.update("w2", Claim("http://b", frozenset({2}), at=20.0))  # took over partition 2
    assert (claims.owner(0), claims.owner(2), claims.owner(5)) == ("http://a", "http://b", None)
    claims.update("w2", None)  # tombstone: w2 gone
    assert claims.owner(2) == "http://a"


def test_standbys_are_the_next_workers_partitions() -> None:
    claims = Claims()
    claims.update("w1", Claim("http://a", frozenset({0, 1}), at=1.0))
    claims.update("w2", Claim("http://b", frozenset({2, 3}), at=1.0))
    claims.update("w3", Claim("http://c", frozenset({4, 5}), at=1.0))
    assert claims.standbys("w1", frozenset({0, 1}), 1) == {2, 3}
    assert claims.standbys("w3", frozenset({4, 5}), 1) == {0, 1}  # wraps around
    assert claims.standbys("w1", frozenset({0, 1}), 2) == {2, 3, 4, 5}
    assert claims.standbys("w1", frozenset({0, 1}), 0) == set()


def test_a_worker_keeps_its_id_on_its_disk(tmp_path: Path) -> None:
    first = worker_id(HubSettings(data_dir=tmp_path / "data"))
    # the same transactional id after a restart
    assert worker_id(HubSettings(data_dir=tmp_path / "data")) == first
    assert worker_id(HubSettings(data_dir=tmp_path / "other")) != first


def test_a_named_worker_is_its_name_on_any_disk_and_a_static_member(tmp_path: Path) -> None:
    """A restart on an empty disk under the same HUB_WORKER_NAME is the same member and the
    same transactional producer: it takes its partitions back without waiting out the old
    session, and fences what the old one left open."""
    named = HubSettings(data_dir=tmp_path / "empty", worker_name="hub-worker-1", store="memory")
    assert worker_id(named) == "hub-worker-1"
    assert not (tmp_path / "empty" / "worker-id").exists()
    engine = CheckpointLoop(named, cast(Processor, object()))
    consumer = engine._consumer_config
    assert consumer["group.instance.id"] == "hub-worker-1"
    assert engine._producer_config["transactional.id"] == f"{named.app_id}-hub-worker-1"
    unnamed = CheckpointLoop(
        HubSettings(data_dir=tmp_path / "data", store="memory"), cast(Processor, object())
    )
    assert "group.instance.id" not in unnamed._consumer_config  # a dynamic member
    disk_id = worker_id(HubSettings(data_dir=tmp_path / "data"))
    assert unnamed._producer_config["transactional.id"] == f"{named.app_id}-{disk_id}"


@pytest.mark.parametrize("name", ["has space", "a/b", "x" * 65, "worker:1"])
def test_a_worker_name_kafka_cannot_take_is_refused_naming_the_variable(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_WORKER_NAME", name)
    with pytest.raises(ValidationError) as caught:
        HubSettings()
    problem = settings_problems(caught.value)
    assert problem.startswith("HUB_WORKER_NAME: ")
    assert name not in problem  # the rule, not the value


def test_an_empty_worker_name_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_WORKER_NAME", "")
    assert HubSettings().worker_name is None


def test_a_fatal_error_hidden_in_a_systemerror_reaches_the_engine_as_itself() -> None:
    """confluent-kafka reports a fenced producer met inside flush as SystemError caused by
    the KafkaException; the engine must see the KafkaException to start over (a new producer
    from the last checkpoint) instead of crashing the worker."""
    fenced = KafkaException(KafkaError(KafkaError._FENCED, "fenced by newer producer", fatal=True))

    def flush() -> int:
        try:
            raise fenced
        except KafkaException as exc:
            raise SystemError(
                "<function Task.delivered> returned a result with an exception set"
            ) from exc

    with pytest.raises(KafkaException) as raised:
        unwrapped(flush)
    assert raised.value is fenced
    assert raised.value.args[0].fatal()

    def other() -> int:
        raise SystemError("something else")

    with pytest.raises(SystemError, match="something else"):
        unwrapped(other)
    assert unwrapped(lambda: 7) == 7


class _Queue:
    """A consumer's fetched records: ``consume`` with a timeout would wait it out whole
    (librdkafka does unless the batch fills), so any such call is recorded as a wait."""

    def __init__(self, records: list[str]) -> None:
        self.records = records
        self.waited: list[float] = []

    def consume(self, num_messages: int, timeout: float) -> list[str]:
        if timeout:
            self.waited.append(timeout)
        taken, self.records = self.records[:num_messages], self.records[num_messages:]
        return taken

    def poll(self, timeout: float) -> str | None:
        if not self.records:
            self.waited.append(timeout)
            return None
        return self.records.pop(0)


def test_a_fetch_returns_what_is_there_without_waiting_for_a_full_batch() -> None:
    queue = _Queue(["a", "b", "c"])
    consumer = cast(Consumer, queue)
    assert [*map(str, fetch_batch(consumer, 2, 1.0))] == ["a", "b"]
    assert [*map(str, fetch_batch(consumer, 2, 1.0))] == ["c"]
    assert queue.waited == [], "a batch consume with a timeout waits it out even at the end"


def test_a_fetch_waits_only_when_nothing_is_there() -> None:
    queue = _Queue([])
    assert fetch_batch(cast(Consumer, queue), 2, 0.25) == []
    assert queue.waited == [0.25]


def test_a_checkpoint_ends_at_the_commit_interval_or_a_batch_of_live_records() -> None:
    settings = HubSettings(commit_interval_ms=30, catchup_commit_interval_ms=250, batch_max=100)
    assert not checkpoint_due(settings, 0.029, 99, backlog=False)
    assert checkpoint_due(settings, 0.030, 1, backlog=False)
    assert checkpoint_due(settings, 0.001, 100, backlog=False)


def test_under_a_backlog_a_checkpoint_holds_longer_and_more_records() -> None:
    settings = HubSettings(commit_interval_ms=30, catchup_commit_interval_ms=250, batch_max=100)
    assert not checkpoint_due(settings, 0.2, 499, backlog=True)
    assert checkpoint_due(settings, 0.25, 1, backlog=True)
    assert checkpoint_due(settings, 0.01, 100 * CATCHUP_BATCHES, backlog=True)


def test_catch_up_checkpoints_are_off_by_default() -> None:
    settings = HubSettings(commit_interval_ms=30, batch_max=100)
    assert checkpoint_due(settings, 0.030, 1, backlog=True)
    assert checkpoint_due(settings, 0.001, 100, backlog=True)
