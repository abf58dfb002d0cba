"""The connector SDK: how agency systems' data gets onto the hub's topics and off them.

Kafka Connect's vocabulary in plain Python (see ``docs`` in each module):

* :mod:`~connectors.sdk.config`: :class:`ConnectorConfig`;
* :mod:`~connectors.sdk.loading`: :func:`load_config` (JSON/TOML), :func:`parse_config`;
* :mod:`~connectors.sdk.base`: :class:`SourceConnector`, :class:`PushSourceConnector`,
  :class:`SinkConnector`, :class:`SourceRecord`, :class:`SinkRecord`;
* :mod:`~connectors.sdk.errors`: :class:`RetriableError`, :class:`PermanentError`, …;
* :mod:`~connectors.sdk.retry`: :class:`Backoff` (capped, jittered, exponential),
  ``Retry-After``;
* :mod:`~connectors.sdk.limits`: :class:`TokenBucket` (rate limit), :class:`CircuitBreaker`;
* :mod:`~connectors.sdk.http`: HTTP delivery with idempotency keys, answers sorted into
  delivered / retry / dead-letter;
* :mod:`~connectors.sdk.identity`: the codes a dead letter may carry;
* :mod:`~connectors.sdk.offsets`: source offsets in ``<prefix>hub.connect.offsets``;
* :mod:`~connectors.sdk.runtime`: :class:`ConnectorRuntime` runs one connector;
  :mod:`~connectors.sdk.sink`: a sink's lanes, one per partition;
* :mod:`~connectors.sdk.http_server`: the process's one HTTP server (``/health``,
  ``/metrics``, a push source's routes where its :class:`HttpBinding` says);
* :mod:`~connectors.sdk.registry`: entry points in group ``nghean_hub.connectors``.

Run one with ``hub connector run --config FILE``.
"""

from connectors.sdk.base import (
    Connector,
    HttpBinding,
    NoSettings,
    PushContext,
    PushSourceConnector,
    SinkConnector,
    SinkRecord,
    SourceConnector,
    SourceContext,
    SourceRecord,
)
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import (
    BrokerUnavailableError,
    ConfigProblem,
    ConnectorConfigError,
    ConnectorError,
    ConnectorFailedError,
    PermanentError,
    RetriableError,
    UnknownConnectorClassError,
)
from connectors.sdk.limits import CircuitBreaker, TokenBucket
from connectors.sdk.loading import load_config, parse_config
from connectors.sdk.retry import Backoff, retry_call

__all__ = [
    "Backoff",
    "BrokerUnavailableError",
    "CircuitBreaker",
    "ConfigProblem",
    "Connector",
    "ConnectorConfig",
    "ConnectorConfigError",
    "ConnectorError",
    "ConnectorFailedError",
    "HttpBinding",
    "NoSettings",
    "PermanentError",
    "PushContext",
    "PushSourceConnector",
    "RetriableError",
    "SinkConnector",
    "SinkRecord",
    "SourceConnector",
    "SourceContext",
    "SourceRecord",
    "TokenBucket",
    "UnknownConnectorClassError",
    "load_config",
    "parse_config",
    "retry_call",
]
