"""The ACL layout as data: who may read, write and join what, without a broker."""

from __future__ import annotations

import pytest

from hub.audit.trail import audit_topic
from hub.security.acls import (
    BUILT_IN_CONNECTORS,
    HUB_PRINCIPAL,
    AclRule,
    ConnectorAccess,
    Operation,
    PatternType,
    ResourceType,
    SecurityLayout,
    agency_principal,
    compute_acls,
    connector_principal,
    hub_topic_names,
    principals,
)
from hub.worker.processor import Topics
from hub.worker.topics import hub_topics

A, B = "000.00.09.H40", "000.00.03.H40"


def rules_of(principal: str, layout: SecurityLayout) -> set[AclRule]:
    return {r for r in compute_acls(layout) if r.principal == principal}


def allowed(rules: set[AclRule], op: Operation, rtype: ResourceType, name: str) -> bool:
    """What the StandardAuthorizer would decide for an ALLOW-only rule set."""
    for r in rules:
        if r.resource_type != rtype or r.operation not in (op, Operation.ALL):
            continue
        if r.pattern_type == PatternType.LITERAL and r.resource_name == name:
            return True
        if r.pattern_type == PatternType.PREFIXED and name.startswith(r.resource_name):
            return True
    return False


LAYOUT = SecurityLayout(agencies=[A, B], topic_prefix="p.")


def test_an_agency_writes_only_under_its_own_prefix() -> None:
    rules = rules_of(agency_principal(A), LAYOUT)
    topic = ResourceType.TOPIC
    assert allowed(rules, Operation.WRITE, topic, f"p.agency.{A}.dossier.events")
    assert not allowed(rules, Operation.WRITE, topic, f"p.agency.{B}.dossier.events")
    assert not allowed(rules, Operation.WRITE, topic, "p.dossier.events")
    assert not allowed(rules, Operation.WRITE, topic, f"p.agency.inbox.{A}")
    # without the topic prefix it is another hub's topic
    assert not allowed(rules, Operation.WRITE, topic, f"agency.{A}.dossier.events")


def test_an_agency_reads_only_its_own_inbox() -> None:
    rules = rules_of(agency_principal(A), LAYOUT)
    topic = ResourceType.TOPIC
    assert allowed(rules, Operation.READ, topic, f"p.agency.inbox.{A}")
    assert not allowed(rules, Operation.READ, topic, f"p.agency.inbox.{B}")
    # literal, not prefixed: the inbox's dead letters stay with the operators
    assert not allowed(rules, Operation.READ, topic, f"p.agency.inbox.{A}.dlq")
    assert not allowed(rules, Operation.READ, topic, f"p.agency.{A}.dossier.events")


def test_an_agency_joins_only_groups_under_its_prefix() -> None:
    rules = rules_of(agency_principal(A), LAYOUT)
    assert allowed(rules, Operation.READ, ResourceType.GROUP, f"p.agency.{A}.webhook")
    assert not allowed(rules, Operation.READ, ResourceType.GROUP, f"p.agency.{B}.webhook")
    assert not allowed(rules, Operation.READ, ResourceType.GROUP, "nghean-hub")


def test_agency_grants_use_prefixed_patterns_with_a_closing_dot() -> None:
    prefixed = {
        r.resource_name
        for r in rules_of(agency_principal(A), LAYOUT)
        if r.pattern_type == PatternType.PREFIXED
    }
    # The dot keeps 000.00.09.H40 from covering a code such as 000.00.09.H401.
    assert prefixed == {f"p.agency.{A}."}


def test_agencies_only_read_write_and_describe() -> None:
    for rule in compute_acls(LAYOUT):
        if rule.principal.startswith("agency-"):
            assert rule.operation in (Operation.READ, Operation.WRITE, Operation.DESCRIBE)


def test_the_hub_reads_and_writes_its_topics_and_writes_every_inbox() -> None:
    rules = rules_of(HUB_PRINCIPAL, LAYOUT)
    topic = ResourceType.TOPIC
    for name in hub_topic_names("p."):
        assert allowed(rules, Operation.READ, topic, name), name
        assert allowed(rules, Operation.WRITE, topic, name), name
    assert allowed(rules, Operation.WRITE, topic, f"p.agency.inbox.{B}")
    assert not allowed(rules, Operation.READ, topic, f"p.agency.inbox.{B}")
    assert not allowed(rules, Operation.WRITE, topic, f"p.agency.{A}.dossier.events")
    assert allowed(rules, Operation.READ, ResourceType.GROUP, "nghean-hub")
    assert allowed(rules, Operation.CREATE, topic, "nghean-hub-dossiers-changelog")


def test_hub_topic_names_match_the_worker() -> None:
    expected = {*hub_topics(Topics(prefix="p.")), audit_topic("p.")}
    assert set(hub_topic_names("p.")) == expected


def test_each_connector_has_its_own_principal_and_only_its_topics() -> None:
    portal = rules_of(connector_principal("national-portal"), LAYOUT)
    topic = ResourceType.TOPIC
    assert allowed(portal, Operation.READ, topic, "p.portal.outbox")
    assert allowed(portal, Operation.WRITE, topic, "p.portal.outbox.dlq")
    assert not allowed(portal, Operation.WRITE, topic, "p.portal.outbox")
    assert not allowed(portal, Operation.READ, topic, "p.dossier.events")
    ingress = rules_of(connector_principal("http-ingress"), LAYOUT)
    assert allowed(ingress, Operation.WRITE, topic, "p.dossier.events")
    assert not allowed(ingress, Operation.READ, topic, "p.dossier.events")


def test_principals_cover_hub_connectors_and_agencies() -> None:
    names = principals(LAYOUT)
    assert HUB_PRINCIPAL in names
    assert {agency_principal(A), agency_principal(B)} <= set(names)
    assert {connector_principal(c.name) for c in BUILT_IN_CONNECTORS} <= set(names)
    assert "admin" not in names


def test_the_computation_is_deterministic_and_duplicate_free() -> None:
    first = compute_acls(SecurityLayout(agencies=[A, B, A]))
    assert first == compute_acls(SecurityLayout(agencies=[B, A]))
    assert len(first) == len(set(first))


@pytest.mark.parametrize("code", ["inbox", "inbox.x", "000.00.09.H40*", "a b", "", "x/y"])
def test_agency_codes_that_would_widen_a_prefix_are_refused(code: str) -> None:
    with pytest.raises(ValueError):
        compute_acls(SecurityLayout(agencies=[code]))


def test_nested_agency_prefixes_are_refused() -> None:
    with pytest.raises(ValueError, match="would cover"):
        compute_acls(SecurityLayout(agencies=["000.00", "000.00.09.H40"]))


def test_two_connectors_with_one_name_are_refused() -> None:
    twins = [ConnectorAccess("outbox", writes=("a",)), ConnectorAccess("outbox", writes=("b",))]
    with pytest.raises(ValueError, match="share a name"):
        compute_acls(SecurityLayout(agencies=[], connectors=twins))
