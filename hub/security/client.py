"""Client-side Kafka security: the keyword arguments kafka-python and aiokafka need.

Built from :class:`hub.settings.HubSettings` (``HUB_KAFKA_SECURITY_PROTOCOL``,
``HUB_KAFKA_SASL_MECHANISM``, ``HUB_KAFKA_SASL_USERNAME``, ``HUB_KAFKA_SASL_PASSWORD`` or
``HUB_KAFKA_SASL_PASSWORD_FILE``). Both libraries name these options the same way, so one
dict serves both. The password is kept out of ``repr`` so a logged settings object or
exception never shows it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.security.secrets import read_secret

__all__ = [
    "KafkaClientSecurity",
    "SecurityConfigError",
    "env_client_kwargs",
    "faust_credentials",
]

_SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_PROTOCOLS = frozenset({"PLAINTEXT", "SSL", *_SASL_PROTOCOLS})
_MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})


class SecurityConfigError(ValueError):
    """The Kafka security settings are incomplete or contradictory."""


@dataclass(frozen=True)
class KafkaClientSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        protocol: str,
        mechanism: str,
        username: str | None,
        password: str | None,
        password_file: Path | None,
    ) -> KafkaClientSecurity:
        protocol = protocol.upper()
        if protocol not in _PROTOCOLS:
            raise SecurityConfigError(f"unknown Kafka security protocol {protocol!r}")
        if protocol not in _SASL_PROTOCOLS:
            return cls(protocol)
        if mechanism not in _MECHANISMS:
            raise SecurityConfigError(f"unsupported SASL mechanism {mechanism!r}")
        if password and password_file:
            raise SecurityConfigError("set the SASL password or its file, not both")
        if password_file:
            password = read_secret(password_file)
        if not username or not password:
            raise SecurityConfigError(f"{protocol} needs a SASL user name and password")
        return cls(protocol, mechanism, username, password)

    @property
    def sasl(self) -> bool:
        return self.protocol in _SASL_PROTOCOLS

    def client_kwargs(self) -> dict[str, Any]:
        """For KafkaProducer/KafkaConsumer/KafkaAdminClient and the aiokafka clients.

        Empty for PLAINTEXT, so passing it to a client changes nothing on a plain broker.
        """
        if self.protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            kwargs |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs


@functools.cache
def _env_security() -> KafkaClientSecurity:
    from hub.settings import HubSettings  # imported late: settings imports this module

    return HubSettings().kafka_security()


def env_client_kwargs() -> dict[str, Any]:
    """Security keyword arguments from the environment, for clients built outside settings.

    Read once per process (the environment does not change under a running worker); {} for
    PLAINTEXT, so plain deployments build exactly the clients they did before.
    """
    return _env_security().client_kwargs()


def faust_credentials() -> Any | None:
    """faust's ``broker_credentials`` for the environment's security; None for PLAINTEXT."""
    security = _env_security()
    if not security.sasl:
        if security.protocol != "PLAINTEXT":
            raise SecurityConfigError(f"the hub worker does not support {security.protocol}")
        return None
    import faust  # only workers need it

    return faust.SASLCredentials(
        username=security.username, password=security.password, mechanism=security.mechanism
    )
