"""The demo's broker as a province would run it: TLS, and an account per device.

A local CA and the broker's certificate under ``var/tls/`` (:mod:`ioc.tls`); Mosquitto with the
dynamic security plugin (no anonymous clients) serving MQTT over TLS, plus plaintext on loopback
for local tools; every registry device's account created through the plugin's API, with a
password derived from the demo's fleet secret (so the simulator can log each device in), and
accounts of their own for ingest and for an operator watching the stream. The admin password is
kept in ``var/broker-admin.pw`` so that ``ioc devices add --broker-admin-url …`` works on the
running demo.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ioc.servers import ServerProcess, TlsFiles, start_mosquitto
from ioc.tls import issue_server_cert, make_ca
from registry.broker_accounts import DEVICE_ROLE_PREFIX, BrokerAccounts, Credentials
from simulators.formats.base import Link
from simulators.publisher import device_password

ADMIN_USER = "ioc-admin"
INGEST_USER = "ioc-ingest-demo"
OPERATOR_USER = "ioc-operator"


@dataclass(frozen=True)
class DemoBroker:
    """The running broker, its URLs and the files and accounts the demo's clients need."""

    server: ServerProcess
    tls_url: str
    plain_url: str
    ca_file: Path
    device_secret_file: Path
    ingest: Credentials
    operator: Credentials
    devices: int
    gateways: int

    def stop(self) -> None:
        self.server.stop()


def _secret_file(path: Path, value: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
        f.write(value + "\n")
    return path


def start_demo_broker(
    var: Path,
    *,
    port: int,
    tls_port: int,
    device_ids: Sequence[str],
    links: Sequence[Link] = (),
    ingest_topics: Sequence[str] = (),
    ingest_commands: Sequence[str] = (),
) -> DemoBroker:
    """Start the broker in ``var/mosquitto`` (fresh) and provision every account: the devices', the
    ``links``' (gateways speaking other formats; a device publishing one itself gets its topics
    added to its own role), and ingest's, which may also read ``ingest_topics`` (the sources file's)
    and publish ``ingest_commands`` (Sparkplug rebirth requests)."""
    ca = make_ca(var / "tls")
    server_pair = issue_server_cert(ca, var / "tls", hostnames=("localhost",), ips=("127.0.0.1",))
    admin_password = secrets.token_urlsafe(24)
    _secret_file(var / "broker-admin.pw", admin_password)
    secret = secrets.token_hex(32)
    secret_file = _secret_file(var / "device-secret.key", secret)
    server = start_mosquitto(
        var / "mosquitto", port=port, dynsec_admin=(ADMIN_USER, admin_password),
        tls=TlsFiles(ca.cert, server_pair.cert, server_pair.key), tls_port=tls_port,
    )  # fmt: skip
    plain_url = f"mqtt://127.0.0.1:{server.port}"
    try:
        with BrokerAccounts(plain_url, ADMIN_USER, admin_password) as accounts:
            accounts.ensure_roles()
            passwords = {d: device_password(secret.encode(), d) for d in device_ids}
            accounts.create_devices(list(device_ids), passwords)
            for link in links:
                if link.client_id in passwords:  # a device speaking another format itself (SenML)
                    accounts.allow(
                        DEVICE_ROLE_PREFIX + link.client_id, publish=link.publishes(), subscribe=link.subscriptions()
                    )
                else:
                    accounts.create_gateway(
                        link.client_id, device_password(secret.encode(), link.client_id),
                        publish=link.publishes(), subscribe=link.subscriptions(),
                    )  # fmt: skip
            ingest = accounts.create_service(INGEST_USER, "ioc-ingest")
            shared = [f"$share/+/{t}" for t in ingest_topics]
            accounts.allow("ioc-ingest", subscribe=[*ingest_topics, *shared], publish=ingest_commands)
            operator = accounts.create_service(OPERATOR_USER, "ioc-operator")
    except BaseException:
        server.stop()
        raise
    _secret_file(var / "operator.pw", operator.password)
    return DemoBroker(
        server, f"mqtts://127.0.0.1:{server.tls_port}", plain_url, ca.cert, secret_file, ingest, operator,
        len(device_ids), sum(1 for link in links if link.client_id not in passwords),
    )  # fmt: skip
