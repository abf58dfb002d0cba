"""``hub security plan | apply-acls | make-certs``: principals and prefixed ACLs on a secure
broker, and the TLS certificate it presents."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from hub.security.acls import SecurityLayout, compute_acls
from hub.security.apply import ApplyError, apply_layout
from hub.security.certs import BrokerTls, CertError, ensure_broker_tls
from hub.security.client import SecurityConfigError
from hub.security.secrets import SecretError, read_secret, secret_file
from hub.settings import HubSettings
from hub.stack.kafka import ADMIN_PRINCIPAL, TLS_DIR, admin_security
from hub.stack.stack import default_state_dir

__all__ = ["add_security_parser", "run_security_command"]


def add_security_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sec = subparsers.add_parser(
        "security",
        help="Kafka principals and ACLs for a secure broker (hub stack up --secure)",
        description=(
            "plan: print every ACL the hub, its connectors and the agencies get. apply-acls: "
            "create one SCRAM user per principal (passwords generated into "
            "<state dir>/secrets/<principal>.password, mode 0600, never printed) and their "
            "ACLs, as the admin of the local secure stack or the HUB_KAFKA_SASL_* identity. "
            "make-certs: a private CA (ca.pem, what clients trust via HUB_KAFKA_SSL_CAFILE) "
            "and the broker's PKCS12 keystore for its SASL_SSL listener, in <state dir>/tls "
            "or --out; kept while valid for every --host, renewed otherwise (keystore "
            "password: $HUB_KAFKA_KEYSTORE_PASSWORD, else a random one). `hub stack up "
            "--secure` does this itself."
        ),
    )
    sec.add_argument("action", choices=["plan", "apply-acls", "make-certs"])
    sec.add_argument(
        "--state-dir",
        type=Path,
        help="where the stack's secrets live (default: $HUB_STATE_DIR or .hub/stack)",
    )
    sec.add_argument("--bootstrap", help="broker (default: $KAFKA_BOOTSTRAP_SERVERS)")
    sec.add_argument(
        "--agency",
        action="append",
        metavar="CODE",
        help="an agency to give a principal (repeatable; default: every agency in the "
        "reference data)",
    )
    sec.add_argument("--topic-prefix", help="default: $HUB_TOPIC_PREFIX")
    sec.add_argument("--app-id", help="the hub's faust app id (default: $HUB_APP_ID)")
    sec.add_argument(
        "--host",
        action="append",
        metavar="NAME",
        help="make-certs: a host name or IP address clients dial the broker by (repeatable; "
        "default: 127.0.0.1 and localhost)",
    )
    sec.add_argument("--out", type=Path, help="make-certs: directory (default: <state dir>/tls)")


def _layout(args: argparse.Namespace, settings: HubSettings) -> SecurityLayout:
    agencies = args.agency
    if not agencies:
        from hub.reference import load_reference  # only when needed: it reads every file

        agencies = sorted(load_reference().agencies.codes)
    return SecurityLayout(
        agencies=agencies,
        topic_prefix=settings.topic_prefix if args.topic_prefix is None else args.topic_prefix,
        app_id=args.app_id or settings.app_id,
    )


def _admin_security(state_dir: Path, settings: HubSettings) -> dict[str, Any]:
    """The local secure stack's admin if its secret is there, else the configured identity."""
    admin_file = secret_file(state_dir, ADMIN_PRINCIPAL)
    if admin_file.exists():
        return admin_security(read_secret(admin_file), BrokerTls(state_dir / TLS_DIR).ca_cert)
    return settings.kafka_client_kwargs()


def run_security_command(args: argparse.Namespace) -> int:
    settings = HubSettings()
    state_dir = (args.state_dir or default_state_dir()).resolve()
    if args.action == "make-certs":
        return _make_certs(args.out or state_dir / TLS_DIR, args.host or ["127.0.0.1", "localhost"])
    try:
        layout = _layout(args, settings)
        if args.action == "plan":
            for rule in compute_acls(layout):
                print(rule)
            return 0
        result = apply_layout(
            args.bootstrap or settings.kafka_bootstrap_servers,
            _admin_security(state_dir, settings),
            layout,
            state_dir,
            progress=print,
        )
    except (ApplyError, SecretError, SecurityConfigError, ValueError) as exc:
        print(f"hub security {args.action}: {exc}", file=sys.stderr)
        return 1
    for principal in result.principals:
        print(f"principal User:{principal}")
    print(f"passwords: {state_dir / 'secrets'}/<principal>.password (mode 0600)")
    return 0


def _make_certs(directory: Path, hosts: list[str]) -> int:
    try:
        # compose names the keystore password in the broker's environment, so it is given
        password = os.environ.get("HUB_KAFKA_KEYSTORE_PASSWORD") or None
        tls = ensure_broker_tls(directory.resolve(), hosts, password)
        password_file = tls.keystore_password_file
    except CertError as exc:
        print(f"hub security make-certs: {exc}", file=sys.stderr)
        return 1
    print(f"ca: {tls.ca_cert} (clients: HUB_KAFKA_SSL_CAFILE)")
    print(f"keystore: {tls.keystore} (PKCS12; password in {password_file}, mode 0600)")
    print(f"valid for: {', '.join(hosts)}")
    return 0
