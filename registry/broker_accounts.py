"""Broker accounts for registry devices, through Mosquitto's dynamic security plugin.

Its control API is MQTT: JSON commands published to ``$CONTROL/dynamic-security/v1``, answers on
``…/response``. Each device gets a client whose user name and bound client id are its device id,
with a role of its own, ``ioc-device-{id}``: publish only under ``ioc/v1/+/+/{id}/#`` (never a
dead letter), read nothing. (One role per device because the plugin of Mosquitto 2.0 does not put
the user name or client id into ACL topics: ``%u`` and ``%c`` stay literal — measured.)
Suspending or decommissioning a device disables its client, which the broker also disconnects at
once. Ingest, operators and the health check have roles of their own
(:data:`ROLES`). Passwords are generated here and shown once; the broker keeps only a salted hash.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from contract.topics import mqtt_endpoint
from registry.errors import RegistryError

CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = CONTROL_TOPIC + "/response"
DEVICE_ROLE_PREFIX: Final = "ioc-device-"
GATEWAY_ROLE_PREFIX: Final = "ioc-gateway-"
COMMANDS_PER_MESSAGE: Final = 200


def device_acls(device_id: str) -> list[dict[str, Any]]:
    """A device's own topics only, never a dead letter; it reads nothing (subscribing is denied by default)."""
    return [
        {"acltype": "publishClientSend", "topic": "ioc/v1/_dlq/#", "allow": False, "priority": 10},
        {"acltype": "publishClientSend", "topic": f"ioc/v1/+/+/{device_id}/#", "allow": True},
    ]


ROLES: Final[dict[str, list[dict[str, Any]]]] = {
    # Ingest: reads every device topic and the broker's drop counter, writes dead letters.
    "ioc-ingest": [
        {"acltype": "subscribePattern", "topic": "ioc/v1/#", "allow": True},
        # Workers sharing the stream: the plugin checks the whole $share/<group>/… filter.
        {"acltype": "subscribePattern", "topic": "$share/+/ioc/v1/#", "allow": True},
        {"acltype": "subscribePattern", "topic": "$SYS/broker/publish/messages/dropped", "allow": True},
        {"acltype": "publishClientSend", "topic": "ioc/v1/_dlq/#", "allow": True},
    ],
    # People watching the stream and the dead letters: read only.
    "ioc-operator": [{"acltype": "subscribePattern", "topic": "ioc/v1/#", "allow": True}],
    # The broker health check.
    "ioc-health": [{"acltype": "subscribePattern", "topic": "$SYS/broker/uptime", "allow": True}],
}


class BrokerAdmin(BaseSettings):
    """The settings group of whoever provisions devices (``ioc devices``, the API): the broker's admin."""

    broker_admin_url: str | None = Field(
        None, description="broker with the dynamic security plugin: device accounts follow the registry (mqtt://…)"
    )
    broker_admin_username: str = Field("ioc-admin", description="dynamic security admin account")
    broker_admin_password: SecretStr | None = Field(None, description="its password")
    broker_admin_ca_file: Path | None = Field(
        None, description="mqtts:// broker admin URL: trust this CA (PEM) for the broker's certificate"
    )

    @field_validator("broker_admin_url")
    @classmethod
    def _broker_url(cls, v: str | None) -> str | None:
        if v:
            mqtt_endpoint(v)
        return v or None

    def accounts(self) -> BrokerAccounts | None:
        """The broker's account admin, when one is configured (a context manager to log in)."""
        if not self.broker_admin_url:
            return None
        password = self.broker_admin_password.get_secret_value() if self.broker_admin_password else ""
        return BrokerAccounts(
            self.broker_admin_url, self.broker_admin_username, password, ca_file=self.broker_admin_ca_file
        )

    @contextmanager
    def session(self) -> Iterator[BrokerAccounts | None]:
        """Logged in as the admin with the roles in place (None when no broker admin is configured)."""
        accounts = self.accounts()
        if accounts is None:
            yield None
            return
        with accounts:
            accounts.ensure_roles()
            yield accounts


class BrokerAccountError(RegistryError):
    """The broker refused a command or could not be reached; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a device needs to log in: shown once, never stored by us."""

    device_id: str
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class ClientState:
    """A broker client as the plugin has it: disabled or not, and its roles."""

    disabled: bool
    roles: frozenset[str]


def new_password() -> str:
    """A random password for one device account (about 190 bits)."""
    return secrets.token_urlsafe(24)


def _chunks(items: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class BrokerAccounts:
    """A connection to the broker's dynamic security plugin as its admin (a context manager)."""

    def __init__(
        self, mqtt_url: str, username: str, password: str, *, ca_file: Path | None = None, timeout_s: float = 10.0
    ) -> None:
        """Log in as the plugin's admin at ``mqtt_url`` (``mqtts://``: TLS, trusting ``ca_file``)."""
        self._url = mqtt_url
        endpoint = mqtt_endpoint(mqtt_url)
        self._host, self._port = endpoint.host, endpoint.port
        self._timeout = timeout_s
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{username}-{secrets.token_hex(4)}", protocol=paho.MQTTv5
        )
        self._client.username_pw_set(username, password)
        if endpoint.tls:
            self._client.tls_set(ca_certs=str(ca_file) if ca_file else None)
        self._cond = threading.Condition()
        self._responses: list[dict[str, Any]] = []
        self._subscribed = False
        self._connect_error: str | None = None
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_connect = self._on_connect

    # -- connection --------------------------------------------------------------------------

    def __enter__(self) -> BrokerAccounts:
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except ssl.SSLError as exc:
            raise BrokerAccountError(
                f"the broker at {self._url} failed the TLS handshake ({getattr(exc, 'verify_message', None) or exc})"
            ) from None
        except OSError as exc:
            raise BrokerAccountError(f"cannot reach the broker at {self._url} ({exc.strerror or exc})") from None
        self._client.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._subscribed or self._connect_error is not None, self._timeout):
                self.close()
                raise BrokerAccountError(f"the broker at {self._url} did not answer within {self._timeout:.0f} s")
        if self._connect_error is not None:
            self.close()
            raise BrokerAccountError(f"the broker at {self._url} refused the admin login: {self._connect_error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any = None) -> None:
        if rc.is_failure:
            with self._cond:
                self._connect_error = str(rc)
                self._cond.notify_all()
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, _c: paho.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any = None) -> None:
        with self._cond:
            if any(c.is_failure for c in codes):
                self._connect_error = "this account may not use the dynamic security API"
            self._subscribed = True
            self._cond.notify_all()

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            responses = json.loads(msg.payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        with self._cond:
            self._responses.extend(r for r in responses if isinstance(r, dict))
            self._cond.notify_all()

    # -- commands ----------------------------------------------------------------------------

    def run(self, commands: Sequence[dict[str, Any]], *, ignore: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Send ``commands`` and wait for every answer; :class:`BrokerAccountError` on any error not in ``ignore``."""
        tolerated = set(ignore)
        answers: list[dict[str, Any]] = []
        for chunk in _chunks(list(commands), COMMANDS_PER_MESSAGE):
            tagged = [{**c, "correlationData": f"{i}-{secrets.token_hex(4)}"} for i, c in enumerate(chunk)]
            wanted = {c["correlationData"] for c in tagged}
            with self._cond:
                self._responses.clear()
            info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
            info.wait_for_publish(self._timeout)
            with self._cond:
                done = self._cond.wait_for(lambda w=wanted: w <= self._answered(), self._timeout)  # type: ignore[misc]
                got = {r.get("correlationData"): r for r in self._responses}
            if not done:
                raise BrokerAccountError(f"the broker at {self._url} did not answer {len(chunk)} account command(s)")
            for c in tagged:
                answer = got[c["correlationData"]]
                error = answer.get("error")
                if error and error not in tolerated:
                    who = c.get("username") or c.get("rolename") or ""
                    raise BrokerAccountError(f"broker refused {c['command']} {who}: {error}")
                answers.append(answer)
        return answers

    def _answered(self) -> set[object]:
        return {r.get("correlationData") for r in self._responses}

    def ensure_roles(self) -> None:
        """Create the roles of :data:`ROLES` (or set their ACLs again if they exist)."""
        commands: list[dict[str, Any]] = []
        for role, acls in ROLES.items():
            commands.append({"command": "createRole", "rolename": role})
            commands.extend({"command": "addRoleACL", "rolename": role, **acl} for acl in acls)
        self.run(commands, ignore={"Role already exists", "ACL with this topic already exists"})

    def create_devices(self, device_ids: Sequence[str], passwords: dict[str, str] | None = None) -> list[Credentials]:
        """A client per device (user name = bound client id = device id) with its own role."""
        given = passwords or {}
        creds = [Credentials(d, d, given.get(d) or new_password()) for d in device_ids]
        commands: list[dict[str, Any]] = []
        for c in creds:
            role = DEVICE_ROLE_PREFIX + c.device_id
            commands.append({"command": "createRole", "rolename": role, "acls": device_acls(c.device_id)})
            commands.append(
                {"command": "createClient", "username": c.username, "password": c.password,
                 "clientid": c.device_id, "roles": [{"rolename": role}]}
            )  # fmt: skip
        self.run(commands)
        return creds

    def allow(self, role: str, *, publish: Iterable[str] = (), subscribe: Iterable[str] = ()) -> None:
        """Let ``role`` publish to and subscribe to these topic filters too (another format's
        topics for ingest, a device's SenML topic): each ACL once, whatever was there."""
        acls = [{"acltype": "publishClientSend", "topic": t, "allow": True} for t in publish]
        acls += [{"acltype": "subscribePattern", "topic": t, "allow": True} for t in subscribe]
        self.run(
            [{"command": "addRoleACL", "rolename": role, **acl} for acl in acls],
            ignore={"ACL with this topic already exists"},
        )

    def create_gateway(
        self, client_id: str, password: str, *, publish: Sequence[str], subscribe: Sequence[str] = ()
    ) -> Credentials:
        """An account for a gateway speaking for many devices (a LoRaWAN network server's
        integration, a Sparkplug edge node): user name = bound client id, a role of its own
        (``ioc-gateway-{client id}``) that may publish to ``publish`` and read ``subscribe`` only."""
        role = GATEWAY_ROLE_PREFIX + client_id
        acls = [{"acltype": "publishClientSend", "topic": "ioc/v1/_dlq/#", "allow": False, "priority": 10}]
        acls += [{"acltype": "publishClientSend", "topic": t, "allow": True} for t in publish]
        acls += [{"acltype": "subscribePattern", "topic": t, "allow": True} for t in subscribe]
        self.run([
            {"command": "createRole", "rolename": role, "acls": acls},
            {"command": "createClient", "username": client_id, "password": password, "clientid": client_id,
             "roles": [{"rolename": role}]},
        ])  # fmt: skip
        return Credentials(client_id, client_id, password)

    def create_service(self, username: str, role: str, password: str | None = None) -> Credentials:
        """An account for ingest, an operator or the health check (client id bound to the user name)."""
        if role not in ROLES:
            raise BrokerAccountError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        cred = Credentials(username, username, password or new_password())
        self.run(
            [{"command": "createClient", "username": username, "password": cred.password, "clientid": username,
              "roles": [{"rolename": role}]}]
        )  # fmt: skip
        return cred

    def clients(self, usernames: Iterable[str] | None = None) -> dict[str, ClientState]:
        """Clients the broker has (all, or these), with whether each is disabled and its roles."""
        if usernames is None:
            answer = self.run([{"command": "listClients", "verbose": True, "count": -1}])[0]
            found = answer.get("data", {}).get("clients", [])
        else:
            answers = self.run(
                [{"command": "getClient", "username": u} for u in usernames], ignore={"Client not found"}
            )
            found = [a["data"]["client"] for a in answers if not a.get("error")]
        return {
            str(c["username"]): ClientState(
                bool(c.get("disabled", False)), frozenset(str(r["rolename"]) for r in c.get("roles", []))
            )
            for c in found
        }

    def set_enabled(
        self, device_ids: Iterable[str], enabled: bool, *, known: Mapping[str, ClientState] | None = None
    ) -> None:
        """Enable device clients, or disable them: the broker disconnects them at once.

        Disabling also takes the device's role away: a device that logs in with a certificate
        (``use_identity_as_username``) skips the password check where a disabled client is refused,
        and is straight back in (measured on Mosquitto 2.0.11); without its role every publish is
        refused. Enabling gives the role back. Only what differs is sent (the plugin answers an
        error to a role a client has already); ``known`` saves asking for each client's state.
        """
        ids = list(device_ids)
        states = known if known is not None else self.clients(ids)
        commands: list[dict[str, Any]] = []
        for d in ids:
            state = states.get(d)
            if state is None:
                raise BrokerAccountError(f"device {d!r} has no broker account (ioc devices sync-broker creates it)")
            role = DEVICE_ROLE_PREFIX + d
            has_role = role in state.roles
            if enabled:
                if not has_role:
                    commands.append({"command": "addClientRole", "username": d, "rolename": role})
                if state.disabled:
                    commands.append({"command": "enableClient", "username": d})
            else:
                if has_role:
                    commands.append({"command": "removeClientRole", "username": d, "rolename": role})
                if not state.disabled:
                    commands.append({"command": "disableClient", "username": d})
        self.run(commands)

    def reset_password(self, device_id: str) -> Credentials:
        """A new password for a device (the old one stops working)."""
        cred = Credentials(device_id, device_id, new_password())
        self.run([{"command": "setClientPassword", "username": device_id, "password": cred.password}])
        return cred
