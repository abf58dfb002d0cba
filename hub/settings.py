"""One settings object for workers and commands: environment variables, then defaults.

Every field maps to an environment variable ``HUB_<NAME>``; the broker and registry also
answer to the conventional ``KAFKA_BOOTSTRAP_SERVERS`` and ``SCHEMA_REGISTRY_URL``. Defaults
run against the local stack (``hub stack up``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["HubSettings"]


class HubSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "HUB_KAFKA_BOOTSTRAP_SERVERS"),
    )
    schema_registry_url: str = Field(
        "http://127.0.0.1:8081/apis/ccompat/v7",
        validation_alias=AliasChoices("SCHEMA_REGISTRY_URL", "HUB_SCHEMA_REGISTRY_URL"),
    )
    app_id: str = "nghean-hub"
    #: prefix of every topic the hub reads and writes, so several hubs can share a cluster
    topic_prefix: str = ""
    partitions: int = 6
    replication_factor: int = 1
    store: Literal["rocksdb", "memory"] = "rocksdb"
    standby_replicas: int = 0
    data_dir: Path = Path(".hub/worker")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    #: alert this many working days before a deadline (DUE_SOON)
    due_soon_working_days: int = 1
    #: Decision 766 variant: more than one supplement request counts as late
    late_if_repeated_supplement: bool = False
    #: show applicants' names in the HTTP API (off: masked)
    show_personal_data: bool = False
    #: how often the deadline clock ticks every open dossier, in seconds
    clock_interval_s: float = 60.0
    source_system: str = "nghean-hub"
    #: a worker that stops heartbeating leaves the group after this long (then a rebalance)
    session_timeout_s: float = 30.0
    #: back-off between attempts while the schema registry is unreachable
    registry_retry_s: float = 2.0

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
