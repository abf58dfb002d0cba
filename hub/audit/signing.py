"""Signed chain heads: the key that makes an audit chain impossible to extend by anyone else.

A hash chain alone proves order and integrity against whoever cannot recompute hashes, which
is nobody: anyone who can write the audit topic can append an entry with the next ``seq``,
the head's hash as ``prev_hash`` and a freshly computed ``hash``. So the worker signs the
head of every chain it extended at each checkpoint, with an Ed25519 key only the hub's
workers hold, and ``hub audit verify`` checks the signatures with the public key alone:
a chain whose last entry is not signed by a trusted key was extended by someone else.

What is signed: ``SIGNED_PREFIX`` followed by the entry's ``hash`` (64 hex characters). The
hash covers every other field of the entry (chain, seq, input position, event, record digest,
``prev_hash``), so the signature covers the head and, through the links, every entry before
it. The entry carries ``key_id`` (the first 16 hex digits of the SHA-256 of the raw public
key) and ``sig`` (the signature, hex); neither is part of the hashed bytes, like ``hash``.

Keys are files: the private key PEM (PKCS #8, unencrypted) readable by its owner only (mode
0600; a key others can read is refused, not used), and the public key PEM beside it
(``<key>.pub``), which is what verifiers get. ``hub audit keygen`` writes both. Rotating keys:
a new key file for the workers, both public keys for the verifier; each head names its key.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "SIGNED_PREFIX",
    "HeadSigner",
    "KeyFileError",
    "TrustedKeys",
    "generate_key",
    "key_id",
    "load_public_keys",
    "load_signer",
    "public_key_path",
]

#: Domain separation: a signature over an audit head is never valid as anything else.
SIGNED_PREFIX = b"nghean-hub audit head v1\n"


class KeyFileError(RuntimeError):
    """A key file is missing, unreadable, not an Ed25519 key, or readable by others. The
    message names the file and what is wrong, never the key."""


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """16 hex digits naming a public key (the start of the SHA-256 of its raw bytes)."""
    return hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def public_key_path(private_key_file: Path) -> Path:
    return private_key_file.with_name(private_key_file.name + ".pub")


@dataclass(frozen=True)
class HeadSigner:
    """Signs chain heads with one private key."""

    key: Ed25519PrivateKey
    key_id: str

    def sign(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """``entry`` (which has its ``hash``) with ``key_id`` and ``sig`` set."""
        signature = self.key.sign(SIGNED_PREFIX + str(entry["hash"]).encode())
        return {**entry, "key_id": self.key_id, "sig": signature.hex()}


def generate_key(path: Path) -> HeadSigner:
    """A new key: the private key written to ``path`` (created 0600, never overwritten) and
    its public key to ``<path>.pub``."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists already: not overwritten") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public = key.public_key()
    public_key_path(path).write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return HeadSigner(key, key_id(public))


def load_signer(path: Path) -> HeadSigner:
    """The signer of a private key file; ``KeyFileError`` if it cannot or must not be used."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"audit signing key {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"audit signing key {path} is readable by others (mode {stat.S_IMODE(mode):o}): "
            "chmod 600 it"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(
            f"audit signing key {path} is not an unencrypted PEM private key ({type(exc).__name__})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"audit signing key {path} is not an Ed25519 key")
    return HeadSigner(key, key_id(key.public_key()))


class TrustedKeys:
    """The public keys a verifier trusts, by key id."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self.by_id = {key_id(k): k for k in keys}

    def __bool__(self) -> bool:
        return bool(self.by_id)

    def problem(self, entry: Mapping[str, Any]) -> str | None:
        """What is wrong with ``entry``'s signature, or None when a trusted key made it."""
        kid, sig = entry.get("key_id"), entry.get("sig")
        if sig is None or kid is None:
            return "not signed"
        key = self.by_id.get(str(kid))
        if key is None:
            return f"signed with key {kid}, which is not a trusted key"
        try:
            key.verify(bytes.fromhex(str(sig)), SIGNED_PREFIX + str(entry.get("hash")).encode())
        except (InvalidSignature, ValueError):
            return f"signature does not verify with key {kid}"
        return None


def load_public_keys(paths: Iterable[Path]) -> TrustedKeys:
    """Public keys from PEM files, or every ``*.pub`` file of a directory given."""
    keys: list[Ed25519PublicKey] = []
    for path in paths:
        files = sorted(path.glob("*.pub")) if path.is_dir() else [path]
        for file in files:
            try:
                key = serialization.load_pem_public_key(file.read_bytes())
            except (OSError, ValueError) as exc:
                raise KeyFileError(
                    f"public key {file} is not a PEM public key ({type(exc).__name__})"
                ) from None
            if not isinstance(key, Ed25519PublicKey):
                raise KeyFileError(f"public key {file} is not an Ed25519 key")
            keys.append(key)
    return TrustedKeys(keys)
