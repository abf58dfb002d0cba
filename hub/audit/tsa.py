"""RFC 3161 time-stamps of chain heads with ``openssl ts`` and a local time-stamp authority.

A stamp proves a chain's head (and so, through the hashes, every entry before it) existed at
the authority's time. Files per chain, in one directory: ``<name>.head.json`` (the head entry's
bytes as stored in the audit topic), ``<name>.tsq`` (the query, SHA-256) and ``<name>.tsr``
(the authority's reply). The authority is local: an ``openssl ts -reply`` configuration with
its signing key and certificate. Every openssl call is bounded by a timeout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["TsaError", "file_stem", "openssl", "query", "reply", "verify"]

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
