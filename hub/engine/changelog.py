"""The changelog: the stores' contents on Kafka, written in the checkpoints' transactions.

Topic ``<app id>-dossiers-changelog`` (named by the app id alone, as faust named its
changelogs: the hub's ACLs grant the app id's prefix), compacted, with the hub's partition count;
partition ``p`` holds the stores of partition ``p``. A checkpoint writes, in its transaction,
one record per dossier it changed (key: the dossier code, value: the encoded state) and then
one meta record per partition it read (key :data:`hub.engine.store.META_KEY`, value the
partition's :class:`hub.engine.store.Meta`: next input offsets, audit heads). Restoring a
store is replaying its partition: each state record sets a key, each meta record sets the
meta; a read-committed reader only ever sees whole checkpoints.
"""

from __future__ import annotations

__all__ = ["changelog_topic", "directory_topic"]


def changelog_topic(app_id: str) -> str:
    return f"{app_id}-dossiers-changelog"


def directory_topic(app_id: str) -> str:
    """Where workers announce their partitions and URL (``hub.engine.directory``)."""
    return f"{app_id}-workers"
