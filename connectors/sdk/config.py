"""One connector's configuration: Kafka Connect's vocabulary, validated with pydantic.

A config file (JSON or TOML) describes one connector::

    {"name": "justice-outbox", "connector.class": "outbox", "tasks.max": 1,
     "topic": "dossier.events", "errors.tolerance": "all",
     "settings": {"dsn": "${env:JUSTICE_DSN}", "table": "outbox"}}

* ``connector.class``: an entry-point name in group ``nghean_hub.connectors`` (``hub connector
  list``) or ``module:Class``;
* ``topics`` (sinks: a list or a comma-separated string) / ``topic`` (sources: where valid
  events go, ``dossier.events`` by default; feedback events always go to ``feedback.events``);
* ``errors.tolerance`` ``none`` (stop at the first bad record, the default as in Kafka
  Connect) or ``all`` (dead-letter it and carry on); ``errors.deadletterqueue.topic.name``
  (default ``<topic>.dlq`` of the record's topic); ``errors.retry.timeout`` and
  ``errors.retry.delay.max.ms`` in milliseconds (``-1``: retry forever);
* ``bootstrap.servers`` / ``schema.registry.url`` / ``topic.prefix`` default to
  ``KAFKA_BOOTSTRAP_SERVERS`` / ``SCHEMA_REGISTRY_URL`` / ``HUB_TOPIC_PREFIX``;
* ``health.port`` / ``health.host``: the one HTTP server of the connector's process
  (``/health``, ``/metrics``); the HTTP ingress serves them on its own ``settings.port``
  instead, where ``health.port`` may only repeat that port;
* ``settings``: validated by the connector class's own pydantic ``Settings`` model. A string
  ``${env:NAME}`` anywhere in it is replaced by that environment variable (Kafka Connect's
  EnvVarConfigProvider), so secrets stay out of config files. Declare secrets as
  ``SecretStr``: they print as ``**********``.

Underscore names (``connector_class``) and Kafka Connect's dotted keys are both accepted;
in TOML a bare ``connector.class = "x"`` is a nested table and is read the same way.
Errors name the file, the field path and the rule, and never quote a value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from connectors.sdk.errors import ConfigProblem
from connectors.sdk.retry import Backoff

if TYPE_CHECKING:
    from connectors.sdk.base import Connector

__all__ = [
    "OFFSETS_TOPIC",
    "ConnectorConfig",
    "flatten",
    "problems_from_validation",
    "regex_literal",
    "resolve_env",
]

#: compacted topic holding every source connector's offsets (``<prefix>`` in front)
OFFSETS_TOPIC: Final = "hub.connect.offsets"
_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_REGEX_SPECIAL: Final = frozenset(".^$*+?()[]{}|\\")
_ENV_REF: Final = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")


def regex_literal(text: str) -> str:
    """``text`` (a topic prefix: ``[A-Za-z0-9._-]``) as a regex matching itself; only regex
    metacharacters are escaped, since librdkafka has its own regex engine, not Python's."""
    return "".join(f"\\{c}" if c in _REGEX_SPECIAL else c for c in text)


def _defaults() -> Any:
    from hub.settings import HubSettings

    return HubSettings()


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class ConnectorConfig(BaseModel):
    """The validated config of one connector; see the module docstring for the keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(pattern=_NAME_PATTERN)
    connector_class: str = Field(
        min_length=1, validation_alias=_alias("connector_class", "connector.class")
    )
    tasks_max: int = Field(1, ge=1, validation_alias=_alias("tasks_max", "tasks.max"))
    topics: tuple[str, ...] = ()
    #: sinks: also every topic whose name after ``topic.prefix`` matches this regex (as Kafka
    #: Connect's ``topics.regex``; librdkafka's regex dialect: no lookahead). Make sure it does
    #: not match the dead-letter topics (``<topic>.dlq``).
    topics_regex: str | None = Field(
        None, min_length=1, validation_alias=_alias("topics_regex", "topics.regex")
    )
    #: sinks: how soon a new topic matching ``topics.regex`` (or a late topic) is noticed
    metadata_max_age_ms: int = Field(
        30_000, ge=100, validation_alias=_alias("metadata_max_age_ms", "metadata.max.age.ms")
    )
    topic: str = Field("dossier.events", min_length=1)
    errors_tolerance: Literal["none", "all"] = Field(
        "none", validation_alias=_alias("errors_tolerance", "errors.tolerance")
    )
    errors_deadletterqueue_topic_name: str | None = Field(
        None,
        validation_alias=_alias(
            "errors_deadletterqueue_topic_name", "errors.deadletterqueue.topic.name"
        ),
    )
    errors_retry_timeout_ms: int = Field(
        60_000,
        ge=-1,
        validation_alias=_alias(
            "errors_retry_timeout_ms", "errors.retry.timeout", "errors.retry.timeout.ms"
        ),
    )
    errors_retry_delay_max_ms: int = Field(
        10_000,
        ge=1,
        validation_alias=_alias("errors_retry_delay_max_ms", "errors.retry.delay.max.ms"),
    )
    bootstrap_servers: str = Field(
        default_factory=lambda: str(_defaults().kafka_bootstrap_servers),
        min_length=1,
        validation_alias=_alias("bootstrap_servers", "bootstrap.servers"),
    )
    schema_registry_url: str = Field(
        default_factory=lambda: str(_defaults().schema_registry_url),
        min_length=1,
        validation_alias=_alias("schema_registry_url", "schema.registry.url"),
    )
    topic_prefix: str = Field(
        default_factory=lambda: str(_defaults().topic_prefix),
        validation_alias=_alias("topic_prefix", "topic.prefix"),
    )
    #: sinks: the consumer group (default ``<prefix>connect-<name>``, as Kafka Connect)
    group_id: str | None = Field(None, validation_alias=_alias("group_id", "group.id"))
    #: sinks: how record values are decoded before ``put`` (Avro via the schema registry)
    value_converter: Literal["avro", "json", "bytes"] = Field(
        "avro", validation_alias=_alias("value_converter", "value.converter")
    )
    #: sources: pause between polls that returned nothing
    poll_interval_ms: int = Field(
        500, ge=1, validation_alias=_alias("poll_interval_ms", "poll.interval.ms")
    )
    #: how long to wait for Kafka's acknowledgement of a batch
    ack_timeout_ms: int = Field(
        30_000, ge=1, validation_alias=_alias("ack_timeout_ms", "ack.timeout.ms")
    )
    #: the process's HTTP server for ``/health`` and ``/metrics`` (``None``: none; 0: any
    #: free port). A push source that binds the server itself (the ingress:
    #: ``settings.host``/``settings.port``) serves them there; these may then only repeat it
    health_port: int | None = Field(
        None, ge=0, le=65535, validation_alias=_alias("health_port", "health.port")
    )
    health_host: str = Field("127.0.0.1", validation_alias=_alias("health_host", "health.host"))
    settings: dict[str, Any] = Field(default_factory=dict)

    _connector_cls: type[Connector] | None = PrivateAttr(None)
    _settings_model: BaseModel | None = PrivateAttr(None)

    @field_validator("topics", mode="before")
    @classmethod
    def _split_topics(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    # --- derived values ----------------------------------------------------------------------

    @property
    def connector_cls(self) -> type[Connector]:
        if self._connector_cls is None:
            raise RuntimeError("config not bound to a class: build it with parse_config")
        return self._connector_cls

    @property
    def connector_settings(self) -> BaseModel:
        """The ``settings`` table as the connector class's validated ``Settings`` model."""
        if self._settings_model is None:
            raise RuntimeError("config not bound to a class: build it with parse_config")
        return self._settings_model

    def full(self, topic: str) -> str:
        """``topic`` with the topic prefix."""
        return f"{self.topic_prefix}{topic}"

    @property
    def output_topic(self) -> str:
        return self.full(self.topic)

    @property
    def input_topics(self) -> list[str]:
        """What a sink subscribes to: its topics, prefixed, and ``topics.regex`` anchored
        after the escaped prefix (a name starting with ``^`` is a regex to librdkafka)."""
        found = [self.full(t) for t in self.topics]
        if self.topics_regex:
            found.append(f"^{regex_literal(self.topic_prefix)}({self.topics_regex})$")
        return found

    @property
    def offsets_topic(self) -> str:
        return self.full(OFFSETS_TOPIC)

    @property
    def consumer_group(self) -> str:
        return self.group_id or self.full(f"connect-{self.name}")

    def dlq_topic(self, source_topic: str) -> str:
        """Where a failed record of ``source_topic`` (prefixed) goes."""
        if self.errors_deadletterqueue_topic_name:
            return self.full(self.errors_deadletterqueue_topic_name)
        return f"{source_topic}.dlq"

    @property
    def retry_timeout_s(self) -> float | None:
        return None if self.errors_retry_timeout_ms < 0 else self.errors_retry_timeout_ms / 1000

    @property
    def retry_delay_max_s(self) -> float:
        return self.errors_retry_delay_max_ms / 1000

    def backoff(self) -> Backoff:
        """A fresh retry budget per ``errors.retry.*`` (one per record or per batch)."""
        return Backoff(
            min(0.3, self.retry_delay_max_s), self.retry_delay_max_s, self.retry_timeout_s
        )

    def describe(self) -> dict[str, Any]:
        """A printable summary; secrets (``SecretStr``) come out as ``**********``."""
        out = self.model_dump(mode="json", exclude={"settings"})
        if self._settings_model is not None:
            out["settings"] = self._settings_model.model_dump(mode="json")
        return out


# --- parsing ------------------------------------------------------------------------------------


def problems_from_validation(exc: ValidationError, prefix: str = "") -> list[ConfigProblem]:
    """Field-level problems of a pydantic error, without the submitted values."""
    out = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        path = ".".join(str(p) for p in error["loc"])
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        rule = "extra" if error["type"] == "extra_forbidden" else error["type"]
        out.append(ConfigProblem(path, rule, error["msg"]))
    return out


def flatten(data: Mapping[str, Any], into: dict[str, Any], prefix: str = "") -> None:
    # TOML reads ``connector.class = "x"`` as {"connector": {"class": "x"}}; ``settings`` is
    # the connector's own table and stays nested.
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted != "settings":
            flatten(value, into, f"{dotted}.")
        else:
            into[dotted] = value


def resolve_env(value: Any, path: str, problems: list[ConfigProblem]) -> Any:
    if isinstance(value, str):
        match = _ENV_REF.match(value)
        if match is None:
            return value
        found = os.environ.get(match.group(1))
        if found is None:
            problems.append(
                ConfigProblem(path, "missing_env", f"environment variable {match.group(1)} unset")
            )
        return found
    if isinstance(value, Mapping):
        return {k: resolve_env(v, f"{path}.{k}", problems) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, f"{path}.{i}", problems) for i, v in enumerate(value)]
    return value
