"""The import graph of ``hub`` and ``connectors``: no cycles, and the direction an agency team
relies on: connectors use the hub's contract, domain types, DLQ and Kafka helpers, never the
worker.

Read from the source with :mod:`ast`, so an import inside a function counts as much as one at
the top of a module (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` do not, as they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hub", "connectors")


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def import_graph() -> dict[str, set[str]]:
    known = modules()

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        deps: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from pkg import sub`` depends on pkg.sub when it is a module, else on pkg
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            deps.update(d for d in map(owner, names) if d is not None and d != module)
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_and_nothing_else() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions_but_not_type_checking_ones() -> None:
    graph = import_graph()
    # connectors.sdk.runtime imports the hub's settings inside a method
    assert "hub.settings" in graph["connectors.sdk.runtime"]
    # connectors.sdk.base names the config only for type checking
    assert "connectors.sdk.config" not in graph["connectors.sdk.base"]


def test_there_is_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_connectors_never_import_the_worker() -> None:
    graph = import_graph()
    offenders = {
        module: sorted(dep for dep in deps if dep == "hub.worker" or dep.startswith("hub.worker."))
        for module, deps in graph.items()
        if module.startswith("connectors")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_the_hub_reaches_connectors_only_through_the_sdk() -> None:
    """The CLI finds connector classes through the entry-point registry; no hub module imports
    a connector. The demo assembles a province: it runs every connector through ``hub connector
    run`` and may use the load generators and the ingress's credential-file writer."""
    allowed = ("connectors.sdk",)
    demo_tools = ("connectors.simulator", "connectors.scenarios", "connectors.ingress.credentials")
    graph = import_graph()
    offenders = {
        module: sorted(
            dep
            for dep in deps
            if dep.startswith("connectors")
            and not dep.startswith(allowed)
            and not (module == "hub.demo" and dep.startswith(demo_tools))
        )
        for module, deps in graph.items()
        if module.startswith("hub")
    }
    assert {m: d for m, d in offenders.items() if d} == {}
