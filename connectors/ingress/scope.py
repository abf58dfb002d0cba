"""Which dossiers an agency may write: its own, and those of its predecessors and successors.

When agencies merge (the 2025 reorganisations), the successor carries on the predecessor's
dossiers, and the predecessor's system may still be sending for a while. So a caller from
agency A may write events whose ``agency_code`` is A, any agency merged into A (transitively)
or any agency A was merged into (transitively); not a sibling merged into the same successor.
"""

from __future__ import annotations

from collections import defaultdict

from hub.reference import AgencyDirectory

__all__ = ["AgencyScope"]


class AgencyScope:
    def __init__(self, directory: AgencyDirectory) -> None:
        successor: dict[str, set[str]] = defaultdict(set)
        predecessors: dict[str, set[str]] = defaultdict(set)
        for code in directory.codes:
            for version in directory.versions(code):
                if version.merged_into:
                    successor[code].add(version.merged_into)
                    predecessors[version.merged_into].add(code)
        self._successor = dict(successor)
        self._predecessors = dict(predecessors)
        self._cache: dict[str, frozenset[str]] = {}

    @staticmethod
    def _walk(start: str, edges: dict[str, set[str]]) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def allowed(self, caller: str) -> frozenset[str]:
        found = self._cache.get(caller)
        if found is None:
            found = frozenset(
                {
                    caller,
                    *self._walk(caller, self._successor),
                    *self._walk(caller, self._predecessors),
                }
            )
            self._cache[caller] = found
        return found

    def may_write(self, caller: str, agency_code: str) -> bool:
        return agency_code in self.allowed(caller)
