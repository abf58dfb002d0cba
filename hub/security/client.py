"""Client-side Kafka security: what kafka-python, aiokafka and confluent-kafka clients need.

Built from :class:`hub.settings.HubSettings` (``HUB_KAFKA_SECURITY_PROTOCOL``,
``HUB_KAFKA_SASL_MECHANISM``, ``HUB_KAFKA_SASL_USERNAME``, ``HUB_KAFKA_SASL_PASSWORD`` or
``HUB_KAFKA_SASL_PASSWORD_FILE``, and for TLS ``HUB_KAFKA_SSL_CAFILE``). kafka-python takes
the CA file itself; aiokafka, and so the faust worker, take an ``ssl.SSLContext`` built from
it (:meth:`KafkaClientSecurity.ssl_context`). Either way the broker's certificate is verified
and must name the host dialled. The password is kept out of ``repr`` so a logged settings
object or exception never shows it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.security.secrets import read_secret

__all__ = [
    "KafkaClientSecurity",
    "SecurityConfigError",
]

_SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
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
    #: TLS: the CA certificate to verify the broker with (None: the system's authorities)
    cafile: Path | None = None

    @classmethod
    def build(
        cls,
        protocol: str,
        mechanism: str,
        username: str | None,
        password: str | None,
        password_file: Path | None,
        cafile: Path | None = None,
    ) -> KafkaClientSecurity:
        protocol = protocol.upper()
        if protocol not in _PROTOCOLS:
            raise SecurityConfigError(f"unknown Kafka security protocol {protocol!r}")
        if cafile is not None:
            if protocol not in _TLS_PROTOCOLS:
                raise SecurityConfigError(
                    f"a CA file is for SSL or SASL_SSL, not {protocol}: set "
                    "HUB_KAFKA_SECURITY_PROTOCOL=SASL_SSL or drop HUB_KAFKA_SSL_CAFILE"
                )
            if not cafile.is_file():
                raise SecurityConfigError(f"the Kafka CA file {cafile} does not exist")
        if protocol not in _SASL_PROTOCOLS:
            return cls(protocol, cafile=cafile)
        if mechanism not in _MECHANISMS:
            raise SecurityConfigError(f"unsupported SASL mechanism {mechanism!r}")
        if password and password_file:
            raise SecurityConfigError("set the SASL password or its file, not both")
        if password_file:
            password = read_secret(password_file)
        if not username or not password:
            raise SecurityConfigError(f"{protocol} needs a SASL user name and password")
        return cls(protocol, mechanism, username, password, cafile)

    @property
    def sasl(self) -> bool:
        return self.protocol in _SASL_PROTOCOLS

    @property
    def tls(self) -> bool:
        return self.protocol in _TLS_PROTOCOLS

    def ssl_context(self) -> ssl.SSLContext | None:
        """For aiokafka and faust: verifies the broker's certificate and host name (None if
        the protocol has no TLS)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.cafile) if self.cafile is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """For KafkaProducer/KafkaConsumer/KafkaAdminClient and the aiokafka clients.

        Empty for PLAINTEXT, so passing it to a client changes nothing on a plain broker.
        """
        if self.protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            # kafka-python checks the certificate and the host name by default; with no CA
            # file it trusts the system's authorities
            kwargs["ssl_check_hostname"] = True
            if self.cafile is not None:
                kwargs["ssl_cafile"] = str(self.cafile)
        if self.sasl:
            kwargs |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return kwargs

    def librdkafka_config(self) -> dict[str, str]:
        """The same security for confluent-kafka (librdkafka's dotted keys); {} if plain."""
        if self.protocol == "PLAINTEXT":
            return {}
        config = {"security.protocol": self.protocol}
        if self.tls:
            config["ssl.endpoint.identification.algorithm"] = "https"
            if self.cafile is not None:
                config["ssl.ca.location"] = str(self.cafile)
        if self.sasl:
            config |= {
                "sasl.mechanism": self.mechanism,
                "sasl.username": self.username or "",
                "sasl.password": self.password or "",
            }
        return config
