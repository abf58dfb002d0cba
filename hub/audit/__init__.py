"""The audit trail: a hash chain per input partition of every event the hub applied.

:mod:`hub.audit.chain` builds and verifies entries (pure), :mod:`hub.audit.trail` writes and
reads the ``hub.audit`` topic, :mod:`hub.audit.commands` is ``hub audit verify | stamp`` and
:mod:`hub.audit.tsa` time-stamps chain heads with ``openssl ts``.
"""

from hub.audit.chain import GENESIS, Problem, chain_key, entry_for, entry_hash, verify_chain

__all__ = ["GENESIS", "Problem", "chain_key", "entry_for", "entry_hash", "verify_chain"]
