"""Putting a :class:`~hub.security.acls.SecurityLayout` onto a real broker.

Creates (or re-asserts) one SCRAM-SHA-512 user per principal, with its password generated
once into ``<secrets dir>/<principal>.password`` (0600), and creates the layout's ALLOW
ACLs. Both operations are idempotent: the same password is upserted again and an ACL that
exists already is accepted by Kafka as created. ACLs no longer in the layout are left in
place (removing access is a decision for a person, not a side effect of a re-run).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
    UserScramCredentialUpsertion,
)
from kafka.errors import KafkaError

from hub.security.acls import AclRule, SecurityLayout, compute_acls
from hub.security.secrets import ensure_secret

__all__ = [
    "ApplyError",
    "ApplyResult",
    "apply_layout",
    "apply_rules",
    "seed_env_name",
    "to_kafka_acl",
]

SCRAM_MECHANISM = "SCRAM-SHA-512"


class ApplyError(Exception):
    """The broker refused a user or an ACL; the message names which, never a password."""


@dataclass(frozen=True)
class ApplyResult:
    principals: list[str]
    acls: int


def to_kafka_acl(rule: AclRule) -> ACL:
    return ACL(
        principal=rule.kafka_principal,
        host="*",
        operation=ACLOperation[rule.operation.value],
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(
            ResourceType[rule.resource_type.value],
            rule.resource_name,
            ACLResourcePatternType[rule.pattern_type.value],
        ),
    )


def seed_env_name(principal: str) -> str:
    """``HUB_KAFKA_PASSWORD_<PRINCIPAL>``: a password chosen outside, e.g. compose's .env.

    Only read when the principal has no secret file yet; ``agency-000.00.09.H40`` becomes
    ``HUB_KAFKA_PASSWORD_AGENCY_000_00_09_H40``.
    """
    return "HUB_KAFKA_PASSWORD_" + re.sub(r"[^0-9A-Za-z]", "_", principal).upper()


def _upsert_users(admin: KafkaAdminClient, secrets_root: Path, users: Sequence[str]) -> None:
    upserts = [
        UserScramCredentialUpsertion(
            user,
            SCRAM_MECHANISM,
            ensure_secret(secrets_root, user, os.environ.get(seed_env_name(user))),
        )
        for user in users
    ]
    errors = {u: e for u, e in admin.alter_user_scram_credentials(upserts).items() if e}
    if errors:
        raise ApplyError(f"SCRAM users refused: {', '.join(sorted(errors))} ({errors})")


def apply_layout(
    bootstrap: str,
    admin_security: dict[str, Any],
    layout: SecurityLayout,
    secrets_root: Path,
    progress: Callable[[str], None] | None = None,
) -> ApplyResult:
    """Create the layout's users and ACLs; ``secrets_root`` holds ``secrets/`` (0700)."""
    return apply_rules(bootstrap, admin_security, compute_acls(layout), secrets_root, progress)


def apply_rules(
    bootstrap: str,
    admin_security: dict[str, Any],
    rules: Sequence[AclRule],
    secrets_root: Path,
    progress: Callable[[str], None] | None = None,
) -> ApplyResult:
    """Create a SCRAM user for every principal of ``rules`` and the rules themselves."""
    say = progress or (lambda _msg: None)
    users = sorted({r.principal for r in rules})
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="hub-security", **admin_security
        )
    except (KafkaError, OSError) as exc:
        raise ApplyError(f"cannot reach Kafka at {bootstrap} as admin: {exc}") from exc
    try:
        _upsert_users(admin, secrets_root, users)
        say(f"{len(users)} SCRAM users ensured")
        result = admin.create_acls([to_kafka_acl(r) for r in rules])
        if result["failed"]:
            raise ApplyError(f"{len(result['failed'])} ACLs refused: {result['failed'][:3]}")
        say(f"{len(rules)} ACLs ensured")
    except KafkaError as exc:
        raise ApplyError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()
    return ApplyResult(users, len(rules))
