"""RFC 3161 time-stamps of chain heads with ``openssl ts`` and a local time-stamp authority.

A stamp proves a chain's head (and so, through the hashes, every entry before it) existed at
the authority's time. Files per chain, in one directory: ``<name>.head.json`` (the head entry's
bytes as stored in the audit topic), ``<name>.tsq`` (the query, SHA-256) and ``<name>.tsr``
(the authority's reply). The authority is an RFC 3161 service reached over HTTP(S) (the query POSTed
as ``application/timestamp-query``), or a local one: an ``openssl ts -reply`` configuration
with its signing key and certificate. Every call is bounded by a timeout.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hub.audit.chain import canonical_json

__all__ = [
    "HeadStamper",
    "TsaError",
    "answer",
    "file_stem",
    "openssl",
    "query",
    "reply",
    "stamp_head",
    "verify",
]

log = logging.getLogger("hub.audit")

TIMEOUT_S = 30.0


class TsaError(RuntimeError):
    """An ``openssl ts`` step failed; the message is one line."""


def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise TsaError("openssl is not on PATH: time-stamps need it")
    return path


def file_stem(chain: str) -> str:
    """A file name for a chain key (``t.dossier.events:2`` -> ``t.dossier.events_2``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", chain)


def _run(*args: str) -> str:
    try:
        done = subprocess.run(
            [openssl(), "ts", *args], capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise TsaError(f"openssl ts {args[0]} took longer than {TIMEOUT_S:.0f}s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise TsaError(f"openssl ts {args[0]} failed: {lines[0] if lines else done.returncode}")
    return done.stdout


def query(data: Path, out: Path) -> Path:
    """``openssl ts -query -data <data> -sha256 -cert``: a time-stamp query for ``data``."""
    _run("-query", "-data", str(data), "-sha256", "-cert", "-out", str(out))
    return out


def reply(config: Path, query_file: Path, out: Path) -> Path:
    """The local authority's answer (``openssl ts -reply`` with its configuration)."""
    _run("-reply", "-config", str(config), "-queryfile", str(query_file), "-out", str(out))
    return out


def verify(reply_file: Path, data: Path, ca_file: Path) -> None:
    """``openssl ts -verify``: the reply is signed by a TSA under ``ca_file`` and covers
    exactly ``data``; raises :class:`TsaError` otherwise."""
    out = _run("-verify", "-in", str(reply_file), "-data", str(data), "-CAfile", str(ca_file))
    if "Verification: OK" not in out:
        raise TsaError(f"openssl ts -verify did not say OK: {out.strip()[:120]}")


def answer(authority: str, query_file: Path, out: Path) -> Path:
    """The authority's reply to ``query_file``: ``authority`` is an http(s) URL of an RFC
    3161 service, or the ``openssl ts -reply`` configuration file of a local one."""
    if not authority.startswith(("http://", "https://")):
        return reply(Path(authority), query_file, out)
    request = urllib.request.Request(
        authority,
        data=query_file.read_bytes(),
        headers={"Content-Type": "application/timestamp-query"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            out.write_bytes(response.read())
    except (urllib.error.URLError, OSError) as exc:
        raise TsaError(f"time-stamp authority {authority}: {exc}") from None
    return out


def stamp_head(head: bytes, directory: Path, chain: str, authority: str | None) -> Path:
    """Write ``<chain>.head.json`` (``head``: the head entry's bytes as the audit topic holds
    them) and its query into ``directory``, and with an ``authority`` its reply; the query's
    path. The head is written last-but-one and the files replaced whole, so a reader never
    pairs a reply with another head."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = file_stem(chain)  # names keep their dots: no Path.with_suffix here
    staging = directory / f".{stem}.staging"
    staging.mkdir(exist_ok=True)
    head_file = staging / f"{stem}.head.json"
    head_file.write_bytes(head)
    query_file = query(head_file, staging / f"{stem}.tsq")
    if authority is not None:
        answer(authority, query_file, staging / f"{stem}.tsr")
    for name in (f"{stem}.tsq", f"{stem}.tsr", f"{stem}.head.json"):
        if (staging / name).exists():
            (staging / name).replace(directory / name)
    staging.rmdir()
    return directory / f"{stem}.tsq"


class HeadStamper:
    """A worker's periodic stamping: each chain head not stamped yet, into ``directory``."""

    def __init__(self, directory: Path, authority: str | None) -> None:
        self.directory = directory
        self.authority = authority
        self._stamped: dict[str, str] = {}  # chain -> hash of the head stamped last

    def stamp(self, heads: Mapping[str, Mapping[str, Any]]) -> int:
        """Stamp the heads that changed since the last call; how many were stamped. A failing
        authority is logged and tried again next time, never fatal."""
        done = 0
        for chain, head in sorted(heads.items()):
            if self._stamped.get(chain) == head.get("hash"):
                continue
            try:
                stamp_head(canonical_json(head), self.directory, chain, self.authority)
            except TsaError as exc:
                log.warning("audit: time-stamp of %s failed: %s", chain, exc)
                continue
            self._stamped[chain] = str(head.get("hash"))
            done += 1
        if done:
            log.info("audit: %d chain heads time-stamped into %s", done, self.directory)
        return done
