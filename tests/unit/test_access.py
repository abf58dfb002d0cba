"""Access by role: who a key is, what each role may see, keys hashed at rest and reloaded."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hub.access.commands import add_key
from hub.access.commands import run_access_command as _run
from hub.access.keys import hash_api_key
from hub.access.roles import Principal, Role, mask_name
from hub.access.store import AccessStore
from hub.cli import build_parser

JUSTICE = "000.00.03.H40"
HEALTH = "000.00.04.H40"

province = Principal("so-noi-vu", Role.PROVINCE, None, True)
justice = Principal("tu-phap", Role.AGENCY, JUSTICE, True)
figures = Principal("cong-quoc-gia", Role.FIGURES)


def test_the_province_sees_every_dossier_and_every_figure() -> None:
    assert province.may_read_dossier([HEALTH])
    assert province.may_read_agency(JUSTICE) and province.may_read_agency(HEALTH)
    assert province.may_read_province and province.lists_dossiers
    assert province.scope is None and province.sees_personal_data


def test_an_agency_sees_the_dossiers_it_holds_or_held_and_its_own_figures_only() -> None:
    assert justice.may_read_dossier([JUSTICE])
    assert justice.may_read_dossier([HEALTH, JUSTICE])  # held it before a transfer
    assert not justice.may_read_dossier([HEALTH])
    assert justice.may_read_agency(JUSTICE)
    assert not justice.may_read_agency(HEALTH)
    assert not justice.may_read_province
    assert justice.scope == JUSTICE


def test_a_figures_key_sees_figures_and_no_dossier_and_never_names() -> None:
    assert not figures.lists_dossiers
    assert not figures.may_read_dossier([JUSTICE])
    assert figures.may_read_agency(JUSTICE) and figures.may_read_province
    assert not figures.sees_personal_data
    with pytest.raises(ValueError, match="never sees personal data"):
        Principal("x", Role.FIGURES, None, True)
    with pytest.raises(ValueError, match="names its agency"):
        Principal("x", Role.AGENCY)


def test_a_name_is_masked_to_its_initials() -> None:
    assert mask_name("Nguyễn Văn An") == "N***** V** A*"
    assert mask_name(None) is None


def test_add_key_stores_only_the_hash_and_the_file_is_its_owners(tmp_path: Path) -> None:
    path = tmp_path / "access.json"
    key = add_key(path, "so-noi-vu", Role.PROVINCE)
    assert len(key) >= 32
    text = path.read_text()
    assert key not in text
    assert hash_api_key(key) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = AccessStore(path)
    assert store.principal(key) == Principal("so-noi-vu", Role.PROVINCE, None, True)
    assert store.principal(key + "x") is None
    with pytest.raises(ValueError, match="is taken"):
        add_key(path, "so-noi-vu", Role.PROVINCE)


def test_a_key_added_while_running_works_within_a_reload_and_a_removed_one_stops(
    tmp_path: Path,
) -> None:
    path = tmp_path / "access.json"
    first = add_key(path, "first", Role.FIGURES)
    store = AccessStore(path, reload_interval_s=0)
    second = add_key(path, "second", Role.AGENCY, agency_code=JUSTICE, personal_data=False)
    assert store.principal(second) == Principal("second", Role.AGENCY, JUSTICE, False)
    document = json.loads(path.read_text())
    document["credentials"] = [e for e in document["credentials"] if e["key_id"] != "first"]
    path.write_text(json.dumps(document) + "\n")
    assert store.principal(first) is None
    assert store.principal(second) is not None


def test_a_broken_file_keeps_the_previous_keys_and_is_refused_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "access.json"
    key = add_key(path, "first", Role.PROVINCE)
    store = AccessStore(path, reload_interval_s=0)
    path.write_text('{"credentials": [{"key_id": "x", "role": "mayor"}]}')
    assert store.principal(key) is not None  # the previous keys stay in force
    assert "not reloaded" in caplog.text
    with pytest.raises(ValueError, match=r"credentials\.0\.role"):
        AccessStore(path)
    with pytest.raises(ValueError, match="No such file"):
        AccessStore(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ({"role": "agency"}, "needs agency_code"),
        ({"role": "province", "agency_code": JUSTICE}, "has no agency_code"),
        ({"role": "figures", "personal_data": True}, "never sees personal data"),
        ({"role": "province", "api_key": "too-short"}, "at least 16"),
    ],
)
def test_an_entry_breaking_a_rule_is_named(
    tmp_path: Path, entry: dict[str, object], rule: str
) -> None:
    path = tmp_path / "access.json"
    body = {"key_id": "k", "api_key_sha256": "0" * 64, **entry}
    if "api_key" in entry:
        del body["api_key_sha256"]
    path.write_text(json.dumps({"credentials": [body]}))
    with pytest.raises(ValueError, match=rule):
        AccessStore(path)


def test_the_ingress_keys_of_an_agency_read_the_api_as_that_agency(tmp_path: Path) -> None:
    ingress = tmp_path / "ingress-credentials.json"
    ingress.write_text(
        json.dumps(
            {
                "credentials": [
                    {"agency_code": JUSTICE, "key_id": "tp-1", "api_key": "k" * 24},
                    {
                        "agency_code": HEALTH,
                        "key_id": "yt-1",
                        "api_key_sha256": hash_api_key("y" * 24),
                    },
                    {"agency_code": HEALTH, "key_id": "yt-hmac", "hmac_secret": "s" * 24},
                ]
            }
        )
    )
    store = AccessStore(None, ingress)
    assert store.principal("k" * 24) == Principal("tp-1", Role.AGENCY, JUSTICE, True)
    assert store.principal("y" * 24) == Principal("yt-1", Role.AGENCY, HEALTH, True)
    assert store.principal("s" * 24) is None  # an HMAC secret is not a key one presents
    assert store.size == 2


def test_hub_access_add_prints_the_key_once_and_list_shows_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "access.json"
    args = build_parser().parse_args(
        ["access", "add", "--file", str(path), "--key-id", "tp", "--role", "agency",
         "--agency", JUSTICE, "--no-personal-data"]
    )  # fmt: skip
    assert _run(args) == 0
    key = capsys.readouterr().out.strip()
    assert AccessStore(path).principal(key) == Principal("tp", Role.AGENCY, JUSTICE, False)
    assert _run(build_parser().parse_args(["access", "list", "--file", str(path)])) == 0
    listed = capsys.readouterr().out
    assert listed == f"tp\tagency\t{JUSTICE}\tnames masked\n"
    bad = build_parser().parse_args(
        ["access", "add", "--file", str(path), "--key-id", "x", "--role", "agency"]
    )
    assert _run(bad) == 1
    assert "needs agency_code" in capsys.readouterr().err
