"""Signed chain heads: whoever can write the audit topic but lacks the key cannot extend a
chain so that it verifies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.audit.chain import entry_for, verify_chain
from hub.audit.signing import (
    KeyFileError,
    TrustedKeys,
    generate_key,
    load_public_keys,
    load_signer,
    public_key_path,
)
from tests.unit.test_audit import CODE, TOPIC, chain


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "audit-signing.key"
    generate_key(path)
    return path


def signed_chain(key_file: Path, n: int, heads: set[int]) -> list[dict[str, Any]]:
    """``n`` entries, those at the indexes in ``heads`` signed (checkpoint heads)."""
    signer = load_signer(key_file)
    entries = chain(n)
    return [signer.sign(e) if i in heads else e for i, e in enumerate(entries)]


def trusted(key_file: Path) -> TrustedKeys:
    return load_public_keys([public_key_path(key_file)])


def test_a_chain_ending_in_a_signed_head_verifies(key_file: Path) -> None:
    entries = signed_chain(key_file, 6, heads={2, 5})
    assert verify_chain(entries, keys=trusted(key_file)) == []
    assert verify_chain(entries) == []  # the hashes alone still check out


def test_an_appended_entry_with_the_right_seq_link_and_hash_is_forged(key_file: Path) -> None:
    entries = signed_chain(key_file, 4, heads={3})
    forged = entry_for(
        entries[-1], topic=TOPIC, partition=0, offset=999, event_id="made-up",
        event_type="DossierProcessed", dossier_code=CODE.format(1), record=b"never sent",
    )  # fmt: skip
    assert forged["seq"] == 5 and forged["prev_hash"] == entries[-1]["hash"]
    assert verify_chain([*entries, forged]) == []  # what a chain without keys could not see
    [problem] = verify_chain([*entries, forged], keys=trusted(key_file))
    assert (problem.kind, problem.seq) == ("forged", 5)
    assert "last entry is not signed" in problem.message


def test_a_head_signed_with_another_key_or_a_copied_signature_is_forged(
    key_file: Path, tmp_path: Path
) -> None:
    entries = signed_chain(key_file, 3, heads={2})
    other = generate_key(tmp_path / "other.key")
    [foreign] = verify_chain([*entries[:2], other.sign(entries[2])], keys=trusted(key_file))
    assert foreign.kind == "forged" and "not a trusted key" in foreign.message
    forged = entry_for(
        entries[-1], topic=TOPIC, partition=0, offset=50, event_id="made-up",
        event_type="DossierProcessed", dossier_code=CODE.format(1), record=b"x",
    )  # fmt: skip
    copied = {**forged, "key_id": entries[2]["key_id"], "sig": entries[2]["sig"]}
    [problem] = verify_chain([*entries, copied], keys=trusted(key_file))
    assert problem.kind == "forged" and "does not verify" in problem.message
    garbled = {**entries[2], "sig": "zz"}
    [bad] = verify_chain([*entries[:2], garbled], keys=trusted(key_file))
    assert bad.kind == "forged"


def test_a_signature_does_not_change_the_entry_hash(key_file: Path) -> None:
    [plain] = chain(1)
    [signed] = signed_chain(key_file, 1, heads={0})
    assert signed["hash"] == plain["hash"]
    assert {*signed} - {*plain} == {"key_id", "sig"}
    assert len(signed["key_id"]) == 16


def test_a_private_key_others_can_read_is_refused(key_file: Path) -> None:
    key_file.chmod(0o640)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_signer(key_file)
    key_file.chmod(0o600)
    assert load_signer(key_file).key_id == next(iter(trusted(key_file).by_id))


def test_key_files_are_created_private_and_never_overwritten(key_file: Path) -> None:
    assert key_file.stat().st_mode & 0o077 == 0
    before = key_file.read_bytes()
    with pytest.raises(KeyFileError, match="exists already"):
        generate_key(key_file)
    assert key_file.read_bytes() == before


def test_unusable_key_files_are_clear_errors(tmp_path: Path, key_file: Path) -> None:
    with pytest.raises(KeyFileError, match="audit signing key"):
        load_signer(tmp_path / "missing.key")
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_signer(junk)
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_keys([junk])
    assert len(load_public_keys([key_file.parent]).by_id) == 1  # a directory: its *.pub
