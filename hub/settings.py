"""One settings object for workers and commands: environment variables, then defaults.

Every field maps to an environment variable ``HUB_<NAME>``; the broker and registry also
answer to the conventional ``KAFKA_BOOTSTRAP_SERVERS`` and ``SCHEMA_REGISTRY_URL``. Defaults
run against the local stack (``hub stack up``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.security.client import KafkaClientSecurity

__all__ = ["WORKER_NAME", "HubSettings", "settings_problems"]

#: what HUB_WORKER_NAME may be: it goes into group.instance.id and transactional.id, whose
#: legal characters are Kafka's topic-name ones
WORKER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def settings_problems(exc: ValidationError) -> str:
    """What is wrong with the environment, one line per variable: its name and the rule it
    breaks, never its value (a password may be one)."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        variable = field if field.isupper() else f"HUB_{field.upper()}"
        lines.append(f"{variable}: {error['msg']}")
    return "; ".join(lines)


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
    #: replicas of every topic the hub creates (3 on a cluster: `hub stack up --brokers 3`)
    replication_factor: int = 1
    #: replicas that must hold a write before it is acknowledged (acks=all), set on every
    #: topic the hub creates; 2 with 3 replicas: one broker may be down, none lost
    min_insync_replicas: int = 1
    store: Literal["rocksdb", "memory"] = "rocksdb"
    #: keep warm copies of the stores of this many other workers' partitions (read from the
    #: changelog every 2 s), so a takeover restores seconds, not the whole partition
    standby_replicas: int = 0
    #: RocksDB memory: memtable size per partition store (two at most), and the one block
    #: cache all of a worker's stores share (data, index and filter blocks). Bounded, so
    #: the resident memory does not grow with the dossiers held. Reads that miss it are
    #: served by the OS's page cache: 16 and 64 MiB gave the same rate in bench.run
    #: (10,293 and 9,620 events/s, 200,000 events); a store of millions of dossiers wants its
    #: index and filter blocks (about 1% of its size) to fit
    rocksdb_write_buffer_mb: int = 4
    rocksdb_block_cache_mb: int = 16
    data_dir: Path = Path(".hub/worker")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    #: the URL other workers reach this one's HTTP API at (they forward dossier queries for
    #: its partitions there); default http://<web host>:<web port>, so set it when binding
    #: 0.0.0.0 (compose: http://<service name>:6066)
    advertised_url: str | None = None
    #: alert this many working days before a deadline (DUE_SOON)
    due_soon_working_days: int = 1
    #: Decision 766 variant: more than one supplement request counts as late
    late_if_repeated_supplement: bool = False
    #: API keys of the worker's API and pages, by role (hub/access/store.py; `hub access add`);
    #: without it (and the next) every call but /health and /ready answers 401
    access_file: Path | None = None
    #: the HTTP ingress's per-agency credentials file: its API keys also read the API as
    #: their agency's keys
    access_ingress_credentials: Path | None = None
    #: how often the deadline clock ticks every open dossier, in seconds
    clock_interval_s: float = 60.0
    source_system: str = "nghean-hub"
    #: a worker that stops heartbeating leaves the group after this long (then a rebalance)
    session_timeout_s: float = 30.0
    #: this worker's stable name among its app's workers (a StatefulSet pod's name, a compose
    #: service's): a static member of the group (Kafka's group.instance.id, KIP-345) under
    #: it, and the base of its transactional ids. A restart under the same name, even on an
    #: empty disk, takes the worker's partitions back at once instead of after
    #: session_timeout_s, and fences what its previous incarnation left open. Unset: the id
    #: kept in data_dir, and a dynamic member. Two running workers must never share a name
    worker_name: str | None = None
    #: records taken from the consumer at a time (what it has, up to this); a checkpoint
    #: also ends after this many (under a backlog: see catchup_commit_interval_ms). 10,000
    #: was ~5% faster from a backlog but held 34 MiB more at its peak (a whole fetch is
    #: applied before a checkpoint can end: its states, outputs and view updates)
    batch_max: int = 2000
    #: feedback (a rating, a complaint) for a dossier the worker does not hold waits at most
    #: this long for the dossier's events to be read, when dossier.events may still bring
    #: them (its leader down, its end not reached); then it is dead-lettered as unknown
    #: (hub.engine.feedback_gate). Its feedback partition waits behind it
    feedback_wait_s: float = 30.0
    #: a checkpoint (one Kafka transaction) at least this often; outputs become visible to
    #: read-committed consumers when it commits, so it bounds their latency. Under a backlog a
    #: checkpoint holds a fetched batch whatever this is; at 2,000 events/s, 30 ms gave p99
    #: 94 ms event -> portal.outbox where 40 ms gave 101-114 (bench/RESULTS.md, session 9)
    commit_interval_ms: int = 30
    #: under a backlog (a fetch of a whole batch: a restart, the catch-up after an outage, a
    #: rebuild) a checkpoint may hold up to this long and up to CATCHUP_BATCHES batches
    #: instead: fewer, larger transactions write fewer changelog records (one per changed
    #: dossier per checkpoint) and wait for fewer commits. 0 (the default) or anything not
    #: above commit_interval_ms: off. 250 gave ~10% more events/s from a backlog, but its
    #: larger checkpoints raised the memory high-water at an outage's catch-up (the 30-minute
    #: soak: RSS +12% where 10% is allowed), so it is for rebuilds an operator starts
    catchup_commit_interval_ms: int = 0
    #: the broker aborts a transaction left open this long (a frozen or dead worker's);
    #: until then read-committed consumers of its partitions wait behind it
    transaction_timeout_ms: int = 10_000
    #: back-off between attempts while the schema registry is unreachable
    registry_retry_s: float = 2.0
    #: Kafka client security (see README, "Kafka security"); PLAINTEXT needs nothing else
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    #: SecretStr: printed as ********** if the settings are ever logged
    kafka_sasl_password: SecretStr | None = None
    #: a 0600 file holding the password (e.g. the one `hub security apply-acls` wrote)
    kafka_sasl_password_file: Path | None = None
    #: SSL / SASL_SSL: the CA certificate (PEM) the broker's certificate is checked against;
    #: unset, the system's trusted authorities (`hub stack up --secure` prints its own)
    kafka_ssl_cafile: Path | None = None
    #: the Ed25519 private key (PEM, mode 0600, `hub audit keygen`) the workers sign each
    #: audit chain's head with at every checkpoint; unset, heads go unsigned and
    #: `hub audit verify` reports every chain (see README, "Audit trail")
    audit_signing_key: Path | None = None
    #: time-stamp the heads of the chains this worker holds this often (seconds; 0: never),
    #: at the RFC 3161 authority below, into ``audit_stamp_dir``
    audit_stamp_interval_s: float = 0.0
    #: the authority: an HTTP(S) URL taking RFC 3161 queries, or the configuration file of a
    #: local `openssl ts -reply` authority
    audit_tsa: str | None = None
    #: where stamps go (one set of files per chain, the latest); default <data dir>/audit-stamps
    audit_stamp_dir: Path | None = None

    @field_validator(
        "access_file", "access_ingress_credentials", "audit_signing_key", "audit_stamp_dir",
        "audit_tsa", "advertised_url", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``HUB_ACCESS_FILE=`` (set but empty, as compose files and shells leave them)
        means unset, not the current directory."""
        return None if value == "" else value

    @field_validator("worker_name", mode="before")
    @classmethod
    def _a_plain_name(cls, value: object) -> object:
        if value == "":
            return None  # set but empty, as compose files and shells leave them
        if isinstance(value, str) and not WORKER_NAME.fullmatch(value):
            raise ValueError(
                "a worker name is 1 to 64 letters, digits, '.', '_' or '-' "
                "(it becomes part of Kafka client and transactional ids)"
            )
        return value

    def web_url(self) -> str:
        return self.advertised_url or f"http://{self.web_host}:{self.web_port}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def kafka_security(self) -> KafkaClientSecurity:
        """Validated client security; raises SecurityConfigError when incomplete."""
        password = self.kafka_sasl_password
        return KafkaClientSecurity.build(
            self.kafka_security_protocol,
            self.kafka_sasl_mechanism,
            self.kafka_sasl_username,
            password.get_secret_value() if password else None,
            self.kafka_sasl_password_file,
            self.kafka_ssl_cafile,
        )

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Security keyword arguments for kafka-python and aiokafka clients ({} if plain)."""
        return self.kafka_security().client_kwargs()
