"""Schema evolution without a broker: sample records, fastavro resolution, BACKWARD_TRANSITIVE."""

from __future__ import annotations

import copy
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import fastavro
import pytest

from hub.contract.compat import (
    check_transitive,
    fastavro_backward_problems,
    format_table,
    load_versions,
    main,
    report,
)
from hub.contract.event_types import DossierEventType, FeedbackEventType
from hub.contract.samples import SampleError, sample_records
from hub.contract.schemas import SCHEMA_DIR, SchemaKind, full_name, load_schema, versions

ROOT = Path(__file__).resolve().parents[2]


# --- helpers shared with tests/integration/test_registry_contract.py -------------------------


def branch(schema: dict[str, Any], record_name: str) -> dict[str, Any]:
    """The payload union's record ``record_name`` inside ``schema`` (modifiable)."""
    payload = next(f for f in schema["fields"] if f["name"] == "payload")
    return next(b for b in payload["type"] if b["name"] == record_name)


def with_optional_field(schema: dict[str, Any]) -> dict[str, Any]:
    """The README's example change: ``desk_no`` added to DossierReceived, optional, default."""
    new = copy.deepcopy(schema)
    branch(new, "DossierReceived")["fields"].append(
        {
            "name": "desk_no",
            "type": ["null", "int"],
            "default": None,
            "doc": "Counter of the one-stop desk that received the dossier (quầy tiếp nhận).",
        }
    )
    return new


def with_required_field(schema: dict[str, Any]) -> dict[str, Any]:
    """Breaking: a new field without a default (old data has no value for it)."""
    new = copy.deepcopy(schema)
    branch(new, "DossierReceived")["fields"].append(
        {"name": "desk_no", "type": "int", "doc": "Counter of the one-stop desk."}
    )
    return new


def with_type_change(schema: dict[str, Any]) -> dict[str, Any]:
    """Breaking: ``source_system`` string → int (no Avro promotion does that)."""
    new = copy.deepcopy(schema)
    next(f for f in new["fields"] if f["name"] == "source_system")["type"] = "int"
    return new


BREAKING: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "required-field-without-default": with_required_field,
    "type-change-string-to-int": with_type_change,
}


def write_versions(folder: Path, schemas: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, schema in enumerate(schemas, start=1):
        (folder / f"v{n}.avsc").write_text(json.dumps(schema, ensure_ascii=False), "utf-8")


def union_sites(schema: Any) -> Iterator[tuple[str, list[str]]]:
    """(``Record.field``, branch labels) of every union field in a raw schema."""
    if isinstance(schema, dict) and schema.get("type") == "record":
        for fld in schema["fields"]:
            ftype = fld["type"]
            if isinstance(ftype, list):
                labels = [b if isinstance(b, str) else str(b.get("name", b["type"])) for b in ftype]
                yield f"{schema['name']}.{fld['name']}", labels
                for b in ftype:
                    yield from union_sites(b)
            else:
                yield from union_sites(ftype)


def label_of(value: Any) -> str:
    """Which branch a sample value took, in the terms of :func:`union_sites`."""
    if value is None:
        return "null"
    if isinstance(value, tuple):
        return str(value[0]).rsplit(".", 1)[-1]
    if isinstance(value, datetime):  # before date: a datetime is a date
        return "long"  # timestamp-millis
    if isinstance(value, date):
        return "int"  # date
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "int"}[type(value)]


def taken_labels(value: Any, record_name: str, site: str) -> Iterator[str]:
    """Labels taken at ``site`` anywhere inside ``value``, a record named ``record_name``."""
    site_record, site_field = site.split(".")
    if isinstance(value, tuple):
        yield from taken_labels(value[1], str(value[0]).rsplit(".", 1)[-1], site)
    elif isinstance(value, dict):
        if record_name == site_record:
            yield label_of(value[site_field])
        for inner in value.values():
            yield from taken_labels(inner, "", site)


def round_trip(schema: dict[str, Any], record: dict[str, Any]) -> Any:
    parsed = fastavro.parse_schema(schema)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, record)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, parsed, None, return_record_name=True)


# --- sample_records -------------------------------------------------------------------------

KINDS = list(SchemaKind)


@pytest.mark.parametrize("kind", KINDS)
def test_samples_are_valid_deterministic_and_round_trip(kind: SchemaKind) -> None:
    schema = load_schema(kind)
    before = copy.deepcopy(schema)
    samples = sample_records(schema)
    assert schema == before, "the caller's schema must not be annotated"
    assert samples == sample_records(load_schema(kind)), "same records on every call"
    parsed = fastavro.parse_schema(schema)
    for record in samples:
        assert fastavro.validation.validate(record, parsed, raise_errors=True)
        assert round_trip(schema, record) == record


def test_samples_take_every_payload_branch() -> None:
    dossier = {r["payload"][0] for r in sample_records(load_schema(SchemaKind.DOSSIER_EVENT))}
    assert dossier == {full_name(t) for t in DossierEventType}
    feedback = {r["payload"][0] for r in sample_records(load_schema(SchemaKind.FEEDBACK_EVENT))}
    assert feedback == {full_name(t) for t in FeedbackEventType}


@pytest.mark.parametrize("kind", KINDS)
def test_samples_take_every_branch_of_every_union(kind: SchemaKind) -> None:
    schema = load_schema(kind)
    samples = sample_records(schema)
    sites = list(union_sites(schema))
    assert sites, "every kind has optional fields"
    for site, labels in sites:
        taken = {label for r in samples for label in taken_labels(r, schema["name"], site)}
        assert taken == set(labels), site


def test_samples_are_few() -> None:
    # 15 branches; DossierSubmitted, DossierReceived and StepStarted come back for their
    # optional fields and the third channel: a greedy cover, not the product of all choices.
    assert len(sample_records(load_schema(SchemaKind.DOSSIER_EVENT))) <= 20


def test_samples_use_every_enum_symbol() -> None:
    samples = sample_records(load_schema(SchemaKind.DOSSIER_ALERT))
    assert {r["kind"] for r in samples} == {"DUE_SOON", "OVERDUE", "APOLOGY_OWED"}
    assert {r["scope"] for r in samples} == {"DOSSIER", "STEP"}
    channels = {
        r["payload"][1]["channel"]
        for r in sample_records(load_schema(SchemaKind.DOSSIER_EVENT))
        if r["payload"][0].endswith(".DossierSubmitted")
    }
    assert channels == {"IN_PERSON", "ONLINE", "POSTAL"}


def test_samples_use_python_types_fastavro_reads_back() -> None:
    record = sample_records(load_schema(SchemaKind.DOSSIER_EVENT))[0]
    assert isinstance(record["event_id"], UUID)
    assert record["occurred_at"].tzinfo is not None
    assert record["occurred_at"].microsecond % 1000 == 0, "timestamp-millis keeps milliseconds"


EVERYTHING: dict[str, Any] = {
    "type": "record",
    "name": "Everything",
    "namespace": "test.samples",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "raw", "type": "bytes"},
        {"name": "text", "type": "string"},
        {"name": "nothing", "type": "null"},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
        {"name": "hash2", "type": "Hash"},
        {"name": "tags", "type": {"type": "array", "items": ["null", "string", "Hash"]}},
        {
            "name": "attrs",
            "type": {
                "type": "map",
                "values": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]},
            },
        },
        {
            "name": "money",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {
            "name": "money_fixed",
            "type": {
                "type": "fixed",
                "name": "Money",
                "size": 6,
                "logicalType": "decimal",
                "precision": 12,
                "scale": 3,
            },
        },
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at_ms", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "at_us", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "ts_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "local_ms", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "odd", "type": {"type": "string", "logicalType": "no-such-logical-type"}},
        {
            "name": "node",
            "type": {
                "type": "record",
                "name": "Node",
                "namespace": "other.ns",
                "fields": [
                    {"name": "value", "type": "int"},
                    {"name": "next", "type": ["null", "Node"], "default": None},
                ],
            },
        },
        {
            "name": "choice",
            "type": ["null", "other.ns.Node", "test.samples.Hash", "Colour", "long"],
        },
    ],
}


def test_samples_of_every_avro_type() -> None:
    samples = sample_records(EVERYTHING)
    parsed = fastavro.parse_schema(copy.deepcopy(EVERYTHING))
    for record in samples:
        assert fastavro.validation.validate(record, parsed, raise_errors=True)
        assert round_trip(copy.deepcopy(EVERYTHING), record) == record
    first = samples[0]
    assert isinstance(first["money"], Decimal)
    assert first["money"].as_tuple().exponent == -2
    assert isinstance(first["day"], date)
    assert isinstance(first["at_ms"], time)
    assert first["ts_us"].tzinfo is not None
    assert first["local_ms"].tzinfo is None
    assert isinstance(first["id"], UUID)
    assert isinstance(first["odd"], str)
    # fastavro's reader names the branch of any named type given by reference, not only records
    named = {r["choice"][0] for r in samples if isinstance(r["choice"], tuple)}
    assert named == {"other.ns.Node", "test.samples.Hash", "test.samples.Colour"}
    assert {type(r["choice"]).__name__ for r in samples} == {"NoneType", "tuple", "int"}
    assert {type(r["node"]["next"]).__name__ for r in samples} == {"NoneType", "tuple"}


def test_samples_need_a_record() -> None:
    with pytest.raises(SampleError):
        sample_records({"type": "enum", "name": "E", "symbols": ["A"]})
    with pytest.raises(SampleError):
        sample_records({"type": "record", "name": "R", "fields": [{"name": "x", "type": "Y"}]})


def test_samples_of_a_parsed_schema_equal_those_of_the_raw_one() -> None:
    raw = load_schema(SchemaKind.DOSSIER_STATUS)
    parsed = fastavro.parse_schema(load_schema(SchemaKind.DOSSIER_STATUS))
    assert isinstance(parsed, dict)
    assert "__named_schemas" in parsed, "really the parsed form"
    assert sample_records(parsed) == sample_records(raw)


# --- fastavro resolution ----------------------------------------------------------------------

V1 = load_schema(SchemaKind.DOSSIER_EVENT, 1)


def test_identical_schema_is_compatible() -> None:
    assert fastavro_backward_problems(V1, V1) == []


def test_optional_field_with_default_is_compatible() -> None:
    assert fastavro_backward_problems(V1, with_optional_field(V1)) == []


def test_required_field_without_default_is_reported_once_with_its_samples() -> None:
    problems = fastavro_backward_problems(V1, with_required_field(V1))
    assert len(problems) == 1
    assert "desk_no" in problems[0]
    assert "DossierReceived" in problems[0]


def test_type_change_is_reported() -> None:
    problems = fastavro_backward_problems(V1, with_type_change(V1))
    assert problems
    assert "string" in problems[0]
    assert "int" in problems[0]


def test_removed_union_branch_is_reported() -> None:
    new = copy.deepcopy(V1)
    payload = next(f for f in new["fields"] if f["name"] == "payload")
    payload["type"] = [b for b in payload["type"] if b["name"] != "ApologyIssued"]
    problems = fastavro_backward_problems(V1, new)
    assert problems
    assert "ApologyIssued" in " ".join(problems)


def test_removed_enum_symbol_is_reported() -> None:
    new = copy.deepcopy(V1)
    branch(new, "DossierSubmitted")["fields"][1]["type"]["symbols"].remove("POSTAL")
    assert fastavro_backward_problems(V1, new)


def test_promotion_is_compatible() -> None:
    new = copy.deepcopy(V1)
    next(f for f in new["fields"] if f["name"] == "schema_version")["type"] = "long"
    assert fastavro_backward_problems(V1, new) == []


def test_given_samples_are_used() -> None:
    old = {"type": "record", "name": "R", "fields": [{"name": "a", "type": ["null", "string"]}]}
    new = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}
    assert fastavro_backward_problems(old, new, [{"a": "x"}]) == []
    assert fastavro_backward_problems(old, new)  # the generated samples include a = null


def test_invalid_schemas_are_problems_not_exceptions() -> None:
    bad = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "strin"}]}
    assert "new schema" in fastavro_backward_problems(V1, bad)[0]
    assert "old schema" in fastavro_backward_problems(bad, V1)[0]


# --- BACKWARD_TRANSITIVE over the files ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_version_reads_all_earlier_ones(kind: SchemaKind) -> None:
    assert [n for n, _ in load_versions(kind)] == versions(kind)
    assert check_transitive(kind) == []


def copy_kind(tmp_path: Path, kind: SchemaKind) -> Path:
    shutil.copytree(SCHEMA_DIR / kind, tmp_path / kind)
    return tmp_path


def latest(kind: SchemaKind) -> dict[str, Any]:
    return load_schema(kind)


def test_v2_with_an_optional_field_passes(tmp_path: Path) -> None:
    kind = SchemaKind.DOSSIER_EVENT
    schema_dir = copy_kind(tmp_path, kind)
    n = versions(kind)[-1] + 1
    (schema_dir / kind / f"v{n}.avsc").write_text(json.dumps(with_optional_field(latest(kind))))
    assert [v for v, _ in load_versions(kind, schema_dir)] == [*versions(kind), n]
    assert check_transitive(kind, schema_dir) == []


@pytest.mark.parametrize("change", BREAKING)
def test_a_breaking_copy_fails(tmp_path: Path, change: str) -> None:
    kind = SchemaKind.DOSSIER_EVENT
    schema_dir = copy_kind(tmp_path, kind)
    n = versions(kind)[-1] + 1
    (schema_dir / kind / f"v{n}.avsc").write_text(json.dumps(BREAKING[change](latest(kind))))
    problems = check_transitive(kind, schema_dir)
    assert problems
    assert all(p.startswith(f"dossier-event v{n} cannot read v") for p in problems)
    assert len(problems) == len(versions(kind)), "one problem per earlier version"


def test_transitive_not_just_the_previous_version(tmp_path: Path) -> None:
    # v2 adds a field with a default; v3 drops the default: v3 reads v2 data (the field is
    # there) but not v1 data. Plain BACKWARD would pass v3; BACKWARD_TRANSITIVE must not.
    v1: dict[str, Any] = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "a", "type": "string"}],
    }
    v2 = copy.deepcopy(v1)
    v2["fields"].append({"name": "b", "type": "int", "default": 0})
    v3 = copy.deepcopy(v2)
    del v3["fields"][1]["default"]
    write_versions(tmp_path / SchemaKind.DOSSIER_ALERT, [v1, v2, v3])
    problems = check_transitive(SchemaKind.DOSSIER_ALERT, tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("dossier-alert v3 cannot read v1 data")
    assert fastavro_backward_problems(v2, v3) == []


def test_missing_or_invalid_files_are_problems(tmp_path: Path) -> None:
    assert "no vN.avsc files" in check_transitive(SchemaKind.DOSSIER_ALERT, tmp_path)[0]
    folder = tmp_path / SchemaKind.DOSSIER_ALERT
    write_versions(folder, [latest(SchemaKind.DOSSIER_ALERT)])
    (folder / "v2.avsc").write_text(json.dumps({"type": "record", "name": "X", "fields": 3}))
    (folder / "notes.txt").write_text("ignored")
    problems = check_transitive(SchemaKind.DOSSIER_ALERT, tmp_path)
    assert len(problems) == 1
    assert "v2 is not valid Avro" in problems[0]


# --- command line -------------------------------------------------------------------------------


def test_cli_table_for_the_shipped_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--offline"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[0] == "kind"
    assert lines[0].split()[1] == "v1"
    for kind in SchemaKind:
        row = next(line for line in lines if line.startswith(f"{kind} "))
        assert set(row.split()[1:]) <= {"ok", "-"}
    assert "problem" not in out


def test_cli_reports_a_breaking_version_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for kind in SchemaKind:
        copy_kind(tmp_path, kind)
    alert = SchemaKind.DOSSIER_ALERT
    n = versions(alert)[-1] + 1
    (tmp_path / alert / f"v{n}.avsc").write_text(json.dumps(with_type_change(latest(alert))))
    code = main(["--offline", "--schema-dir", str(tmp_path), "dossier-alert", "dossier-event"])
    out = capsys.readouterr().out
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("dossier-alert "))
    assert row.split()[n] == "FAIL"
    assert row.split()[1] == "ok"
    assert f"problem: dossier-alert v{n} cannot read v1 data" in out
    assert not any(line.startswith("feedback-event") for line in out.splitlines())


def test_format_table_marks_missing_versions(tmp_path: Path) -> None:
    write_versions(tmp_path / SchemaKind.DOSSIER_ALERT, [latest(SchemaKind.DOSSIER_ALERT)] * 2)
    copy_kind(tmp_path, SchemaKind.FEEDBACK_EVENT)
    table = format_table(report([SchemaKind.DOSSIER_ALERT, SchemaKind.FEEDBACK_EVENT], tmp_path))
    assert table.splitlines()[0].split() == ["kind", "v1", "v2"]
    assert table.splitlines()[2].split() == ["feedback-event", "ok", "-"]


def test_python_dash_m_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hub.contract.compat", "--offline", "dossier-status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split() == ["dossier-status", "ok"]
