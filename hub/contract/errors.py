"""Errors of the event contract: one root, so callers catch ours and not a library's."""

from __future__ import annotations

__all__ = [
    "BadMagicByteError",
    "ContractError",
    "DecodeError",
    "EncodeError",
    "RegistryError",
    "RegistryUnavailableError",
    "TruncatedMessageError",
    "UnknownSchemaIdError",
]


class ContractError(Exception):
    """Root of every contract error."""

    #: short machine-readable reason, used in dead-letter headers and metrics labels
    reason: str = "contract-error"


class RegistryError(ContractError):
    """The schema registry refused a request (bad schema, incompatible change, …)."""

    reason = "registry-error"


class RegistryUnavailableError(RegistryError):
    """The schema registry did not answer; retry later, the input is not at fault."""

    reason = "registry-unavailable"


class DecodeError(ContractError):
    """Bytes that are not a valid Confluent-framed Avro record of a known schema."""

    reason = "undecodable"


class TruncatedMessageError(DecodeError):
    """Fewer than the 5 framing bytes, or an Avro body cut short."""

    reason = "truncated"


class BadMagicByteError(DecodeError):
    """The first byte is not the Confluent wire format's magic byte 0."""

    reason = "bad-magic-byte"


class UnknownSchemaIdError(DecodeError):
    """The registry does not know the 4-byte schema id."""

    reason = "unknown-schema-id"


class EncodeError(ContractError):
    """A record that does not fit the schema it is written with."""

    reason = "unencodable"
