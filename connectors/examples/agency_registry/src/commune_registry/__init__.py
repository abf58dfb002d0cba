"""A commune one-stop office's dossier register as a hub source connector (the worked example
of the hub's ``connectors/README.md``)."""

from commune_registry.connector import CommuneRegistrySource

__all__ = ["CommuneRegistrySource"]
