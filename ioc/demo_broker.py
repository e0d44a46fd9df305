"""The demo's broker accounts, as a province would provision them: one per device and gateway.

The broker itself is the local stack's (:mod:`ioc.local_stack`: TLS, the dynamic security plugin,
no anonymous clients). Here every registry device gets its account through the plugin's API, with
a password derived from the demo's fleet secret (``var/device-secret.key``, so the simulator can
log each device in), gateways speaking other formats get theirs, and ingest and an operator
watching the stream get accounts of their own (``var/ingest.pw``, ``var/operator.pw``).

Provisioning is idempotent: a second demo over the same ``var/`` keeps every account there — the
devices an operator added with ``ioc devices add`` too — and creates only what is missing.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ioc.local_stack import ADMIN_USER, Stack, keep_secret
from registry.broker_accounts import DEVICE_ROLE_PREFIX, GATEWAY_ROLE_PREFIX, BrokerAccounts, Credentials, new_password
from simulators.formats.base import Link
from simulators.publisher import device_password

INGEST_USER = "ioc-ingest-demo"
OPERATOR_USER = "ioc-operator"


@dataclass(frozen=True)
class DemoBroker:
    """The broker's URLs and the files and accounts the demo's clients need."""

    tls_url: str
    plain_url: str
    port: int
    ca_file: Path
    device_secret_file: Path
    ingest: Credentials
    operator: Credentials
    devices: int
    gateways: int


def _service(accounts: BrokerAccounts, username: str, role: str, password: str, exists: bool) -> Credentials:
    """A service account with ``password``: created, or (kept from an earlier demo) given it again."""
    if not exists:
        return accounts.create_service(username, role, password)
    accounts.run([{"command": "setClientPassword", "username": username, "password": password}])
    return Credentials(username, username, password)


def provision_demo_broker(
    stack: Stack,
    *,
    device_ids: Sequence[str],
    links: Sequence[Link] = (),
    ingest_topics: Sequence[str] = (),
    ingest_commands: Sequence[str] = (),
) -> DemoBroker:
    """Give the stack's broker every account the demo needs that it does not have yet: the devices',
    the ``links``' (gateways speaking other formats; a device publishing one itself gets its topics
    added to its own role), and ingest's, which may also read ``ingest_topics`` (the sources file's)
    and publish ``ingest_commands`` (Sparkplug rebirth requests)."""
    var = stack.var
    secret = keep_secret(var / "device-secret.key", lambda: secrets.token_hex(32)).encode()
    with BrokerAccounts(stack.plain_url, ADMIN_USER, stack.admin_password) as accounts:
        accounts.ensure_roles()
        present = accounts.clients()
        passwords = {d: device_password(secret, d) for d in device_ids}
        accounts.create_devices([d for d in device_ids if d not in present], passwords)
        gateways = 0
        for link in links:
            if link.client_id in passwords:  # a device speaking another format itself (SenML)
                accounts.allow(
                    DEVICE_ROLE_PREFIX + link.client_id, publish=link.publishes(), subscribe=link.subscriptions()
                )
                continue
            gateways += 1
            if link.client_id in present:
                accounts.allow(
                    GATEWAY_ROLE_PREFIX + link.client_id, publish=link.publishes(), subscribe=link.subscriptions()
                )
            else:
                accounts.create_gateway(
                    link.client_id, device_password(secret, link.client_id),
                    publish=link.publishes(), subscribe=link.subscriptions(),
                )  # fmt: skip
        ingest = _service(
            accounts, INGEST_USER, "ioc-ingest", keep_secret(var / "ingest.pw", new_password), INGEST_USER in present
        )
        shared = [f"$share/+/{t}" for t in ingest_topics]
        accounts.allow("ioc-ingest", subscribe=[*ingest_topics, *shared], publish=ingest_commands)
        operator = _service(
            accounts, OPERATOR_USER, "ioc-operator", keep_secret(var / "operator.pw", new_password),
            OPERATOR_USER in present,
        )  # fmt: skip
    assert stack.broker.port is not None
    return DemoBroker(
        stack.tls_url, stack.plain_url, stack.broker.port, stack.ca_file, var / "device-secret.key", ingest, operator,
        len(device_ids), gateways,
    )  # fmt: skip
