"""``hub access``: make API keys for the worker's API and pages, and list who holds them.

``add`` makes a fresh random key, appends its SHA-256 (never the key) to the access file,
written atomically and readable by its owner only, and prints the key once: hand it to its
holder, it cannot be read back. Running workers pick the change up within a second.
``list`` prints each entry's id, role and agency (no hashes).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from pydantic import ValidationError

from hub.access.keys import hash_api_key
from hub.access.roles import Role
from hub.access.store import AccessEntry, AccessFile

__all__ = ["add_access_parser", "add_key", "run_access_command"]


def _read(path: Path) -> AccessFile:
    if not path.exists():
        return AccessFile()
    return AccessFile.model_validate_json(path.read_text(encoding="utf-8"))


def _write(path: Path, document: AccessFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        data = document.model_dump(mode="json", exclude_none=True)
        json.dump(data, out, indent=1, ensure_ascii=False)
        out.write("\n")
    temporary.replace(path)  # a worker never reads half a file


def add_key(
    path: Path,
    key_id: str,
    role: Role,
    *,
    agency_code: str | None = None,
    personal_data: bool | None = None,
) -> str:
    """Append a new key's entry to the access file at ``path``; return the key."""
    document = _read(path)
    if any(entry.key_id == key_id for entry in document.credentials):
        raise ValueError(f"{path}: key id {key_id!r} is taken; remove it first or pick another")
    key = secrets.token_urlsafe(32)
    entry = AccessEntry(
        key_id=key_id,
        role=role,
        agency_code=agency_code,
        personal_data=personal_data,
        api_key_sha256=hash_api_key(key),
    )
    _write(path, AccessFile(credentials=[*document.credentials, entry]))
    return key


def add_access_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "access",
        help="API keys for the worker's API and web page, by role",
        description="Keys for the worker's HTTP API and pages (README, Access by role). Roles: "
        "province (everything), agency (the dossiers the agency holds or held and its own "
        "figures), figures (agency and province figures and /metrics, no dossiers). The "
        "workers read HUB_ACCESS_FILE (and the ingress's file, HUB_ACCESS_INGRESS_CREDENTIALS) "
        "and pick up changes within a second.",
    )
    actions = parser.add_subparsers(dest="access_command", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="make a key, store its hash, print the key once",
        description="Make a random key, append its SHA-256 to FILE (mode 600) and print the key "
        "on stdout, once: it is not stored anywhere else.",
    )
    add.add_argument("--file", type=Path, required=True, help="the access file (HUB_ACCESS_FILE)")
    add.add_argument("--key-id", required=True, help="who holds it, e.g. so-noi-vu-2026")
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    add.add_argument("--agency", help="the agency code (role agency only)")
    add.add_argument(
        "--no-personal-data",
        action="store_true",
        help="this key sees applicants' names masked (figures keys always do)",
    )
    listing = actions.add_parser("list", help="each key's id, role and agency")
    listing.add_argument("--file", type=Path, required=True)


def run_access_command(args: argparse.Namespace) -> int:
    try:
        if args.access_command == "add":
            key = add_key(
                args.file,
                args.key_id,
                Role(args.role),
                agency_code=args.agency,
                personal_data=False if args.no_personal_data else None,
            )
            print(key)
            print(f"{args.file}: key {args.key_id} ({args.role}) added", file=sys.stderr)
            return 0
        for entry in _read(args.file).credentials:
            principal = entry.principal()
            names = "names shown" if principal.sees_personal_data else "names masked"
            print(f"{entry.key_id}\t{entry.role}\t{entry.agency_code or '-'}\t{names}")
        return 0
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        print(f"hub access: {where + ': ' if where else ''}{message}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"hub access: {exc}", file=sys.stderr)
        return 1
