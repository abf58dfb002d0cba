"""The HTTP ingress: agency systems push JSON dossier and feedback events over HTTPS.

A :class:`~connectors.sdk.PushSourceConnector` (entry point ``http-ingress``); see
:mod:`connectors.ingress.server` for the protocol and :mod:`connectors.ingress.credentials`
for keys and signatures. Run ``hub connector run --config ingress.json``.
"""

from connectors.ingress.credentials import CredentialStore, hash_api_key, sign
from connectors.ingress.server import HttpIngress, IngressSettings

__all__ = ["CredentialStore", "HttpIngress", "IngressSettings", "hash_api_key", "sign"]
