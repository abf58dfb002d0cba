"""The Kafka client security of this process, read once from the environment (``HUB_KAFKA_*``),
for clients built outside a settings object (connectors, commands, the DLQ and audit tools).

Apart from :mod:`hub.security.client` so that the settings take the security settings as a
value and the client module never reaches back for the settings.
"""

from __future__ import annotations

import functools
from typing import Any

from hub.security.client import KafkaClientSecurity
from hub.settings import HubSettings

__all__ = ["env_client_kwargs", "env_librdkafka_config", "env_security"]


@functools.cache
def env_security() -> KafkaClientSecurity:
    """Read once per process: the environment does not change under a running worker."""
    return HubSettings().kafka_security()


def env_client_kwargs() -> dict[str, Any]:
    """Security keyword arguments for kafka-python clients; {} for PLAINTEXT, so plain
    deployments build exactly the clients they did before."""
    return env_security().client_kwargs()


def env_librdkafka_config() -> dict[str, str]:
    """The same, for confluent-kafka clients (librdkafka's dotted keys); {} for PLAINTEXT."""
    return env_security().librdkafka_config()
