"""Reference data: shipped files load, and each broken file names file, path and rule."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from hub.domain.status import DossierStatus
from hub.reference import (
    DEFAULT_ROOT,
    ReferenceData,
    ReferenceDataError,
    UnknownAgencyError,
    load_reference,
)


@pytest.fixture(scope="module")
def ref() -> ReferenceData:
    return load_reference()


def _levels(ref: ReferenceData, on: date, level: str) -> list[str]:
    return [a.name for a in ref.agencies.active(on) if a.level == level]


# ----------------------------------------------------------------- shipped data
def test_loads_quickly() -> None:
    t0 = time.perf_counter()
    load_reference()
    assert time.perf_counter() - t0 < 1.0


def test_fourteen_departments_from_march_2025(ref: ReferenceData) -> None:
    assert len(_levels(ref, date(2025, 3, 1), "department")) == 14
    assert len(_levels(ref, date(2025, 2, 28), "department")) == 20


def test_district_level_units(ref: ReferenceData) -> None:
    # 21 until Cửa Lò joined Vinh on 2024-12-01 (NQ 1243/NQ-UBTVQH15), then 20.
    assert len(_levels(ref, date(2024, 11, 30), "district")) == 21
    assert len(_levels(ref, date(2025, 6, 30), "district")) == 20
    assert _levels(ref, date(2025, 7, 1), "district") == []


def test_commune_level_units_from_july_2025(ref: ReferenceData) -> None:
    communes = [a for a in ref.agencies.active(date(2025, 7, 1)) if a.level == "commune"]
    assert len(communes) == 130
    wards = [a for a in communes if a.name.startswith("Ủy ban nhân dân phường")]
    assert len(wards) == 11
    assert all(a.dvhc_code is not None for a in communes)
    assert _levels(ref, date(2025, 6, 30), "commune") == []


def test_resolve_follows_merges(ref: ReferenceData) -> None:
    transport = "000.00.24.H40"  # Sở Giao thông vận tải
    assert ref.agencies.resolve(transport, date(2025, 2, 1)).code == transport
    assert ref.agencies.resolve(transport, date(2025, 3, 1)).name == "Sở Xây dựng"
    assert not ref.agencies.is_active(transport, date(2025, 3, 1))
    # Cửa Lò -> Vinh (2024-12-01) -> phường Trường Vinh (2025-07-01)
    assert ref.agencies.resolve("000.02.00.H40", date(2025, 1, 1)).code == "000.01.00.H40"
    assert ref.agencies.resolve("000.02.00.H40", date(2025, 7, 1)).name.endswith("Trường Vinh")


def test_unknown_agency(ref: ReferenceData) -> None:
    with pytest.raises(UnknownAgencyError, match=r"999\.99\.99\.H40"):
        ref.agencies.get("999.99.99.H40")
    with pytest.raises(UnknownAgencyError, match="no agency in force"):
        ref.agencies.resolve("000.00.12.H40", date(2025, 2, 1))  # created 2025-03-01


def test_procedures(ref: ReferenceData) -> None:
    assert 30 <= len(ref.procedures) <= 40
    birth = ref.procedures["1.001193"]
    assert birth.name == "Đăng ký khai sinh"
    assert birth.responsible_agency is None
    for p in ref.procedures.values():
        assert abs(sum(s.share for s in p.steps) - 1.0) <= 0.001
        if p.responsible_agency is not None:
            assert ref.agencies.is_active(p.responsible_agency, date(2025, 7, 1))


def test_portal_codes(ref: ReferenceData) -> None:
    assert set(ref.portal_codes) == set(DossierStatus)
    assert ref.portal_codes[DossierStatus.NEW] == 1
    assert ref.portal_codes[DossierStatus.RESULT_RETURNED] == 10
    assert sorted(ref.portal_codes.values()) == list(range(1, 11))


# ----------------------------------------------------------------- broken files
Mutation = Callable[[Any], None]


def _broken(tmp_path: Path, rel: str, mutate: Mutation) -> ReferenceDataError:
    root = tmp_path / "data"
    shutil.copytree(DEFAULT_ROOT, root)
    file = root / rel
    data = json.loads(file.read_text(encoding="utf-8"))
    mutate(data)
    file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ReferenceDataError) as info:
        load_reference(root)
    return info.value


def _agency_index(data: Any, code: str) -> int:
    return next(i for i, a in enumerate(data["agencies"]) if a["code"] == code)


def _set(path: list[Any], value: Any) -> Mutation:
    def mutate(data: Any) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _merge_cycle(data: Any) -> None:
    i = _agency_index(data, "000.00.06.H40")  # Sở Xây dựng, successor of Sở GTVT
    data["agencies"][i]["effective_to"] = "2030-12-31"
    data["agencies"][i]["merged_into"] = "000.00.24.H40"


def _merged_into_not_effective(data: Any) -> None:
    i = _agency_index(data, "000.00.24.H40")
    data["agencies"][i]["merged_into"] = "001.01.00.H40"  # a ward, only from 2025-07-01


def _duplicate_overlap(data: Any) -> None:
    data["agencies"].append(dict(data["agencies"][_agency_index(data, "000.00.03.H40")]))


def _days_off_dup(data: Any) -> None:
    data["days_off"].append(dict(data["days_off"][0]))


def _days_off_outside(data: Any) -> None:
    data["days_off"][0]["date"] = "2026-01-01"


def _unknown_status(data: Any) -> None:
    data["statuses"]["TRANSFERRED"] = {"code": 11, "label_vi": "x", "label_en": "x"}


def _procedure_dup(data: Any) -> None:
    data["procedures"].append(dict(data["procedures"][0]))


CASES: list[tuple[str, str, Mutation, str, str]] = [
    (
        "agencies.json",
        "unknown merged_into",
        lambda d: _set(
            ["agencies", _agency_index(d, "000.00.24.H40"), "merged_into"], "000.00.99.H40"
        )(d),
        "agencies[{i24}].merged_into",
        "unknown code",
    ),
    ("agencies.json", "merge cycle", _merge_cycle, "merged_into", "cycle in merges"),
    (
        "agencies.json",
        "merged_into not effective",
        _merged_into_not_effective,
        "agencies[{i24}].merged_into",
        "not effective on 2025-03-01",
    ),
    ("agencies.json", "duplicate overlap", _duplicate_overlap, "effective_from", "overlapping"),
    (
        "agencies.json",
        "bad code",
        lambda d: _set(["agencies", 0, "code"], "000.00.H40")(d),
        "agencies[0].code",
        "pattern",
    ),
    (
        "agencies.json",
        "unknown parent",
        lambda d: _set(["agencies", 1, "parent"], "000.00.98.H40")(d),
        "agencies[1].parent",
        "unknown code",
    ),
    (
        "procedures.json",
        "shares",
        lambda d: _set(["procedures", 0, "steps", 0, "share"], 0.5)(d),
        "procedures[0].steps",
        "sum to",
    ),
    (
        "procedures.json",
        "unknown agency",
        lambda d: _set(["procedures", 0, "responsible_agency"], "000.00.97.H40")(d),
        "procedures[0].responsible_agency",
        "unknown code",
    ),
    ("procedures.json", "duplicate procedure", _procedure_dup, "code", "duplicate procedure"),
    ("calendar/2025.json", "day listed twice", _days_off_dup, "days_off[", "listed twice"),
    ("calendar/2025.json", "outside year", _days_off_outside, "days_off[0].date", "outside"),
    (
        "calendar/2025.json",
        "working weekend on a weekday",
        lambda d: _set(["working_weekends", 0, "date"], "2025-02-07")(d),
        "working_weekends[0].date",
        "not a Saturday or Sunday",
    ),
    (
        "calendar/2026.json",
        "replaces a day not off",
        lambda d: _set(["working_weekends", 0, "replaces"], "2026-01-05")(d),
        "working_weekends[0].replaces",
        "not listed in days_off",
    ),
    (
        "portal_status.json",
        "missing mapping",
        lambda d: d["statuses"].pop("STOPPED"),
        "statuses.STOPPED",
        "missing status mapping",
    ),
    ("portal_status.json", "unknown status", _unknown_status, "TRANSFERRED", "unknown status"),
    (
        "portal_status.json",
        "duplicate code",
        lambda d: _set(["statuses", "NEW", "code"], 2)(d),
        "statuses.RECEIVED.code",
        "also used",
    ),
]


@pytest.mark.parametrize(
    ("rel", "label", "mutate", "path", "rule"), CASES, ids=[c[1] for c in CASES]
)
def test_broken_file_is_reported(
    tmp_path: Path, rel: str, label: str, mutate: Mutation, path: str, rule: str
) -> None:
    raw = json.loads((DEFAULT_ROOT / "agencies.json").read_text(encoding="utf-8"))
    path = path.format(i24=_agency_index(raw, "000.00.24.H40"))
    err = _broken(tmp_path, rel, mutate)
    message = str(err)
    assert message.startswith(f"{rel}: "), message
    assert path in message, message
    assert rule in message, message


def test_non_nfc_text_is_rejected(tmp_path: Path) -> None:
    decomposed = "Sở Tư pha\u0301p"  # combining acute accent: NFD form
    err = _broken(tmp_path, "agencies.json", _set(["agencies", 1, "name"], decomposed))
    assert "agencies[1].name" in str(err)
    assert "NFC" in str(err)


def test_invalid_json_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(DEFAULT_ROOT, root)
    (root / "procedures.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=r"^procedures\.json: \$: invalid JSON"):
        load_reference(root)
