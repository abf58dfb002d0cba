"""The audit chain without Kafka: entries, and what the verifier finds when one is tampered."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.audit.chain import GENESIS, canonical, entry_for, entry_hash, verify_chain
from hub.audit.trail import encode_entry
from hub.audit.tsa import TsaError, file_stem, query, reply, verify

TOPIC = "dossier.events"
CODE = "000.00.03.H40-261126-{:04d}"


def chain(n: int, partition: int = 0) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for i in range(n):
        entries.append(
            entry_for(
                entries[-1] if entries else None,
                topic=TOPIC,
                partition=partition,
                offset=10 + i,
                event_id=f"id-{i}",
                event_type="DossierSubmitted",
                dossier_code=CODE.format(i),
                record=f"record {i}".encode(),
            )
        )
    return entries


def test_entries_link_by_hash_and_count_from_one() -> None:
    entries = chain(3)
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["prev_hash"] == GENESIS
    assert entries[1]["prev_hash"] == entries[0]["hash"]
    assert entries[0]["chain"] == "dossier.events:0"
    assert entries[0]["hash"] == entry_hash(entries[0])
    assert b'"hash"' not in canonical(entries[0])
    assert verify_chain(entries) == []
    assert verify_chain([]) == []


def test_a_replayed_record_gets_the_identical_entry_and_the_repeat_is_harmless() -> None:
    entries = chain(3)
    again = entry_for(
        entries[-1], topic=TOPIC, partition=0, offset=12, event_id="id-2",
        event_type="DossierSubmitted", dossier_code=CODE.format(2), record=b"record 2",
    )  # fmt: skip
    assert again == entries[-1]
    assert verify_chain([*entries, again]) == []
    assert verify_chain([*entries[:2], entries[1], entries[2]]) == []  # repeat mid-chain


def test_an_altered_entry_is_a_hash_mismatch() -> None:
    entries = chain(4)
    entries[2] = {**entries[2], "dossier_code": CODE.format(99)}
    [problem] = verify_chain(entries)
    assert (problem.kind, problem.seq, problem.position) == ("altered", 3, "#2")
    assert "hash mismatch" in problem.message
    assert problem.chain == "dossier.events:0"


def test_an_altered_entry_with_a_recomputed_hash_breaks_the_next_link() -> None:
    entries = chain(4)
    forged = {**entries[1], "event_type": "DossierWithdrawn"}
    forged["hash"] = entry_hash(forged)
    [problem] = verify_chain([entries[0], forged, *entries[2:]])
    assert (problem.kind, problem.seq) == ("removed", 3)
    assert "prev-hash mismatch" in problem.message


def test_a_removed_entry_is_a_seq_gap() -> None:
    entries = chain(5)
    [problem] = verify_chain(entries[:2] + entries[3:])
    assert (problem.kind, problem.seq) == ("removed", 4)
    assert "seq gap: expected 3, found 4" in problem.message


def test_a_chain_whose_first_entries_were_deleted_is_truncated() -> None:
    entries = chain(5)
    [first] = verify_chain(entries[2:])
    assert (first.kind, first.seq) == ("truncated", 3)
    assert "chain starts at seq 3, not 1" in first.message


def test_reordered_entries_are_out_of_order() -> None:
    entries = chain(4)
    swapped = [entries[0], entries[2], entries[1], entries[3]]
    [problem] = verify_chain(swapped)
    assert (problem.kind, problem.seq, problem.position) == ("reordered", 3, "#1")
    assert "seq out of order: 3 before 2" in problem.message
    [late] = verify_chain([*entries, entries[1]])
    assert (late.kind, late.seq) == ("reordered", 2)
    assert "seq out of order: 2 after 4" in late.message


def test_a_same_seq_entry_that_is_not_identical_is_not_a_repeat() -> None:
    entries = chain(3)
    other = entry_for(
        entries[1], topic=TOPIC, partition=0, offset=99, event_id="other",
        event_type="DossierSubmitted", dossier_code=CODE.format(7), record=b"x",
    )  # fmt: skip
    assert other["seq"] == 3 and other["hash"] != entries[2]["hash"]
    [problem] = verify_chain([*entries, other])
    assert problem.kind == "forged" and "a second entry with seq 3" in problem.message


def test_malformed_and_foreign_entries_are_problems() -> None:
    entries = chain(2)
    [problem] = verify_chain([entries[0], {"seq": 2}])
    assert problem.kind == "malformed"
    [foreign] = verify_chain(entries, chain="dossier.events:1")
    assert foreign.kind == "altered" and "names chain" in foreign.message


def test_entries_carry_no_record_content_only_its_digest() -> None:
    [entry] = chain(1)
    assert set(entry) == {
        "v", "chain", "seq", "topic", "partition", "offset", "event_id", "event_type",
        "dossier_code", "record_sha256", "prev_hash", "hash",
    }  # fmt: skip
    assert json.loads(encode_entry(entry)) == entry


# --- RFC 3161 with a throwaway local authority ----------------------------------------------


def make_authority(root: Path) -> tuple[Path, Path]:
    """A CA and a TSA certificate signed by it, plus an ``openssl ts -reply`` configuration."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=Throwaway test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr",
        "-subj", "/CN=Throwaway test TSA")  # fmt: skip
    (root / "tsa.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=critical,timeStamping\n"
    )
    run("x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "tsa.pem", "-days", "2", "-extfile", "tsa.ext")  # fmt: skip
    (root / "tsaserial").write_text("01\n")
    config = root / "tsa.cnf"
    config.write_text(
        f"""[ tsa ]
default_tsa = local_tsa
[ local_tsa ]
dir = {root}
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/ca.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""
    )
    return config, root / "ca.pem"


def test_a_chain_head_is_stamped_by_a_local_tsa_and_the_reply_verifies(tmp_path: Path) -> None:
    # Fail, never skip: the time-stamping path is part of the audit guarantee.
    assert shutil.which("openssl"), "RFC 3161 stamps need openssl (apt-get install openssl)"
    config, ca = make_authority(tmp_path)
    head = chain(3)[-1]
    data = tmp_path / f"{file_stem(head['chain'])}.head.json"
    assert data.name == "dossier.events_0.head.json"
    data.write_bytes(encode_entry(head))
    answer = reply(config, query(data, tmp_path / "head.tsq"), tmp_path / "head.tsr")
    verify(answer, data, ca)
    data.write_bytes(encode_entry({**head, "dossier_code": CODE.format(42)}))
    with pytest.raises(TsaError, match="openssl ts -verify"):
        verify(answer, data, ca)


# --- canonical JSON: the same bytes as the json module's, so older entries still verify ------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), _json_values, max_size=8))
def test_canonical_json_is_byte_for_byte_the_json_modules_sorted_compact_utf8(
    entry: dict[str, Any],
) -> None:
    from hub.audit.chain import canonical_json

    expected = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(entry) == expected.encode()


def test_reads_of_personal_data_chain_like_the_applied_events_and_verify_alike() -> None:
    from hub.audit.chain import access_chain, access_entry, is_access_chain

    first = access_entry(
        None, partition=2, who="so-noi-vu", role="province", dossier_code="D-1",
        at="2026-12-06T02:00:00.000Z",
    )  # fmt: skip
    second = access_entry(
        first, partition=2, who="tu-phap", role="agency", dossier_code="D-2",
        at="2026-12-06T02:00:01.000Z",
    )  # fmt: skip
    assert first["chain"] == access_chain(2) == "@access:2" and is_access_chain("@access:2")
    assert not is_access_chain("dossier.events:2")
    assert (first["seq"], first["prev_hash"], second["prev_hash"]) == (1, GENESIS, first["hash"])
    assert verify_chain([first, second]) == []
    altered = {**second, "who": "someone-else"}
    assert [p.kind for p in verify_chain([first, altered])] == ["altered"]
    missing = {k: v for k, v in second.items() if k != "who"}
    assert [p.kind for p in verify_chain([first, missing])] == ["malformed"]
