"""Passwords of the stack's Kafka principals: generated once, kept in 0600 files.

A secret is never printed or logged; callers get it from :func:`read_secret` and hand it
straight to Kafka. Files are created with ``O_EXCL`` and mode 0600 in one call, so there is
no moment where another local user could read a freshly written password.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

__all__ = ["SecretError", "ensure_secret", "read_secret", "secret_file", "secrets_dir"]

_DIR_MODE = 0o700
_FILE_MODE = 0o600


class SecretError(Exception):
    """A secret file is missing, unreadable or readable by others."""


def secrets_dir(state_dir: Path) -> Path:
    return state_dir / "secrets"


def secret_file(state_dir: Path, principal: str) -> Path:
    return secrets_dir(state_dir) / f"{principal}.password"


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")


def read_secret(path: Path) -> str:
    """The password in ``path`` (one line); refuses a file group or others may read."""
    try:
        _check_private(path)
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretError(f"cannot read secret {path}: {exc.strerror}") from exc
    if not value:
        raise SecretError(f"secret {path} is empty")
    return value


def ensure_secret(state_dir: Path, principal: str, value: str | None = None) -> str:
    """The principal's password: the file's if it exists, else ``value`` or a new random one.

    An existing file wins so that restarts keep the credentials the broker already stores.
    """
    path = secret_file(state_dir, principal)
    if path.exists():
        return read_secret(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(_DIR_MODE)
    password = value or secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
    return password
