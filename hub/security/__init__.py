"""Kafka security: principals, prefixed ACLs, SCRAM users and client credentials."""
