"""Deterministic sample records for any Avro record schema, for evolution and round-trip checks.

:func:`sample_records` returns the fewest records (within a greedy search) such that, taken
together, they take **every branch of every union** (so every optional ``["null", T]`` field
is both null and set, every payload record of an event union appears) and **every symbol of
every enum**. Each "site" is identified by where it is declared (the named type and field that
holds it), so a union in a record type reached from several places counts once.

Values are chosen to survive an Avro round trip through fastavro unchanged, so a sample equals
what ``fastavro.schemaless_reader(..., return_record_name=True)`` gives back:

* a record reached through a union is the tuple ``(full record name, fields)``, which both
  fastavro's writer (explicit branch) and that reader use; so is an enum or fixed value when
  the union names its type by reference (``["null", "Channel"]``), as that reader does;
* ``timestamp-millis`` values are aware UTC datetimes with whole milliseconds,
  ``timestamp-micros`` with microseconds, ``local-timestamp-*`` naive ones;
  ``date`` is a :class:`~datetime.date`, ``time-*`` a :class:`~datetime.time`;
* ``uuid`` values are :class:`uuid.UUID` (derived from the site and a counter, not random);
* ``decimal`` values are :class:`~decimal.Decimal` with the schema's scale;
* floats are exactly representable in 32 bits.

Strings carry a Vietnamese letter so UTF-8 handling is exercised. The generator knows nothing
about the hub's domain formats (dossier codes, procedure codes): the records are valid Avro,
not valid dossiers.

Limit: for a union of two primitive types that one Python value fits both of (``["float",
"double"]``, ``["int", "long"]`` with a small value) the *writer* picks the first fitting
branch, so such a union's later branch is generated but may not be the one on the wire.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["SampleError", "sample_records"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_NESTING = frozenset({"record", "error", "array", "map"})
_UUID_NAMESPACE = uuid.UUID("6f1d3c52-9a0e-4c1b-8d2e-0b5a7c9e4f31")
_BASE_TIME = datetime(2025, 8, 5, 1, 2, 3, 456789, tzinfo=UTC)
_BASE_DATE = date(2025, 8, 5)
#: Beyond this nesting depth a union prefers a branch that does not recurse further.
_MAX_DEPTH = 24


class SampleError(ValueError):
    """The schema is not one this generator can produce records for."""


@dataclass
class _State:
    """Coverage so far: (site, choice) pairs taken, how often, and per-site value counters.

    A site is a union or enum declaration, keyed by where it is declared (``Record.field``,
    plus ``|i`` per union branch and ``[]``/``{}`` for array items/map values; an enum by its
    full name).
    """

    covered: set[tuple[str, int]] = field(default_factory=set)
    visits: Counter[tuple[str, int]] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)


class _Generator:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.named: dict[str, dict[str, Any]] = {}
        self.root = schema
        self._register(schema, "")
        self._sites_memo: dict[tuple[str, int], frozenset[tuple[str, int]]] = {}
        self.state = _State()

    # --- names ---------------------------------------------------------------------------

    @staticmethod
    def _full(name: str, namespace: str) -> str:
        if "." in name or not namespace:
            return name
        return f"{namespace}.{name}"

    def _register(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._register(branch, namespace)
            return
        if not isinstance(schema, dict):
            return
        kind = schema.get("type")
        if kind in _NAMED:
            full = self._full(str(schema["name"]), str(schema.get("namespace", namespace)))
            self.named[full] = schema
            schema.setdefault("__full_name", full)  # our own copy, see sample_records
            namespace = full.rsplit(".", 1)[0] if "." in full else ""
            for fld in schema.get("fields", []):
                self._register(fld["type"], namespace)
        elif kind == "array":
            self._register(schema["items"], namespace)
        elif kind == "map":
            self._register(schema["values"], namespace)
        elif isinstance(kind, dict | list):
            self._register(kind, namespace)

    def _resolve(self, schema: Any, namespace: str) -> Any:
        """A named-type reference (a string that is not a primitive) → its definition."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            for candidate in (self._full(schema, namespace), schema):
                if candidate in self.named:
                    return self.named[candidate]
            raise SampleError(f"unknown Avro type name {schema!r}")
        if isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
            return self._resolve(schema["type"], namespace)  # {"type": {...}} wrapper
        if (
            isinstance(schema, dict)
            and isinstance(schema.get("type"), str)
            and schema["type"] not in _PRIMITIVES | _NAMED | {"array", "map"}
        ):
            return self._resolve(schema["type"], namespace)  # {"type": "SomeName"}
        return schema

    @staticmethod
    def _namespace_of(schema: dict[str, Any]) -> str:
        full = str(schema["__full_name"])
        return full.rsplit(".", 1)[0] if "." in full else ""

    # --- sites (unions and enums) reachable from a schema --------------------------------

    def _sites(self, schema: Any, namespace: str, key: str) -> frozenset[tuple[str, int]]:
        """Every (site key, choice) pair reachable from ``schema`` declared at ``key``."""
        schema = self._resolve(schema, namespace)
        found: set[tuple[str, int]] = set()
        self._collect(schema, namespace, key, found, set())
        return frozenset(found)

    def _collect(
        self,
        schema: Any,
        namespace: str,
        key: str,
        found: set[tuple[str, int]],
        seen: set[str],
    ) -> None:
        schema = self._resolve(schema, namespace)
        if isinstance(schema, list):
            for i, branch in enumerate(schema):
                found.add((key, i))
                self._collect(branch, namespace, f"{key}|{i}", found, seen)
            return
        if not isinstance(schema, dict):
            return
        kind = schema.get("type")
        if kind in ("record", "error"):
            full = str(schema["__full_name"])
            if full in seen:
                return
            seen.add(full)
            inner = self._namespace_of(schema)
            for fld in schema.get("fields", []):
                self._collect(fld["type"], inner, f"{full}.{fld['name']}", found, seen)
        elif kind == "enum":
            full = str(schema["__full_name"])
            for i in range(len(schema["symbols"])):
                found.add((full, i))
        elif kind == "array":
            self._collect(schema["items"], namespace, f"{key}[]", found, seen)
        elif kind == "map":
            self._collect(schema["values"], namespace, f"{key}{{}}", found, seen)

    def _reachable(self, schema: Any, namespace: str, key: str) -> frozenset[tuple[str, int]]:
        memo_key = (key, id(schema))  # schemas live as long as the generator: ids are stable
        cached = self._sites_memo.get(memo_key)
        if cached is None:
            cached = self._sites(schema, namespace, key)
            self._sites_memo[memo_key] = cached
        return cached

    def all_sites(self) -> frozenset[tuple[str, int]]:
        return self._reachable(self.root, self.root_namespace(), "")

    def root_namespace(self) -> str:
        return self._namespace_of(self.root)

    # --- values -----------------------------------------------------------------------------

    def _next(self, key: str) -> int:
        n = self.state.counters[key]
        self.state.counters[key] += 1
        return n

    def _choose(self, key: str, options: list[tuple[int, frozenset[tuple[str, int]]]]) -> int:
        """Pick a choice at a site: uncovered first, then one leading to uncovered sites,
        then the least used. ``options`` are (choice, sites reachable through it)."""
        covered = self.state.covered
        for choice, _ in options:
            if (key, choice) not in covered:
                return choice
        promising = [c for c, reach in options if not reach <= covered]
        pool = promising or [c for c, _ in options]
        return min(pool, key=lambda c: (self.state.visits[(key, c)], c))

    def value(self, schema: Any, namespace: str, key: str, depth: int) -> Any:
        schema = self._resolve(schema, namespace)
        if isinstance(schema, list):
            return self._union(schema, namespace, key, depth)
        if isinstance(schema, str):
            return self._primitive(schema, {}, key)
        if not isinstance(schema, dict):
            raise SampleError(f"not an Avro schema: {schema!r}")
        kind = schema["type"]
        if kind in ("record", "error"):
            full = str(schema["__full_name"])
            inner = self._namespace_of(schema)
            return {
                fld["name"]: self.value(fld["type"], inner, f"{full}.{fld['name']}", depth + 1)
                for fld in schema.get("fields", [])
            }
        if kind == "enum":
            full = str(schema["__full_name"])
            symbols = list(schema["symbols"])
            choice = self._choose(full, [(i, frozenset()) for i in range(len(symbols))])
            self._mark(full, choice)
            return symbols[choice]
        if kind == "array":
            return [self.value(schema["items"], namespace, f"{key}[]", depth + 1) for _ in range(2)]
        if kind == "map":
            return {
                f"k{i}": self.value(schema["values"], namespace, f"{key}{{}}", depth + 1)
                for i in range(2)
            }
        if kind == "fixed":
            return self._fixed(schema, key)
        return self._primitive(str(kind), schema, key)

    def _mark(self, key: str, choice: int) -> None:
        self.state.covered.add((key, choice))
        self.state.visits[(key, choice)] += 1

    def _union(self, branches: list[Any], namespace: str, key: str, depth: int) -> Any:
        options = [
            (i, self._reachable(branch, namespace, f"{key}|{i}"))
            for i, branch in enumerate(branches)
        ]
        if depth > _MAX_DEPTH:
            leaves = [(i, r) for i, r in options if self._is_leaf(branches[i], namespace)]
            options = leaves or options
        choice = self._choose(key, options)
        self._mark(key, choice)
        branch = self._resolve(branches[choice], namespace)
        datum = self.value(branch, namespace, f"{key}|{choice}", depth + 1)
        # What fastavro's reader returns with return_record_name=True: the name comes along
        # for an inline record and for any named type given by name (fixed and enum too).
        by_name = isinstance(branches[choice], str) and branches[choice] not in _PRIMITIVES
        inline_record = isinstance(branch, dict) and branch.get("type") in ("record", "error")
        if by_name or inline_record:
            return (str(branch["__full_name"]), datum)
        return datum

    def _is_leaf(self, schema: Any, namespace: str) -> bool:
        """True for a type that cannot nest further (no record, array, map or union)."""
        resolved = self._resolve(schema, namespace)
        if isinstance(resolved, list):
            return False
        return not isinstance(resolved, dict) or resolved["type"] not in _NESTING

    def _fixed(self, schema: dict[str, Any], key: str) -> Any:
        size = int(schema["size"])
        n = self._next(key)
        if schema.get("logicalType") == "decimal":
            return self._decimal(schema, n, size)
        return bytes((n + i) % 256 for i in range(size))

    @staticmethod
    def _decimal(schema: dict[str, Any], n: int, size: int | None) -> Decimal:
        scale = int(schema.get("scale", 0))
        precision = int(schema.get("precision", 1))
        limit = 10 ** min(precision, 18)
        if size is not None:  # two's complement in `size` bytes
            limit = min(limit, 2 ** (8 * size - 1))
        unscaled = (1234 + 7 * n) % limit
        return Decimal(unscaled).scaleb(-scale)

    def _primitive(self, kind: str, schema: dict[str, Any], key: str) -> Any:
        logical = schema.get("logicalType")
        n = self._next(key)
        if kind == "null":
            return None
        if logical is not None:
            value = self._logical(kind, str(logical), schema, key, n)
            if value is not None:
                return value
        if kind == "boolean":
            return n % 2 == 0
        if kind == "int":
            return n + 1
        if kind == "long":
            return 2**33 + n
        if kind in ("float", "double"):
            return n + 0.5
        if kind == "bytes":
            return f"b{n}".encode()
        if kind == "string":
            leaf = key.rsplit(".", 1)[-1].split("|", 1)[0] or "value"
            return f"{leaf} {n} ệ"
        raise SampleError(f"unknown Avro type {kind!r}")

    def _logical(self, kind: str, logical: str, schema: dict[str, Any], key: str, n: int) -> Any:
        """A value for a logical type, or None to fall back to the underlying type."""
        if logical == "uuid" and kind == "string":
            return uuid.uuid5(_UUID_NAMESPACE, f"{key}/{n}")
        if logical == "date" and kind == "int":
            return _BASE_DATE + timedelta(days=n)
        if logical in ("timestamp-millis", "timestamp-micros") and kind == "long":
            moment = _BASE_TIME + timedelta(minutes=n)
            return moment if logical == "timestamp-micros" else _to_millis(moment)
        if logical in ("local-timestamp-millis", "local-timestamp-micros") and kind == "long":
            moment = (_BASE_TIME + timedelta(minutes=n)).replace(tzinfo=None)
            return moment if logical == "local-timestamp-micros" else _to_millis(moment)
        if logical == "time-millis" and kind == "int":
            return time(8, n % 60, 3, 456000)
        if logical == "time-micros" and kind == "long":
            return time(8, n % 60, 3, 456789)
        if logical == "decimal" and kind == "bytes":
            return self._decimal(schema, n, None)
        return None  # unknown logical types are read as their underlying type


def _to_millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _copy(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _copy(v) for k, v in schema.items() if not str(k).startswith("__")}
    if isinstance(schema, list):
        return [_copy(v) for v in schema]
    return schema


def _records(schema: dict[str, Any], limit: int) -> Iterator[dict[str, Any]]:
    gen = _Generator(schema)
    target = gen.all_sites()
    namespace = gen.root_namespace()
    for _ in range(limit):
        record = gen.value(gen.root, namespace, "", 0)
        yield record
        if target <= gen.state.covered:
            return
    missing = sorted(target - gen.state.covered)[:5]
    raise SampleError(f"could not cover every union branch within {limit} records: {missing}")


def sample_records(schema: dict[str, Any], *, limit: int = 1000) -> list[dict[str, Any]]:
    """Valid records of the record ``schema`` that together take every union branch and enum
    symbol; the same list on every call. Works on raw JSON and fastavro-parsed schemas."""
    own = _copy(schema)  # the generator annotates its copy; the caller's dict stays untouched
    if not isinstance(own, dict) or own.get("type") not in ("record", "error"):
        raise SampleError("sample_records needs a record schema")
    return list(_records(own, limit))
