"""Schema evolution checks: can every version of a schema read data written with earlier ones?

The registry's rule is ``BACKWARD_TRANSITIVE`` (``schemas/README.md``): version N must read
data written with **every** version before it. Two independent checks:

* :func:`fastavro_backward_problems` / :func:`check_transitive`, offline: write
  :func:`~hub.contract.samples.sample_records` of the older schema (every union branch, every
  enum symbol, optional fields both null and set) and read them back with the newer schema as
  the reader schema (Avro schema resolution in fastavro). A data-driven check, so it only
  reports what the samples exercise; the samples exercise every field and every branch.
* :func:`registry_check`, online: registers the versions in order under a fresh subject set to
  ``BACKWARD_TRANSITIVE`` and asks the registry's compatibility API (the Java Avro checker in
  Apicurio or Confluent) about each later version before registering it.

Command line (exit status 1 when any version breaks the rule)::

    python -m hub.contract.compat [--schema-dir DIR] [--registry URL] [KIND ...]

``--registry`` (or ``SCHEMA_REGISTRY_URL``) adds the registry check; it uses throwaway
subjects ``compat-check.<kind>.<random>`` and deletes them afterwards.

Registry notes (Apicurio 3.0 ccompat compared with Confluent), handled here:

* ``POST /compatibility/subjects/{s}/versions/latest`` compares with the latest version only,
  even when the subject is ``BACKWARD_TRANSITIVE``; ``POST /compatibility/subjects/{s}/versions``
  (no version) applies the subject's level to all versions, as registering does. We use the
  latter.
* For a subject that does not exist, ``…/versions/latest`` answers 200 ``is_compatible: true``
  on Apicurio (Confluent: 404, error 40401) while ``…/versions`` answers 404/40401 on both; a
  404 with 40401 is read as "nothing registered yet, so nothing to break".
* ``PUT /config/{subject}`` works before the subject exists (as on Confluent); the response
  carries ``compatibilityLevel`` where Confluent answers ``compatibility``. The level is read
  back with ``GET /config/{subject}`` to be sure it took.
* ``verbose=true`` adds no ``messages`` on Apicurio; the registration refusal (409) names the
  incompatible field instead, so that text is what a problem reports.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import fastavro
import requests

from hub.contract.errors import RegistryError, RegistryUnavailableError
from hub.contract.registry import SchemaRegistryClient
from hub.contract.samples import SampleError, sample_records
from hub.contract.schemas import SCHEMA_DIR, SchemaKind

__all__ = [
    "TRANSITIVE",
    "KindReport",
    "check_transitive",
    "compatibility_with_all",
    "delete_subject",
    "fastavro_backward_problems",
    "format_table",
    "load_versions",
    "main",
    "registry_check",
    "report",
    "subject_compatibility",
]

TRANSITIVE = "BACKWARD_TRANSITIVE"
_VERSION_FILE = re.compile(r"^v([1-9]\d*)\.avsc$")


# --- offline: fastavro schema resolution ----------------------------------------------------


def _parse(schema: dict[str, Any]) -> Any:
    return fastavro.parse_schema(schema)


def _branch(record: dict[str, Any]) -> str:
    """A short label of the union branches a sample takes, for messages."""
    labels = [
        value[0].rsplit(".", 1)[-1]
        for value in record.values()
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)
    ]
    return f" ({', '.join(labels)})" if labels else ""


def fastavro_backward_problems(
    old: dict[str, Any],
    new: dict[str, Any],
    samples: list[dict[str, Any]] | None = None,
) -> list[str]:
    """Why data written with ``old`` cannot be read with ``new``; empty when it can.

    ``samples`` are records of ``old`` (default: :func:`sample_records` of ``old``). Each is
    written with ``old`` and read with ``new`` as the reader schema. Problems with the same
    cause are reported once, with how many samples hit it.
    """
    try:
        writer = _parse(old)
    except Exception as exc:  # fastavro raises several exception types for bad schemas
        return [f"old schema is not valid Avro: {exc}"]
    try:
        reader = _parse(new)
    except Exception as exc:
        return [f"new schema is not valid Avro: {exc}"]
    if samples is None:
        try:
            samples = sample_records(old)
        except SampleError as exc:
            return [f"cannot generate sample records of the old schema: {exc}"]
    causes: dict[str, list[str]] = {}
    for i, record in enumerate(samples):
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, writer, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            causes.setdefault(f"sample does not fit the old schema: {exc}", []).append(
                f"#{i}{_branch(record)}"
            )
            continue
        buf.seek(0)
        try:
            fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:  # SchemaResolutionError, or a decoding error of any type
            cause = f"{type(exc).__name__}: {exc}"
            causes.setdefault(cause, []).append(f"#{i}{_branch(record)}")
    return [
        f"{cause} [{len(where)} of {len(samples)} samples, e.g. {', '.join(where[:3])}]"
        for cause, where in causes.items()
    ]


def load_versions(
    kind: SchemaKind | str, schema_dir: Path | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """``(N, schema)`` for every ``<schema_dir>/<kind>/vN.avsc``, by N ascending."""
    folder = (schema_dir if schema_dir is not None else SCHEMA_DIR) / str(SchemaKind(kind))
    found: list[tuple[int, dict[str, Any]]] = []
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        match = _VERSION_FILE.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), json.loads(entry.read_text(encoding="utf-8"))))
    return sorted(found, key=lambda pair: pair[0])


def _transitive_by_version(
    versions: list[tuple[int, dict[str, Any]]], label: str
) -> dict[int, list[str]]:
    """Problems per version N: N's own validity, then every earlier version's data vs N."""
    results: dict[int, list[str]] = {}
    samples: dict[int, list[dict[str, Any]]] = {}
    for n, schema in versions:
        problems: list[str] = []
        try:
            _parse(schema)
            samples[n] = sample_records(schema)
        except SampleError as exc:
            problems.append(f"{label} v{n}: cannot generate sample records: {exc}")
        except Exception as exc:  # fastavro's parse errors come in several types
            problems.append(f"{label} v{n} is not valid Avro: {exc}")
        usable = not problems
        for m, earlier in versions:
            if m >= n or m not in samples or not usable:
                continue
            problems.extend(
                f"{label} v{n} cannot read v{m} data: {p}"
                for p in fastavro_backward_problems(earlier, schema, samples[m])
            )
        results[n] = problems
    return results


def check_transitive(kind: SchemaKind | str, schema_dir: Path | None = None) -> list[str]:
    """Problems that break ``BACKWARD_TRANSITIVE`` among the versions of ``kind``.

    Every version vN must read sample data of every earlier vM (fastavro resolution).
    ``schema_dir`` defaults to the repository's ``schemas/``; a kind without files is a problem.
    """
    versions = load_versions(kind, schema_dir)
    if not versions:
        folder = (schema_dir if schema_dir is not None else SCHEMA_DIR) / str(SchemaKind(kind))
        return [f"{kind}: no vN.avsc files in {folder}"]
    results = _transitive_by_version(versions, str(SchemaKind(kind)))
    return [p for n, _ in versions for p in results[n]]


# --- online: the schema registry ------------------------------------------------------------


def _call(
    registry: SchemaRegistryClient, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """(HTTP status, JSON answer or None) for a registry request; 5xx and network errors raise.

    The client's public methods turn every 4xx into one error type; the compatibility and
    config answers need the status and Confluent ``error_code`` to tell cases apart.
    """
    try:
        resp = registry._session.request(
            method,
            f"{registry.url}{path}",
            data=None if body is None else json.dumps(body),
            timeout=registry.timeout_s,
        )
    except requests.RequestException as exc:
        raise RegistryUnavailableError(
            f"schema registry at {registry.url} unreachable: {type(exc).__name__}"
        ) from exc
    if resp.status_code >= 500:
        raise RegistryUnavailableError(
            f"schema registry at {registry.url} answered {resp.status_code} to {method} {path}"
        )
    try:
        answer = resp.json() if resp.content else None
    except ValueError:
        answer = resp.text[:300]
    return resp.status_code, answer


def _error_text(answer: Any) -> str:
    if isinstance(answer, dict):
        return str(answer.get("message") or answer)[:400]
    return str(answer)[:400]


def _schema_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"schema": json.dumps(schema, separators=(",", ":")), "schemaType": "AVRO"}


def compatibility_with_all(
    registry: SchemaRegistryClient, subject: str, schema: dict[str, Any]
) -> tuple[bool, list[str]]:
    """The registry's verdict on ``schema`` as the next version of ``subject`` under the
    subject's configured level (all versions for a ``*_TRANSITIVE`` level), and its reasons.

    A subject that does not exist yet is compatible (nothing to break). Invalid schemas and
    other refusals raise :class:`RegistryError`.
    """
    status, answer = _call(
        registry,
        "POST",
        f"/compatibility/subjects/{quote(subject, safe='')}/versions?verbose=true",
        _schema_body(schema),
    )
    if status == 404 and isinstance(answer, dict) and answer.get("error_code") == 40401:
        return True, []
    if status >= 400 or not isinstance(answer, dict) or "is_compatible" not in answer:
        raise RegistryError(
            f"compatibility check of {subject} refused: {status} {_error_text(answer)}"
        )
    messages = answer.get("messages") or []
    return bool(answer["is_compatible"]), [str(m) for m in messages]


def subject_compatibility(registry: SchemaRegistryClient, subject: str) -> str | None:
    """The compatibility level set on ``subject`` itself, or None if it has none."""
    status, answer = _call(registry, "GET", f"/config/{quote(subject, safe='')}")
    if status == 404:
        return None
    if status >= 400 or not isinstance(answer, dict):
        raise RegistryError(f"cannot read the config of {subject}: {status} {answer}")
    level = answer.get("compatibilityLevel") or answer.get("compatibility")
    return str(level) if level else None


def _subject_exists(registry: SchemaRegistryClient, subject: str) -> bool:
    status, _ = _call(registry, "GET", f"/subjects/{quote(subject, safe='')}/versions")
    return status == 200


def delete_subject(registry: SchemaRegistryClient, subject: str) -> None:
    """Soft then hard delete of a subject (best effort; schema ids stay readable)."""
    path = f"/subjects/{quote(subject, safe='')}"
    _call(registry, "DELETE", path)
    _call(registry, "DELETE", f"{path}?permanent=true")


def _set_transitive(
    registry: SchemaRegistryClient, subject: str, first: dict[str, Any]
) -> tuple[bool, list[str]]:
    """Set ``subject`` to BACKWARD_TRANSITIVE; (whether ``first`` was registered to do so,
    problems). A registry that wants the subject to exist first gets ``first`` registered."""
    registered_first = False
    try:
        registry.set_compatibility(subject, TRANSITIVE)
    except RegistryUnavailableError:
        raise
    except RegistryError:
        registry.register(subject, first)
        registered_first = True
        registry.set_compatibility(subject, TRANSITIVE)
    level = subject_compatibility(registry, subject)
    if level != TRANSITIVE:
        return registered_first, [f"{subject}: compatibility is {level}, not {TRANSITIVE}"]
    return registered_first, []


def _registry_by_position(
    registry: SchemaRegistryClient,
    subject: str,
    versions: list[dict[str, Any]],
    labels: list[str] | None = None,
) -> list[list[str]]:
    """Problems per position in ``versions`` (the first entry: registering it at all)."""
    names = labels or [f"version {i}" for i in range(1, len(versions) + 1)]
    results: list[list[str]] = [[] for _ in versions]
    if not versions:
        return results
    if _subject_exists(registry, subject):
        raise ValueError(f"subject {subject} already exists; registry_check needs a fresh one")
    registered_first, problems = _set_transitive(registry, subject, versions[0])
    results[0].extend(problems)
    if problems:
        return results
    if not registered_first:
        try:
            registry.register(subject, versions[0])
        except RegistryUnavailableError:
            raise
        except RegistryError as exc:
            results[0].append(f"{names[0]} refused by the registry: {exc}")
            return results
    for position, schema in enumerate(versions[1:], start=1):
        label = names[position]
        try:
            compatible, messages = compatibility_with_all(registry, subject, schema)
        except RegistryUnavailableError:
            raise
        except RegistryError as exc:
            results[position].append(f"{label}: {exc}")
            continue
        try:
            registry.register(subject, schema)
            refusal = None
        except RegistryUnavailableError:
            raise
        except RegistryError as exc:
            refusal = str(exc)
        if not compatible:
            why = "; ".join(messages) or (refusal or "no reason given")
            results[position].append(
                f"{label} is not {TRANSITIVE} with the earlier versions (registry): {why}"
            )
            if refusal is None:
                results[position].append(
                    f"{label}: the compatibility API said no but the registry registered it"
                )
        elif refusal is not None:
            results[position].append(
                f"{label}: the compatibility API said yes but registering failed: {refusal}"
            )
    return results


def registry_check(
    registry: SchemaRegistryClient,
    subject: str,
    versions: list[dict[str, Any]],
    *,
    delete_after: bool = False,
) -> list[str]:
    """Problems the registry finds registering ``versions`` in order under ``subject``.

    ``subject`` must not exist yet. It is set to ``BACKWARD_TRANSITIVE``; the first version
    is registered, then each later one is put to the compatibility API (against all versions
    registered so far) and registered when the registry accepts it, so the next is checked
    against it too. A version the compatibility API and registration disagree on is reported
    as well. ``delete_after`` removes the subject at the end.
    """
    try:
        results = _registry_by_position(registry, subject, versions)
    finally:
        if delete_after:
            delete_subject(registry, subject)
    return [p for problems in results for p in problems]


# --- report and command line ----------------------------------------------------------------


@dataclass
class KindReport:
    """Per version N of one kind: fastavro problems, and registry problems when checked."""

    kind: SchemaKind
    versions: list[int]
    fastavro: dict[int, list[str]] = field(default_factory=dict)
    registry: dict[int, list[str]] | None = None

    def problems(self) -> list[str]:
        found = [p for n in self.versions for p in self.fastavro.get(n, [])]
        if self.registry is not None:
            found += [f"{self.kind}: {p}" for n in self.versions for p in self.registry[n]]
        if not self.versions:
            found.append(f"{self.kind}: no schema files")
        return found

    def cell(self, n: int) -> str:
        if n not in self.versions:
            return "-"
        offline = "ok" if not self.fastavro.get(n) else "FAIL"
        if self.registry is None:
            return offline
        online = "ok" if not self.registry.get(n) else "FAIL"
        return f"{offline}/{online}"


def report(
    kinds: Sequence[SchemaKind],
    schema_dir: Path | None = None,
    registry: SchemaRegistryClient | None = None,
) -> list[KindReport]:
    """Check every kind offline, and against ``registry`` when given."""
    reports: list[KindReport] = []
    for kind in kinds:
        versions = load_versions(kind, schema_dir)
        numbers = [n for n, _ in versions]
        entry = KindReport(kind, numbers, _transitive_by_version(versions, str(kind)))
        if registry is not None and versions:
            subject = f"compat-check.{kind}.{uuid.uuid4().hex[:12]}"
            try:
                by_position = _registry_by_position(
                    registry, subject, [s for _, s in versions], [f"v{n}" for n in numbers]
                )
            finally:
                delete_subject(registry, subject)
            entry.registry = dict(zip(numbers, by_position, strict=True))
        reports.append(entry)
    return reports


def format_table(reports: Sequence[KindReport]) -> str:
    top = max((n for r in reports for n in r.versions), default=1)
    header = ["kind", *(f"v{n}" for n in range(1, top + 1))]
    rows = [[str(r.kind), *(r.cell(n) for n in range(1, top + 1))] for r in reports]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    parser = argparse.ArgumentParser(
        prog="python -m hub.contract.compat",
        description=(
            "Check that every version of each schema kind reads data written with all earlier "
            f"versions ({TRANSITIVE}): offline with fastavro, and with --registry also by the "
            "schema registry's compatibility API. Exit status 1 if any version breaks it."
        ),
    )
    parser.add_argument(
        "kinds",
        nargs="*",
        type=SchemaKind,
        metavar="KIND",
        help=f"schema kinds to check (default: all of {', '.join(SchemaKind)})",
    )
    parser.add_argument("--schema-dir", type=Path, default=None, help="default: schemas/")
    parser.add_argument(
        "--registry",
        default=os.environ.get("SCHEMA_REGISTRY_URL"),
        help="Confluent-compatible registry URL (default: $SCHEMA_REGISTRY_URL; none: offline)",
    )
    parser.add_argument("--offline", action="store_true", help="skip the registry check")
    args = parser.parse_args(argv)
    kinds: list[SchemaKind] = args.kinds or list(SchemaKind)
    client = None if args.offline or not args.registry else SchemaRegistryClient(args.registry)
    try:
        reports = report(kinds, args.schema_dir, client)
    except RegistryUnavailableError as exc:
        print(f"error: {exc}", file=out)
        return 2
    finally:
        if client is not None:
            client.close()
    print(format_table(reports), file=out)
    legend = "cell: fastavro" + ("/registry" if client is not None else "")
    print(f"({legend}; ok = reads data of every earlier version, - = no such version)", file=out)
    problems = [p for r in reports for p in r.problems()]
    for problem in problems:
        print(f"problem: {problem}", file=out)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
