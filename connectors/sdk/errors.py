"""The connector SDK's errors: one root, grouped by who has to act.

* :class:`ConnectorConfigError`: the operator's config file is wrong (names file, field path
  and rule);
* :class:`RetriableError`: not the record's fault (a receiver or the broker is down); the
  runtime retries per ``errors.retry.*``;
* :class:`PermanentError`: the record can never succeed; dead-lettered when
  ``errors.tolerance=all``, else the connector stops;
* :class:`ConnectorFailedError`: the runtime stopped the connector and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BrokerUnavailableError",
    "ConfigProblem",
    "ConnectorConfigError",
    "ConnectorError",
    "ConnectorFailedError",
    "PermanentError",
    "RetriableError",
    "UnknownConnectorClassError",
]


class ConnectorError(Exception):
    """Root of every error the connector SDK raises."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a connector config: dotted ``path``, ``rule`` and a message that
    never quotes the submitted value (it may be a secret)."""

    path: str
    rule: str
    message: str

    def line(self) -> str:
        return f"{self.path or '<config>'}: {self.rule} ({self.message})"


class ConnectorConfigError(ConnectorError, ValueError):
    """A connector config breaks a rule; ``str()`` is ``<source>: <path>: <rule> (<message>)``,
    one line per problem."""

    def __init__(self, source: str, problems: Sequence[ConfigProblem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(f"{source}: {p.line()}" for p in self.problems))


class UnknownConnectorClassError(ConnectorError, LookupError):
    """``connector.class`` names no installed entry point and no importable ``module:Class``."""


class RetriableError(ConnectorError):
    """A failure that is not the record's fault: try again later (errors.retry.*).

    ``retry_after_s``: when the receiver said how long to wait (HTTP 429's ``Retry-After``,
    an open circuit's cooldown), the runtime waits that long instead of its own backoff."""

    def __init__(self, message: str = "", *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BrokerUnavailableError(RetriableError):
    """Kafka (or the schema registry) did not acknowledge in time, or cannot be reached."""


class PermanentError(ConnectorError):
    """The record can never be processed; ``reason`` is a short machine code for the
    dead letter's ``hub.errors.reason`` header (keep the set small: it is a metrics label)."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        self.reason = reason or "permanent"
        self.detail = detail or self.reason
        super().__init__(f"{self.reason}: {self.detail}" if detail else self.reason)


class ConnectorFailedError(ConnectorError):
    """The runtime stopped a connector (errors.tolerance=none, retries exhausted, a crash)."""
