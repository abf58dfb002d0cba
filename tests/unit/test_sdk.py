"""The connector SDK without Kafka: config, backoff, discovery, offsets codec, ingress rules."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel, SecretStr

from connectors.ingress import CredentialStore, HttpIngress, hash_api_key, sign
from connectors.ingress.openapi import openapi_document
from connectors.ingress.scope import AgencyScope
from connectors.sdk import (
    Backoff,
    ConnectorConfigError,
    SinkConnector,
    SinkRecord,
    SourceConnector,
    SourceRecord,
    UnknownConnectorClassError,
    load_config,
    parse_config,
    retry_call,
)
from connectors.sdk.offsets import OffsetStore, offset_key
from connectors.sdk.registry import installed, resolve
from hub.cli import main as hub_main
from hub.reference import load_reference


class SecretSettings(BaseModel):
    token: SecretStr
    limit: int = 10


class SecretSource(SourceConnector):
    """A source with a secret setting."""

    Settings: ClassVar[type[BaseModel]] = SecretSettings

    def poll(self) -> list[SourceRecord]:
        return []


class NoopSink(SinkConnector):
    """A sink that does nothing."""

    def put(self, record: SinkRecord) -> None:
        return None


CLASS = f"{__name__}:SecretSource"


def test_dotted_kafka_connect_keys_are_aliases() -> None:
    config = parse_config(
        {
            "name": "s1",
            "connector.class": CLASS,
            "tasks.max": 3,
            "errors.tolerance": "all",
            "errors.deadletterqueue.topic.name": "my.dlq",
            "errors.retry.timeout": -1,
            "errors.retry.delay.max.ms": 2000,
            "topic.prefix": "p.",
            "settings": {"token": "abc"},
        }
    )
    assert config.connector_cls is SecretSource
    assert (config.tasks_max, config.errors_tolerance) == (3, "all")
    assert config.dlq_topic("p.dossier.events") == "p.my.dlq"
    assert config.retry_timeout_s is None and config.retry_delay_max_s == 2.0
    assert config.offsets_topic == "p.hub.connect.offsets"


def test_underscore_names_and_default_dlq() -> None:
    config = parse_config(
        {"name": "s2", "connector_class": CLASS, "tasks_max": 1, "settings": {"token": "abc"}}
    )
    assert config.dlq_topic(config.output_topic) == "dossier.events.dlq"
    assert config.errors_tolerance == "none"


def test_secrets_are_never_printed(tmp_path: Path) -> None:
    config = parse_config({"name": "s3", "connector.class": CLASS, "settings": {"token": "hush"}})
    shown = json.dumps(config.describe()) + repr(config.connector_settings)
    assert "hush" not in shown and "**********" in shown
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"name": "s3", "connector.class": CLASS, "settings": {"token": 1, "limit": "x"}})
    )
    with pytest.raises(ConnectorConfigError) as caught:
        load_config(path)
    assert "settings.limit: int_parsing" in str(caught.value)


def test_errors_name_file_path_and_rule(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'name = "bad name!"\nconnector.class = "x"\ntasks.max = 0\n'
        'errors.tolerance = "some"\ntypo = 1\n'
    )
    with pytest.raises(ConnectorConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    paths = {p.path: p.rule for p in caught.value.problems}
    assert paths["name"] == "string_pattern_mismatch"
    assert paths["tasks.max"] == "greater_than_equal"
    assert paths["errors.tolerance"] == "literal_error"
    assert paths["typo"] == "extra"
    assert paths["connector.class"] == "unknown_class"


def test_unreadable_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConnectorConfigError, match="unreadable"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "c.json"
    bad.write_text("{")
    with pytest.raises(ConnectorConfigError, match=r"c\.json: <config>: json"):
        load_config(bad)


def test_env_references_in_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDK_TEST_TOKEN", "from-env")
    config = parse_config(
        {"name": "s4", "connector.class": CLASS, "settings": {"token": "${env:SDK_TEST_TOKEN}"}}
    )
    settings = config.connector_settings
    assert isinstance(settings, SecretSettings)
    assert settings.token.get_secret_value() == "from-env"
    with pytest.raises(ConnectorConfigError, match=r"settings\.token: missing_env"):
        parse_config(
            {"name": "s4", "connector.class": CLASS, "settings": {"token": "${env:SDK_NOPE_X}"}}
        )


def test_sinks_need_topics_and_sources_write_dossier_events() -> None:
    with pytest.raises(ConnectorConfigError, match="topics: missing"):
        parse_config({"name": "k", "connector.class": f"{__name__}:NoopSink"})
    sink = parse_config({"name": "k", "connector.class": f"{__name__}:NoopSink", "topics": "a, b"})
    assert sink.topics == ("a", "b") and sink.consumer_group == "connect-k"
    with pytest.raises(ConnectorConfigError, match="topic: unsupported"):
        parse_config(
            {"name": "s", "connector.class": CLASS, "topic": "x", "settings": {"token": "t"}}
        )


def test_registry_resolves_entry_points_and_module_paths() -> None:
    assert resolve("http-ingress") is HttpIngress
    assert resolve(CLASS) is SecretSource
    assert "http-ingress" in {c.name for c in installed()}
    with pytest.raises(UnknownConnectorClassError, match=r"installed: .*http-ingress"):
        resolve("no-such-connector")
    with pytest.raises(UnknownConnectorClassError, match="not a connector class"):
        resolve("json:loads")


def test_backoff_is_capped_jittered_and_bounded_by_the_timeout() -> None:
    now = [0.0]
    backoff = Backoff(0.1, 1.0, 3.0, rng=random.Random(1), clock=lambda: now[0])
    delays = []
    while (delay := backoff.next_delay()) is not None:
        delays.append(delay)
        now[0] += delay
    assert delays[0] <= 0.1 and all(d <= 1.0 for d in delays)
    assert delays[3] >= 0.4  # 0.8 ceiling, jitter in [d/2, d]
    assert sum(delays) == pytest.approx(3.0)
    assert Backoff(0.1, 1.0, 0).next_delay() is None
    forever = Backoff(0.1, 1.0, -1)
    assert all(forever.next_delay() is not None for _ in range(100))


def test_retry_call_retries_then_raises() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    assert retry_call(flaky, Backoff(0.001, 0.002, 5), retry_on=(ConnectionError,)) == "ok"
    with pytest.raises(ConnectionError):
        retry_call(
            lambda: (_ for _ in ()).throw(ConnectionError("x")),
            Backoff(0.001, 0.002, 0.01),
            retry_on=(ConnectionError,),
        )


def test_offsets_keep_the_latest_per_partition_of_this_connector() -> None:
    store = OffsetStore("unused:1", "t", "outbox")
    found: dict[str, dict[str, int]] = {}
    store._apply(found, offset_key("outbox", "rows"), b'{"id": 1}')
    store._apply(found, offset_key("outbox", "rows"), b'{"id": 7}')
    store._apply(found, offset_key("other", "rows"), b'{"id": 99}')
    store._apply(found, offset_key("outbox", "gone"), b'{"id": 3}')
    store._apply(found, offset_key("outbox", "gone"), None)
    assert found == {"rows": {"id": 7}}


def test_ingress_credentials_hmac_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    entry = {"agency_code": "000.00.12.H40"}
    path.write_text(
        json.dumps(
            {
                "credentials": [
                    {**entry, "key_id": "a", "api_key_sha256": hash_api_key("k" * 20)},
                    {**entry, "key_id": "h", "hmac_secret": "s" * 20},
                ]
            }
        )
    )
    store = CredentialStore(path, reload_interval_s=0)
    caller = store.by_api_key("k" * 20)
    assert caller is not None and caller.agency_code == "000.00.12.H40"
    assert store.by_api_key("x" * 20) is None
    now = time.time()
    stamp = str(int(now))
    found = store.by_signature("h", stamp, sign("s" * 20, stamp, b"{}"), b"{}", now=now)
    assert not isinstance(found, str) and found.method == "hmac"
    assert store.by_signature("h", stamp, "sha256=00", b"{}", now=now) == "bad_signature"
    assert store.by_signature("h", "yesterday", "x", b"{}") == "bad_timestamp"
    path.write_text(json.dumps({"credentials": [{**entry, "key_id": "b2", "api_key": "n" * 20}]}))
    assert store.by_api_key("k" * 20) is None and store.by_api_key("n" * 20) is not None
    with pytest.raises(ValueError, match=r"credentials\.0\.agency_code"):
        path.write_text(json.dumps({"credentials": [{"agency_code": "x", "key_id": "z"}]}))
        CredentialStore(path)


def test_agency_scope_follows_mergers_both_ways_but_not_siblings() -> None:
    scope = AgencyScope(load_reference().agencies)
    assert scope.may_write("000.00.12.H40", "000.00.22.H40")  # 22 merged into 12
    assert scope.may_write("000.00.22.H40", "000.00.12.H40")
    assert not scope.may_write("000.00.22.H40", "000.00.23.H40")  # both merged into 12
    assert not scope.may_write("000.00.12.H40", "000.00.05.H40")


def test_openapi_documents_every_answer() -> None:
    doc = openapi_document(max_batch=7, max_body_bytes=2048, tolerance_s=300)
    post = doc["paths"]["/v1/dossier-events"]["post"]
    assert set(post["responses"]) == {"202", "401", "403", "413", "422", "429", "500", "503"}
    json.dumps(doc)  # serialisable


def test_cli_list_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hub_main(["connector", "list"]) == 0
    assert "http-ingress" in capsys.readouterr().out
    good = tmp_path / "ingress.json"
    good.write_text(
        json.dumps(
            {
                "name": "ingress",
                "connector.class": "http-ingress",
                "settings": {"credentials_file": str(tmp_path / "c.json")},
            }
        )
    )
    assert hub_main(["connector", "validate", "--config", str(good)]) == 0
    assert "ok (push-source http-ingress)" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "connector.class": "http-ingress", "tasks.max": 0}))
    assert hub_main(["connector", "validate", "--config", str(bad)]) == 1
    assert f"{bad}: tasks.max: greater_than_equal" in capsys.readouterr().err
    assert os.environ.get("SDK_TEST_TOKEN") is None
