"""Finding connector classes: entry points, so an agency team can ``pip install`` theirs.

A package declares its connector in its ``pyproject.toml``::

    [project.entry-points."nghean_hub.connectors"]
    justice-outbox = "justice_hub.outbox:JusticeOutbox"

and a config names it with ``"connector.class": "justice-outbox"``. A config may also name a
class directly as ``module:Class`` (or ``module.Class``) without installing anything. The
hub's own connectors are registered the same way in this project's ``pyproject.toml``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Final

from connectors.sdk.base import Connector
from connectors.sdk.errors import UnknownConnectorClassError

__all__ = ["GROUP", "InstalledConnector", "installed", "resolve"]

GROUP: Final = "nghean_hub.connectors"


@dataclass(frozen=True)
class InstalledConnector:
    """One entry point: ``cls`` is None and ``error`` says why when it does not load."""

    name: str
    target: str
    distribution: str | None
    cls: type[Connector] | None
    error: str | None = None


def _entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def _check(obj: object, where: str) -> type[Connector]:
    if not (isinstance(obj, type) and issubclass(obj, Connector)):
        raise UnknownConnectorClassError(
            f"{where} is not a connector class (a subclass of SourceConnector, "
            "PushSourceConnector or SinkConnector)"
        )
    if getattr(obj, "__abstractmethods__", None):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        raise UnknownConnectorClassError(f"{where} does not implement {missing}")
    return obj


def installed() -> list[InstalledConnector]:
    """Every entry point in group ``nghean_hub.connectors``, loaded (errors kept, not raised)."""
    out = []
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist is not None else None
        try:
            cls: type[Connector] | None = _check(ep.load(), f"entry point {ep.name!r}")
            error = None
        except Exception as exc:
            cls, error = None, f"{type(exc).__name__}: {exc}"
        out.append(InstalledConnector(ep.name, ep.value, dist, cls, error))
    return out


def _import(target: str) -> type[Connector]:
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise UnknownConnectorClassError(
            f"{target!r} is neither an installed connector (hub connector list) nor module:Class"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownConnectorClassError(f"cannot import module {module_name!r}: {exc}") from exc
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UnknownConnectorClassError(
                f"module {module_name!r} has no attribute {attr!r}"
            ) from None
    return _check(obj, target)


def resolve(connector_class: str) -> type[Connector]:
    """The class an entry-point name or ``module:Class`` names; raises
    :class:`UnknownConnectorClassError` saying what was tried."""
    for ep in _entry_points():
        if ep.name == connector_class:
            try:
                loaded = ep.load()
            except Exception as exc:
                raise UnknownConnectorClassError(
                    f"entry point {ep.name!r} ({ep.value}) does not load: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            return _check(loaded, f"entry point {ep.name!r}")
    if ":" in connector_class or "." in connector_class:
        return _import(connector_class)
    names = ", ".join(ep.name for ep in _entry_points()) or "none"
    raise UnknownConnectorClassError(
        f"no connector named {connector_class!r} is installed (installed: {names}); "
        "give an entry-point name or module:Class"
    )
