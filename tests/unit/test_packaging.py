"""What `pip install nghean-hub` (no extras: the Docker image, a production host) brings must
be enough to import every module of the hub and the connectors: each third-party package they
import is a runtime dependency in pyproject.toml, or one of theirs."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWN = {"hub", "connectors"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _runtime_closure() -> set[str]:
    """The declared runtime dependencies and, transitively, what they require (no extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [_name(r) for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        todo.extend(_name(r) for r in reqs if "extra ==" not in r)
    return seen


def _imported_top_levels() -> dict[str, str]:
    """Top-level module -> the first file importing it, over hub/ and connectors/ (not the
    worked example under connectors/examples: a package of its own, outside the hub's wheel)."""
    found: dict[str, str] = {}
    examples = ROOT / "connectors" / "examples"
    for package in OWN:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(examples):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_of_the_hub_is_a_runtime_dependency() -> None:
    closure = _runtime_closure()
    distributions = packages_distributions()
    missing = []
    for module, where in sorted(_imported_top_levels().items()):
        if module in OWN or module in sys.stdlib_module_names:
            continue
        dists = {_name(d) for d in distributions.get(module, [])}
        assert dists, f"{module} (imported by {where}) is not installed at all"
        if not dists & closure:
            missing.append(f"{module} ({', '.join(sorted(dists))}, imported by {where})")
    assert not missing, "imported but not a runtime dependency: " + "; ".join(missing)
