"""Loading a connector's config: the file read (JSON or TOML), the common fields validated,
the connector class found in the entry-point registry and its ``settings`` validated with the
class's ``Settings`` model, every problem reported at once.

Apart from :mod:`connectors.sdk.config` so that the config stays plain data and never
resolves plugin classes itself.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from connectors.sdk.base import Connector, PushSourceConnector, http_binding_problems
from connectors.sdk.config import (
    ConnectorConfig,
    flatten,
    problems_from_validation,
    resolve_env,
)
from connectors.sdk.errors import ConfigProblem, ConnectorConfigError, UnknownConnectorClassError
from connectors.sdk.registry import resolve

__all__ = ["load_config", "parse_config"]


def parse_config(
    data: object, source: str = "<config>", *, connector_cls: type[Connector] | None = None
) -> ConnectorConfig:
    """Validate ``data`` (a parsed JSON/TOML mapping), resolve the connector class and
    validate ``settings`` with its ``Settings`` model. Raises :class:`ConnectorConfigError`.

    ``connector_cls`` skips the lookup of ``connector.class`` (tests, embedding)."""
    if not isinstance(data, Mapping):
        raise ConnectorConfigError(
            source, [ConfigProblem("", "type", "a connector config is a JSON object/TOML table")]
        )
    flat: dict[str, Any] = {}
    flatten(data, flat)
    problems: list[ConfigProblem] = []
    config: ConnectorConfig | None = None
    try:
        config = ConnectorConfig.model_validate(flat)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc))

    # report the settings' problems along with the rest, as far as the class can be found
    cls = connector_cls
    name = flat.get("connector.class", flat.get("connector_class"))
    if cls is None and isinstance(name, str) and name:
        try:
            cls = resolve(name)
        except UnknownConnectorClassError as exc:
            problems.append(ConfigProblem("connector.class", "unknown_class", str(exc)))

    settings: BaseModel | None = None
    raw = flat.get("settings", {})
    if cls is not None and isinstance(raw, Mapping):
        env_problems: list[ConfigProblem] = []
        resolved = resolve_env(raw, "settings", env_problems)
        problems.extend(env_problems)
        if not env_problems:
            try:
                settings = cls.Settings.model_validate(resolved)
            except ValidationError as exc:
                problems.extend(problems_from_validation(exc, "settings"))
    if config is not None and cls is not None:
        problems.extend(cls.check_config(config))
        if settings is not None and issubclass(cls, PushSourceConnector):
            # one HTTP server per process: health.port may not ask for a second port
            problems.extend(http_binding_problems(config, cls.http_binding(settings)))
    if problems or config is None or cls is None or settings is None:
        raise ConnectorConfigError(source, problems)
    config._connector_cls = cls
    config._settings_model = settings
    return config


def load_config(path: str | Path) -> ConnectorConfig:
    """Read one connector's config from a JSON or TOML file (by suffix; otherwise JSON is
    tried first) and :func:`parse_config` it. Raises :class:`ConnectorConfigError`."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConnectorConfigError(source, [ConfigProblem("", "unreadable", reason)]) from None
    suffix = path.suffix.lower()
    data: object
    if suffix == ".toml":
        data = _toml(source, text)
    elif suffix == ".json":
        data = _json(source, text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = _toml(source, text)
    return parse_config(data, source)


def _json(source: str, text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConnectorConfigError(
            source,
            [ConfigProblem("", "json", f"{exc.msg} at line {exc.lineno} column {exc.colno}")],
        ) from None


def _toml(source: str, text: str) -> object:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConnectorConfigError(source, [ConfigProblem("", "toml", str(exc))]) from None
