"""Who may do what on the hub's Kafka: principals and their ACLs as plain data.

Nothing here talks to Kafka; :mod:`hub.security.apply` turns the rules into real ACLs and
SCRAM users. The broker runs KRaft's ``StandardAuthorizer`` with
``allow.everyone.if.no.acl.found=false``, so every rule below is an ALLOW and anything not
listed is denied.

Principals (SCRAM user names; the Kafka principal is ``User:<name>``):

``hub``
    the hub workers: read and write the hub's own topics (``dossier.events``,
    ``feedback.events``, ``dossier.status``, ``portal.outbox``,
    ``dossier.alerts``, ``hub.audit``, the inputs' ``.dlq``), write every
    ``agency.inbox.*``, everything under faust's ``<app id>-`` topics and group.
``connector-<name>``
    one per connector instance (the ``name`` of its config), with just the topics that
    connector reads and writes (see :data:`BUILT_IN_CONNECTORS`).
``registry``
    the schema registry: its ``kafkasql-*`` and ``registry-events`` topics and
    ``hub-registry-*`` groups.
``agency-<agency code>``
    an agency's own system talking to Kafka directly. It may WRITE (and DESCRIBE) only
    topics under its own prefix ``<topic prefix>agency.<code>.`` (e.g.
    ``agency.000.00.09.H40.dossier.events``), READ only its own inbox
    ``<topic prefix>agency.inbox.<code>`` (a LITERAL grant, so ``agency.inbox.<code>.dlq``,
    which holds what its webhook refused, stays the operators'), and use consumer groups
    under the same prefix ``<topic prefix>agency.<code>.``.

Why agencies get their own prefix instead of ``dossier.events``: the shared topic carries
every agency's dossiers, and Kafka can only grant a whole topic. Today agencies reach Kafka
through hub-run connectors (HTTP ingress, outbox, file drop), which write ``dossier.events``
under their connector principal after checking the agency's scope themselves (the ingress
answers 403 for a dossier the caller does not hold). An agency that runs its own producer
writes to its prefix instead; moving those topics into ``dossier.events`` is a forwarding
step the hub does not have yet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "BUILT_IN_CONNECTORS",
    "HUB_PRINCIPAL",
    "REGISTRY_GROUP_PREFIX",
    "REGISTRY_PRINCIPAL",
    "AclRule",
    "ConnectorAccess",
    "Operation",
    "PatternType",
    "ResourceType",
    "SecurityLayout",
    "agency_inbox",
    "agency_prefix",
    "agency_principal",
    "compute_acls",
    "connector_principal",
    "hub_topic_names",
    "principals",
    "registry_rules",
]

HUB_PRINCIPAL = "hub"
#: the schema registry's KafkaSQL storage (its own topic names, not under the topic prefix)
REGISTRY_PRINCIPAL = "registry"
REGISTRY_TOPIC_PREFIX = "kafkasql-"
REGISTRY_GROUP_PREFIX = "hub-registry-"
REGISTRY_EVENTS_TOPIC = "registry-events"  # Apicurio creates it at start even when unused

# Agency codes look like 000.00.09.H40. Dots are allowed (they separate the code's parts);
# anything that could widen a prefix or reach another namespace is not.
_AGENCY_CODE = re.compile(r"^[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*$")
_CONNECTOR_NAME = re.compile(r"^[0-9a-z][0-9a-z._-]*$")


class ResourceType(StrEnum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"
    TRANSACTIONAL_ID = "TRANSACTIONAL_ID"


class PatternType(StrEnum):
    LITERAL = "LITERAL"
    PREFIXED = "PREFIXED"


class Operation(StrEnum):
    READ = "READ"
    WRITE = "WRITE"
    CREATE = "CREATE"
    DESCRIBE = "DESCRIBE"
    DESCRIBE_CONFIGS = "DESCRIBE_CONFIGS"
    ALL = "ALL"


@dataclass(frozen=True, order=True)
class AclRule:
    """One ALLOW rule: ``principal`` may ``operation`` the resource (from any host)."""

    principal: str  # user name, without the "User:" type
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: Operation

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.principal}"

    def __str__(self) -> str:
        return (
            f"{self.kafka_principal} {self.operation} {self.resource_type} "
            f"{self.pattern_type} {self.resource_name}"
        )


@dataclass(frozen=True)
class ConnectorAccess:
    """What one connector instance reads, writes and which groups it joins.

    Names are before the topic prefix; a name ending in ``*`` is a PREFIXED grant of what
    comes before the ``*``.
    """

    name: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


_OFFSETS = "hub.connect.offsets"

#: The built-in connectors under the names of the example configs (connectors/examples).
#: Connectors may create their own ``.dlq`` and offsets topics, hence CREATE with every write
#: (see :func:`compute_acls`). A source writes feedback events to feedback.events.
BUILT_IN_CONNECTORS: tuple[ConnectorAccess, ...] = (
    # Ingress refuses bad input at the door (4xx), so it writes no dead letters.
    ConnectorAccess("http-ingress", writes=("dossier.events", "feedback.events")),
    ConnectorAccess(
        "justice-outbox",
        reads=(_OFFSETS,),
        writes=("dossier.events", "feedback.events", "dossier.events.dlq", _OFFSETS),
    ),
    ConnectorAccess(
        "filedrop",
        reads=(_OFFSETS,),
        writes=("dossier.events", "feedback.events", "dossier.events.dlq", _OFFSETS),
    ),
    ConnectorAccess(
        "json-bridge",
        reads=("dossier.events.json", "feedback.events.json"),
        writes=(
            "dossier.events",
            "feedback.events",
            "dossier.events.json.dlq",
            "feedback.events.json.dlq",
        ),
        groups=("json-bridge", "connect-json-bridge"),
    ),
    # Kafka cannot grant "agency.inbox.* but only the .dlq ones": the webhook may write the
    # inboxes too. It is the hub's own process; agencies never get this principal.
    ConnectorAccess(
        "agency-webhook",
        reads=("agency.inbox.*",),
        writes=("agency.inbox.*",),
        groups=("agency-webhook", "connect-agency-webhook"),
    ),
    ConnectorAccess(
        "national-portal",
        reads=("portal.outbox",),
        writes=("portal.outbox.dlq",),
        groups=("portal-sink", "connect-national-portal"),
    ),
    ConnectorAccess("simulator", writes=("dossier.events", "feedback.events")),
)

_HUB_INPUTS = ("dossier.events", "feedback.events")
_HUB_OUTPUTS = ("dossier.status", "portal.outbox", "dossier.alerts", "hub.audit")


def hub_topic_names(prefix: str = "") -> list[str]:
    """The hub worker's own topics (kept in step with hub/worker/topics.py by a unit test)."""
    names = [*_HUB_INPUTS, *_HUB_OUTPUTS, *(f"{t}.dlq" for t in _HUB_INPUTS)]
    return [f"{prefix}{n}" for n in names]


def agency_principal(code: str) -> str:
    return f"agency-{code}"


def connector_principal(name: str) -> str:
    return f"connector-{name}"


def agency_prefix(code: str, topic_prefix: str = "") -> str:
    """Topics and consumer groups an agency owns start with this (note the final dot)."""
    return f"{topic_prefix}agency.{code}."


def agency_inbox(code: str, topic_prefix: str = "") -> str:
    return f"{topic_prefix}agency.inbox.{code}"


@dataclass(frozen=True)
class SecurityLayout:
    """The inputs of the ACL computation: names only, no Kafka."""

    agencies: Sequence[str]
    topic_prefix: str = ""
    app_id: str = "nghean-hub"
    connectors: Sequence[ConnectorAccess] = field(default_factory=lambda: BUILT_IN_CONNECTORS)


def _check_agencies(codes: Iterable[str], topic_prefix: str) -> list[str]:
    unique = sorted(set(codes))
    for code in unique:
        if not _AGENCY_CODE.match(code):
            raise ValueError(f"agency code {code!r} is not dot-separated letters and digits")
        if code == "inbox" or code.startswith("inbox."):
            # agency.inbox.<x>. would overlap every agency's inbox
            raise ValueError(f"agency code {code!r} collides with the inbox namespace")
    prefixes = [agency_prefix(c, topic_prefix) for c in unique]
    for a in prefixes:
        for b in prefixes:
            if a != b and b.startswith(a):
                # e.g. codes 000.00 and 000.00.09.H40: the first's prefix covers the second
                raise ValueError(f"agency prefix {a!r} would cover {b!r}")
    return unique


def _topic(principal: str, name: str, ops: Iterable[Operation], prefix: str = "") -> list[AclRule]:
    pattern = PatternType.PREFIXED if name.endswith("*") else PatternType.LITERAL
    resource = prefix + name.removesuffix("*")
    return [AclRule(principal, ResourceType.TOPIC, resource, pattern, op) for op in ops]


def _group(principal: str, name: str, pattern: PatternType) -> list[AclRule]:
    return [
        AclRule(principal, ResourceType.GROUP, name, pattern, op)
        for op in (Operation.READ, Operation.DESCRIBE)
    ]


_READ = (Operation.READ, Operation.DESCRIBE)
# Services create the topics they write (dead letters, offsets, inboxes) on first use.
_SERVICE_WRITE = (Operation.WRITE, Operation.DESCRIBE, Operation.CREATE)
# Agencies write into topics the operators created for them; they create none.
_AGENCY_WRITE = (Operation.WRITE, Operation.DESCRIBE)


def _hub_rules(layout: SecurityLayout) -> list[AclRule]:
    p, pre = HUB_PRINCIPAL, layout.topic_prefix
    rules: list[AclRule] = []
    own = (Operation.READ, Operation.WRITE, Operation.DESCRIBE, Operation.CREATE)
    for name in hub_topic_names(pre):
        rules += _topic(p, name, own)
    rules += _topic(p, "agency.inbox.*", _SERVICE_WRITE, pre)
    # the engine's changelog and worker directory are named "<app id>-..."; its consumer
    # group is "<app id>" (the lag monitor reads its committed offsets), its restore and
    # directory readers "<app id>-..."; its transactional ids are "<app id>-<worker id>"
    rules += _topic(p, f"{layout.app_id}-*", (Operation.ALL,))
    rules += _group(p, layout.app_id, PatternType.PREFIXED)
    rules += [
        AclRule(p, ResourceType.TRANSACTIONAL_ID, layout.app_id, PatternType.PREFIXED, op)
        for op in (Operation.WRITE, Operation.DESCRIBE)
    ]
    return rules


def registry_rules() -> list[AclRule]:
    """Apicurio's journal and snapshot topics (``kafkasql-journal``, ``kafkasql-snapshots``),
    its ``registry-events`` topic and its per-instance consumer groups.

    `hub stack up --secure` applies these itself, before it starts the registry.
    """
    p = REGISTRY_PRINCIPAL
    ops = (
        Operation.READ,
        Operation.WRITE,
        Operation.DESCRIBE,
        Operation.CREATE,
        Operation.DESCRIBE_CONFIGS,
    )
    return [
        *_topic(p, REGISTRY_TOPIC_PREFIX + "*", ops),
        *_topic(p, REGISTRY_EVENTS_TOPIC, ops),
        *_group(p, REGISTRY_GROUP_PREFIX, PatternType.PREFIXED),
    ]


def _connector_rules(access: ConnectorAccess, topic_prefix: str) -> list[AclRule]:
    if not _CONNECTOR_NAME.match(access.name):
        raise ValueError(f"connector name {access.name!r}: lower-case letters, digits, ._-")
    p = connector_principal(access.name)
    rules: list[AclRule] = []
    for name in access.reads:
        rules += _topic(p, name, _READ, topic_prefix)
    for name in access.writes:
        rules += _topic(p, name, _SERVICE_WRITE, topic_prefix)
    for group in access.groups:
        rules += _group(p, topic_prefix + group, PatternType.LITERAL)
    return rules


def _agency_rules(code: str, topic_prefix: str) -> list[AclRule]:
    p = agency_principal(code)
    own = agency_prefix(code, topic_prefix)
    return [
        *_topic(p, own + "*", _AGENCY_WRITE),
        *_topic(p, agency_inbox(code, topic_prefix), _READ),
        *_group(p, own, PatternType.PREFIXED),
    ]


def compute_acls(layout: SecurityLayout) -> list[AclRule]:
    """Every ALLOW rule of the layout, sorted and without duplicates."""
    rules = _hub_rules(layout) + registry_rules()
    names = [c.name for c in layout.connectors]
    if len(names) != len(set(names)):
        raise ValueError("two connectors share a name; each needs its own principal")
    for access in layout.connectors:
        rules += _connector_rules(access, layout.topic_prefix)
    for code in _check_agencies(layout.agencies, layout.topic_prefix):
        rules += _agency_rules(code, layout.topic_prefix)
    return sorted(set(rules))


def principals(layout: SecurityLayout) -> list[str]:
    """Every SCRAM user the layout needs (the admin is the broker's own, not listed)."""
    return sorted({rule.principal for rule in compute_acls(layout)})
