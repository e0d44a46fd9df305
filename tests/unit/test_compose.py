"""docker-compose.yml and the files it mounts: pinned, healthy, secret-free, in step with the code.

Docker is not needed: the compose file is checked as data. When Debian's ``mosquitto``,
``mosquitto-clients`` (``mosquitto_ctrl``) and its dynamic security plugin are installed, the
three init jobs run for real — their compose commands, with every container path mapped to a temp
folder — and so does the broker with the compose ``mosquitto.conf`` (marked ``integration``):
see :func:`start_compose_broker`.

To add a service configured through ``IOC_*`` variables or ``ioc`` flags, add its settings class
to :data:`SETTINGS_BY_SERVICE` (or :data:`ALSO_READ_BY_SERVICE`).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import ipaddress
import json
import os
import pwd
import re
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from pydantic_settings import BaseSettings

from contract.fields import Kind
from contract.fleet import Device, Fleet, dump_fleet
from contract.topics import DLQ_PREFIX, SUBSCRIPTION, device_topic
from ingest.config import IngestSettings
from ioc.servers import ServerProcess, dynsec_plugin, find_binary, free_port
from ioc.tls import make_ca
from registry.broker_accounts import ROLES, BrokerAccountError, BrokerAccounts, device_acls
from registry.store import DeviceRegistry

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_PATH = ROOT / "docker-compose.yml"
MOSQUITTO_CONF_PATH = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
ENV_EXAMPLE_PATH = ROOT / "deploy" / "compose.env.example"
INFLUX_INIT_DIR = ROOT / "deploy" / "influxdb" / "init"

SETTINGS_BY_SERVICE: dict[str, str] = {
    "ingest": "ingest.config:IngestSettings",
    "simulators": "simulators.config:SimulateSettings",
    "api": "api.config:ApiSettings",
}
"""Compose services running ``ioc``: the settings class their IOC_* variables and flags feed."""

ALSO_READ_BY_SERVICE: dict[str, tuple[str, ...]] = {
    "ingest": ("alerts.config:WebhookSettings",),
    "api": ("alerts.config:WebhookSettings",),
    "demo-subscription": ("alerts.config:WebhookSettings",),
    "ioc-init": ("registry.cli:RegistrySettings",),
    "broker-accounts": ("registry.cli:RegistrySettings",),
    "devices": ("registry.cli:RegistrySettings",),
}
"""Further settings classes a service reads from the same environment (the alert store, webhooks,
``ioc devices``)."""


def all_fields(service: str) -> set[str]:
    """Every settings field a service's IOC_* variables may set."""
    names = [SETTINGS_BY_SERVICE[service]] if service in SETTINGS_BY_SERVICE else []
    fields: set[str] = set()
    for spec in (*names, *ALSO_READ_BY_SERVICE.get(service, ())):
        module, _, name = spec.partition(":")
        fields |= set(getattr(importlib.import_module(module), name).model_fields)
    return fields


CLI_ONLY_FLAGS = {"write_fleet", "devices"}
"""``ioc`` flags that are actions, not settings fields."""

GRAFANA_DIR = ROOT / "grafana"

_INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
_REQUIRED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?(?P<msg>[^}]+)\}")
_SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
_MQTT_DEFAULT_INFLIGHT = 20
_MQTT_DEFAULT_QUEUE = 1000
SERVICE_USERS = ("ioc-ingest", "ioc-health", "ioc-operator")
"""Broker accounts broker-accounts creates besides one per device."""
ADMIN_USER = "ioc-admin"
"""The dynamic security plugin's admin account (mosquitto_ctrl dynsec init in broker-init)."""
INIT_JOBS = ("ioc-init", "broker-init", "broker-accounts")
"""The one-shot services, in the order compose runs them."""
TLS_PORT = 8883
"""The broker's one published port: MQTT over TLS."""
PLUGIN_IN_IMAGE = "/usr/lib/mosquitto_dynamic_security.so"
"""Where the eclipse-mosquitto 2.0 image installs the plugin (docker/2.0/Dockerfile of eclipse/mosquitto)."""
BROKER_HOST_NAMES = {"mosquitto", "localhost"}
"""Names the broker's certificate must carry: the compose service name, and the healthcheck's host."""
LISTENER_OPTIONS = {
    "protocol", "cafile", "capath", "certfile", "keyfile", "require_certificate", "use_username_as_clientid",
    "use_identity_as_username", "use_subject_as_username", "tls_version", "ciphers", "crlfile", "max_connections",
    "mount_point", "socket_domain", "bind_interface",
}  # fmt: skip
"""Mosquitto options that belong to the listener above them; every other option is global."""


# --- helpers --------------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_PATH.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = load_compose()["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def compose_strings() -> list[str]:
    """Every string of the compose file (comments excluded): what compose interpolates."""
    return list(_strings(load_compose()))


def one_shot_services() -> set[str]:
    """Services others wait for to *complete* (init jobs): they need no healthcheck."""
    found = set()
    for svc in services().values():
        for name, dep in (svc.get("depends_on") or {}).items():
            if dep.get("condition") == "service_completed_successfully":
                found.add(name)
    return found


def tool_services() -> set[str]:
    """Services in a profile: not started by ``docker compose up``, run by hand (``docker compose run``)."""
    return {name for name, svc in services().items() if svc.get("profiles")}


def settings_class(service: str) -> type[BaseSettings]:
    module, _, name = SETTINGS_BY_SERVICE[service].partition(":")
    cls: type[BaseSettings] = getattr(importlib.import_module(module), name)
    assert issubclass(cls, BaseSettings)
    return cls


def command_flags(service: dict[str, Any]) -> dict[str, str | None]:
    """``--flag value`` pairs of a list-form command, as settings field names."""
    args = service.get("command") or []
    assert isinstance(args, list), "write commands of ioc services as lists"
    flags: dict[str, str | None] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else None
            flags[arg[2:].replace("-", "_")] = value
    return flags


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host source, container target) of every bind mount."""
    mounts = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            if vol.get("type") == "bind":
                mounts.append((vol["source"], vol["target"]))
            continue
        source, target = vol.split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def named_volumes(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path → (volume name, read-only) of every named volume."""
    found = {}
    for vol in service.get("volumes") or []:
        assert isinstance(vol, str), "write volumes as NAME:/path[:ro]"
        source, target, *mode = vol.split(":")
        if not source.startswith((".", "/", "~")):
            found[target] = (source, mode == ["ro"])
    return found


def mount_targets(service: dict[str, Any]) -> list[str]:
    targets = []
    for vol in service.get("volumes") or []:
        targets.append(vol["target"] if isinstance(vol, dict) else vol.split(":")[1])
    return targets


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def conf_values(text: str) -> dict[str, list[str]]:
    """Mosquitto-style ``key value`` lines (comments and blanks skipped)."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        values.setdefault(key, []).append(value.strip())
    return values


def conf_listeners(text: str) -> tuple[dict[str, list[str]], dict[str, dict[str, list[str]]]]:
    """Global options, and each listener's own options (by its ``listener`` arguments)."""
    global_opts: dict[str, list[str]] = {}
    listeners: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = " ".join(value.split())
        if key == "listener":
            assert value not in listeners, f"listener {value} twice"
            current = listeners[value] = {}
        elif key in LISTENER_OPTIONS:
            assert current is not None, f"{key} before any listener"
            current.setdefault(key, []).append(value)
        else:
            global_opts.setdefault(key, []).append(value)
    return global_opts, listeners


def admin_listener() -> tuple[int, dict[str, list[str]]]:
    """The port and options of the plugin's admin listener (the loopback one)."""
    _, listeners = conf_listeners(MOSQUITTO_CONF_PATH.read_text(encoding="utf-8"))
    loopback = [(args, opts) for args, opts in listeners.items() if args.split()[1:] == ["127.0.0.1"]]
    assert len(loopback) == 1, listeners
    args, opts = loopback[0]
    return int(args.split()[0]), opts


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one string: ``${NAME…}`` from ``env``, ``$$`` a literal ``$``."""

    def value_of(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"] or "", m["arg"] or ""
        given = env.get(name)
        is_set = given is not None and (given != "" or ":" not in op)
        if op.endswith("+"):
            return arg if is_set else ""
        if given is not None and is_set:
            return given
        assert not op.endswith("?"), f"compose refuses to start: {arg}"
        return arg if op.endswith("-") else ""

    return _INTERPOLATION.sub(value_of, value).replace("$$", "$")


def volume(root: Path, name: str) -> Path:
    """Where a local run keeps the named volume ``name``."""
    return root / "volumes" / name


def container_paths(service: str, root: Path) -> dict[str, Path]:
    """A service's mount points → local folders: named volumes under ``root/volumes``, bind mounts
    at their repository path, compose secrets under ``root/secrets``."""
    svc = services()[service]
    paths: dict[str, Path] = {target: volume(root, name) for target, (name, _) in named_volumes(svc).items()}
    paths.update({target: _repo_path(source) for source, target in bind_mounts(svc)})
    paths.update({f"/run/secrets/{name}": root / "secrets" / name for name in svc.get("secrets") or []})
    return paths


def localize(text: str, paths: Mapping[str, Path]) -> str:
    """``text`` with every container path under a mount point replaced by its local path."""
    if not paths:
        return text
    alternatives = "|".join(re.escape(t) for t in sorted(paths, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.-])({alternatives})(?![\w.-])")
    return pattern.sub(lambda m: str(paths[m[1]]), text)


DEVICE_SECRET = "y" * 32
"""The fleet secret :func:`start_compose_broker` derives device passwords from."""
ENV_VALUES: dict[str, str] = {
    "IOC_DEVICE_SECRET": DEVICE_SECRET,
    "IOC_MQTT_PASSWORD": "ingest-password-for-tests",
    "IOC_BROKER_ADMIN_PASSWORD": "admin-password-for-tests",
}
"""The ``.env`` the init jobs run with here (the other variables are not theirs)."""


def run_init_job(
    service: str, root: Path, env: Mapping[str, str] = ENV_VALUES, *, admin_port: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot service's compose command (``sh -eu -c``) on this machine, as compose would:
    its variables interpolated from ``env``, its volumes and secrets in folders under ``root``, the
    broker's admin listener on ``admin_port``. The ``ioc`` and ``python`` of this environment."""
    svc = services()[service]
    assert svc["entrypoint"] == ["/bin/sh", "-eu", "-c"], service
    paths = container_paths(service, root)
    for path in paths.values():
        if path.is_relative_to(root / "volumes"):
            path.mkdir(parents=True, exist_ok=True)
    declared = load_compose().get("secrets") or {}
    for name in svc.get("secrets") or []:
        secret = root / "secrets" / name
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_text(env[declared[name]["environment"]])
    admin = f"127.0.0.1:{admin_listener()[0]}"

    def local(text: str) -> str:
        text = localize(interpolate(text, env), paths)
        return text.replace(admin, f"127.0.0.1:{admin_port}") if admin_port is not None else text

    script = local(svc["command"][0])
    if os.geteuid() != 0 or not _has_user("mosquitto"):
        script = "chown() { :; }\n" + script  # the files stay ours; the local broker runs as we do
    run_env = {k: local(v) for k, v in environment(svc).items()}
    run_env |= {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "HOME": str(root),
    }
    return subprocess.run(
        ["/bin/sh", "-eu", "-c", script],
        env=run_env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def local_broker_conf(conf: str, *, ports: Mapping[int, int], paths: Mapping[str, Path]) -> str:
    """The compose ``mosquitto.conf`` for a broker on this machine: each listener on 127.0.0.1 at
    ``ports[its port]``, Debian's plugin, every file at its local path (``paths``: the mosquitto
    service's mounts). Fails when a file the config names is not under one of the mounts."""
    plugin = dynsec_plugin()
    assert plugin is not None
    path_keys = {"plugin_opt_config_file", "cafile", "certfile", "keyfile", "persistence_location"}
    out, seen = [], set()
    for line in conf.splitlines():
        key, _, value = line.strip().partition(" ")
        if not key or key.startswith("#"):
            out.append(line)
            continue
        seen.add(key)
        if key == "listener":
            line = f"listener {ports[int(value.split()[0])]} 127.0.0.1"
        elif key == "plugin":
            line = f"plugin {plugin}"
        elif key in path_keys:
            local = localize(value, paths)
            assert local != value, f"mosquitto.conf: {key} {value} is not in a volume the broker mounts"
            line = f"{key} {local}"
        out.append(line)
    assert {"listener", "plugin"} <= seen
    if os.geteuid() == 0:  # do not drop to the `mosquitto` user, which cannot read tmp files
        out.append(f"user {pwd.getpwuid(0).pw_name}")
    return "\n".join(out) + "\n"


def _tiny_fleet() -> Fleet:
    def device(i: int, kind: Kind) -> Device:
        return Device(
            id=f"dev-{kind.value}-{i}",
            kind=kind,
            province="ca_mau",
            district="ngoc_hien",
            site="sluice",
            lat=8.68,
            lon=104.97,
        )

    return Fleet(devices=tuple(device(i, k) for i, k in enumerate(Kind)))


def _documented_password(secret: str, device_id: str) -> str:
    # deploy/mosquitto/README.md: hex HMAC-SHA256(key = stripped secret, message = device id)
    return hmac.new(secret.strip().encode(), device_id.encode(), hashlib.sha256).hexdigest()


def fleet_path(root: Path) -> Path:
    """The fleet file ioc-init imports (``/data/fleet.yaml`` on the registry volume), locally."""
    return Path(localize("/data/fleet.yaml", container_paths("ioc-init", root)))


def registry_url(root: Path) -> str:
    """The registry every service uses (``IOC_REGISTRY_URL``), locally."""
    return localize(environment(services()["ioc-init"])["IOC_REGISTRY_URL"], container_paths("ioc-init", root))


def _write_fleet(root: Path, fleet: Fleet) -> None:
    path = fleet_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    dump_fleet(fleet, path)


def _skip_without_mosquitto() -> str:
    binary = find_binary("mosquitto")
    if binary is None or find_binary("mosquitto_ctrl") is None or dynsec_plugin() is None:
        pytest.skip("needs Debian's mosquitto, mosquitto-clients (mosquitto_ctrl) and the dynamic security plugin")
    return binary


# --- images and services --------------------------------------------------------------------------


def test_compose_parses_with_the_expected_services() -> None:
    assert {*INIT_JOBS, "mosquitto", "influxdb", "grafana", "ingest", "simulators", "api"} <= set(services())
    assert not {"fleet-init", "broker-auth"} & set(services()), "the password-file scheme is gone"


def test_every_image_is_pinned_to_a_version() -> None:
    for name, svc in services().items():
        image = svc.get("image")
        assert image, f"{name}: give every service an image (with build: the tag it builds)"
        repo, sep, tag = image.rpartition(":")
        assert sep, f"{name}: {image} has no tag"
        assert repo, f"{name}: {image} has no repository"
        assert "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} is not a version"


def test_base_images_are_the_intended_majors() -> None:
    svcs = services()
    assert re.fullmatch(r"eclipse-mosquitto:2\.0\.\d+", svcs["mosquitto"]["image"])
    assert svcs["broker-init"]["image"] == svcs["mosquitto"]["image"], "mosquitto_ctrl of the broker's version"
    assert re.fullmatch(r"influxdb:2\.\d+\.\d+", svcs["influxdb"]["image"])
    assert re.fullmatch(r"grafana/grafana-oss:\d+\.\d+\.\d+", svcs["grafana"]["image"])
    for name in (*SETTINGS_BY_SERVICE, "ioc-init", "broker-accounts", "devices"):
        assert svcs[name]["build"]["context"] == "."
        assert svcs[name]["image"] == svcs["ingest"]["image"]


def test_long_running_services_have_healthchecks() -> None:
    one_shot, tools = one_shot_services(), tool_services()
    assert set(INIT_JOBS) <= one_shot
    assert tools == {"devices"}
    for name, svc in services().items():
        if name in one_shot or name in tools:
            assert svc.get("restart") == "no", f'{name} runs once: restart: "no"'
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} has its healthcheck disabled"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check.get("interval"), name
        assert check.get("retries"), name
        assert svc.get("restart") == "unless-stopped", name


STARTED_NOT_HEALTHY = {("broker-accounts", "mosquitto")}
"""Dependencies on a service that has started only: the broker's healthcheck logs in with the
ioc-health account, which broker-accounts creates (it waits for the broker's port itself)."""


def test_dependencies_wait_for_health_or_completion() -> None:
    one_shot = one_shot_services()
    for name, svc in services().items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: use depends_on with conditions"
        for dep, spec in deps.items():
            if (name, dep) in STARTED_NOT_HEALTHY:
                expected = "service_started"
            else:
                expected = "service_completed_successfully" if dep in one_shot else "service_healthy"
            assert spec.get("condition") == expected, f"{name} -> {dep}"
    svcs = services()
    assert list(svcs["broker-init"]["depends_on"]) == ["ioc-init"]
    assert list(svcs["mosquitto"]["depends_on"]) == ["broker-init"]
    assert {"ioc-init", "mosquitto"} == set(svcs["broker-accounts"]["depends_on"])
    assert {"broker-accounts", "mosquitto", "influxdb"} <= set(svcs["ingest"]["depends_on"])
    assert "mosquitto" in svcs["simulators"]["depends_on"]


def test_named_volumes_are_declared() -> None:
    doc = load_compose()
    declared = set(doc.get("volumes") or {})
    for name, svc in doc["services"].items():
        for vol in svc.get("volumes") or []:
            source = vol["source"] if isinstance(vol, dict) else vol.split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_host_ports_bind_to_loopback_by_default() -> None:
    for name, svc in services().items():
        for port in svc.get("ports") or []:
            assert str(port).startswith("${HOST_BIND_ADDRESS:-127.0.0.1}:"), f"{name}: {port}"


# --- settings: IOC_* variables and ioc flags ------------------------------------------------------


def test_ioc_environment_keys_are_settings_fields() -> None:
    for name, svc in services().items():
        keys = {k for k in environment(svc) if k.startswith("IOC_")}
        if name not in SETTINGS_BY_SERVICE and name not in ALSO_READ_BY_SERVICE:
            assert not keys, f"{name} sets {keys}: add its settings class to SETTINGS_BY_SERVICE"
            continue
        fields = {f"IOC_{f.upper()}" for f in all_fields(name)}
        assert keys <= fields, f"{name}: {sorted(keys - fields)} are not settings fields"


def test_ioc_flags_are_settings_fields() -> None:
    for name in SETTINGS_BY_SERVICE:
        flags = set(command_flags(services()[name]))
        fields = set(settings_class(name).model_fields)
        assert flags <= fields | CLI_ONLY_FLAGS, f"{name}: {sorted(flags - fields - CLI_ONLY_FLAGS)}"


def _placeholder(value: str) -> str:
    return _INTERPOLATION.sub("x" * 24, value)


def _settings_from_service(name: str, **overrides: Any) -> BaseSettings:
    svc = services()[name]
    values: dict[str, Any] = {
        k.removeprefix("IOC_").lower(): _placeholder(v) for k, v in environment(svc).items() if k.startswith("IOC_")
    }
    values.update({k: v for k, v in command_flags(svc).items() if k not in CLI_ONLY_FLAGS})
    values.update(overrides)
    return settings_class(name)(_env_file=None, **values)


def _local_ca(tmp_path: Path) -> Path:
    """A CA certificate file, for settings that check theirs loads."""
    return make_ca(tmp_path / "ca").cert


def _ca_file_is_the_clients_ca(service: str, ca_file: str) -> None:
    """``ca_file`` lies in the ``ca`` volume, which the service mounts read-only and broker-init fills."""
    mounts = named_volumes(services()[service])
    found = [(target, ro) for target, (name, ro) in mounts.items() if name == "ca" and under(ca_file, target)]
    assert found, f"{service}: {ca_file} is not in the ca volume"
    assert found[0][1], f"{service}: mount the ca volume read-only"
    assert "ca" in {name for name, _ in named_volumes(services()["broker-init"]).values()}


def test_ingest_settings_from_compose_validate_and_point_at_the_services(tmp_path: Path) -> None:
    env = environment(services()["ingest"])
    settings = _settings_from_service("ingest", mqtt_ca_file=_local_ca(tmp_path))
    assert isinstance(settings, IngestSettings)
    assert settings.mqtt_host_port == ("mosquitto", TLS_PORT)
    assert settings.mqtt_url.startswith("mqtts://"), "TLS only"
    _ca_file_is_the_clients_ca("ingest", env["IOC_MQTT_CA_FILE"])
    assert settings.influx_url == "http://influxdb:8086"
    assert settings.influx_api == "v2"
    influx_env = environment(services()["influxdb"])
    assert settings.influx_org == influx_env["DOCKER_INFLUXDB_INIT_ORG"] == "mekong"
    assert settings.influx_bucket == influx_env["DOCKER_INFLUXDB_INIT_BUCKET"] == "ioc"
    assert settings.metrics_host == "0.0.0.0"
    health = " ".join(services()["ingest"]["healthcheck"]["test"])
    assert f":{settings.metrics_port}/" in health
    assert settings.mqtt_username == "ioc-ingest" in ROLES, "ingest logs in with the account of its role"
    assert settings.registry_url, "ingest follows the registry"
    assert settings.fleet is None, "not a fleet file"


def test_simulator_settings_from_compose_validate(tmp_path: Path) -> None:
    svc = services()["simulators"]
    flags = command_flags(svc)
    assert flags["device_secret_file"] in {f"/run/secrets/{s}" for s in svc["secrets"]}
    secret_file = tmp_path / "device_secret"  # the settings check that the file is there
    secret_file.write_text("x" * 32)
    settings = _settings_from_service("simulators", device_secret_file=secret_file, mqtt_ca_file=_local_ca(tmp_path))
    assert settings.mqtt_url == f"mqtts://mosquitto:{TLS_PORT}"  # type: ignore[attr-defined]
    assert flags["mqtt_ca_file"] is not None
    _ca_file_is_the_clients_ca("simulators", flags["mqtt_ca_file"])


def test_the_api_follows_the_same_registry_and_checks_the_tls_port() -> None:
    env = environment(services()["api"])
    assert env["IOC_MQTT_URL"] == f"mqtts://mosquitto:{TLS_PORT}"
    assert "IOC_FLEET" not in env


def test_one_registry_for_everyone() -> None:
    """ioc-init imports the fleet file into the registry; ingest, the API, broker-accounts and the
    devices tool use that registry, on the same volume; the simulators publish the same fleet."""
    svcs = services()
    url = environment(svcs["ioc-init"])["IOC_REGISTRY_URL"]
    assert url.startswith("sqlite:////"), "an absolute path on a volume"
    db = url.removeprefix("sqlite:///")
    users = ["ioc-init", "ingest", "api", "broker-accounts", "devices"]
    for name in users:
        env = environment(svcs[name])
        assert env["IOC_REGISTRY_URL"] == url, name
        assert "IOC_FLEET" not in env, name
        mounts = named_volumes(svcs[name])
        folder = next(t for t in mounts if under(db, t))
        # Read-write for all: SQLite readers of a WAL database write its -shm file.
        assert mounts[folder] == ("registry", False), name
    fleet = command_flags(svcs["simulators"])["fleet"]
    assert fleet is not None
    init = svcs["ioc-init"]["command"][0]
    assert f"ioc devices import {fleet}" in init
    assert f"--write-fleet {fleet} --devices 200 --seed 1" in init
    assert named_volumes(svcs["simulators"])[str(Path(fleet).parent)] == ("registry", True)


# --- secrets --------------------------------------------------------------------------------------


def test_secrets_have_no_defaults() -> None:
    text = "\n".join(compose_strings())
    # Only ${NAME...} interpolation (with braces); $$ is a literal dollar.
    assert not re.search(r"\$[A-Za-z_]", text.replace("$$", "")), "use ${NAME} for interpolation"
    for m in _INTERPOLATION.finditer(text):
        if _SECRET_NAME.search(m["name"]):
            assert m["op"] == ":?", f"{m[0]}: a secret must be required (:?), no default"
            assert m["arg"].strip(), f"{m[0]}: say how to set it"
    for name, svc in services().items():
        for key, value in environment(svc).items():
            if _SECRET_NAME.search(key):
                assert _REQUIRED.fullmatch(value), f"{name}: {key} must be ${{VAR:?message}}, not {value!r}"


def test_compose_secrets_come_from_required_variables() -> None:
    doc = load_compose()
    required = {m["name"] for m in _REQUIRED.finditer("\n".join(compose_strings()))}
    for name, secret in (doc.get("secrets") or {}).items():
        assert set(secret) == {"environment"}, f"secret {name}: take it from .env, not a file"
        assert secret["environment"] in required, f"secret {name}: also require ${secret['environment']}"


def test_env_example_lists_exactly_the_compose_variables() -> None:
    text = "\n".join(compose_strings())
    required = {m["name"] for m in _REQUIRED.finditer(text)}
    optional = {m["name"] for m in _INTERPOLATION.finditer(text)} - required
    example: dict[str, str] = {}
    commented: set[str] = set()
    for line in ENV_EXAMPLE_PATH.read_text(encoding="utf-8").splitlines():
        if m := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            example[m[1]] = m[2]
        elif m := re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=.*", line):
            commented.add(m[1])
    assert set(example) == required
    assert all(v == "" for v in example.values()), "no secret values in the example"
    assert optional <= commented


# --- mounted files --------------------------------------------------------------------------------


def _repo_path(source: str) -> Path:
    assert source.startswith("./"), f"{source}: bind-mount repository files with ./relative paths"
    return ROOT / source[2:]


def test_mounted_repository_files_exist() -> None:
    for name, svc in services().items():
        for source, _ in bind_mounts(svc):
            path = _repo_path(source)
            if path.is_relative_to(GRAFANA_DIR) and not GRAFANA_DIR.exists():
                continue  # test_grafana_provisioning_is_in_the_repository
            assert path.exists(), f"{name}: {source} does not exist"
        if build := svc.get("build"):
            assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()


def test_grafana_provisioning_is_in_the_repository() -> None:
    grafana = services()["grafana"]
    sources = [s for s, t in bind_mounts(grafana) if t == "/etc/grafana/provisioning"]
    assert sources == ["./grafana/provisioning"]
    if not GRAFANA_DIR.exists():
        pytest.skip("grafana/ is not in the repository yet; required once it is")
    assert _repo_path(sources[0]).is_dir()


# --- the broker -----------------------------------------------------------------------------------


def test_mosquitto_conf_limits_and_security() -> None:
    text = MOSQUITTO_CONF_PATH.read_text(encoding="utf-8")
    conf, listeners = conf_listeners(text)
    max_payload = IngestSettings.model_fields["max_payload_bytes"].default
    assert conf["per_listener_settings"] == ["false"], "the plugin and allow_anonymous apply to every listener"
    assert conf["allow_anonymous"] == ["false"]
    assert conf["plugin"] == [PLUGIN_IN_IMAGE]
    assert conf["plugin_opt_config_file"] == ["/mosquitto/data/dynamic-security.json"]
    assert not {"password_file", "acl_file"} & set(conf), "accounts live in the plugin only"
    assert conf["persistence"] == ["true"]
    assert int(conf["max_queued_messages"][0]) >= 1_000_000 > _MQTT_DEFAULT_QUEUE
    assert conf["max_queued_bytes"] == ["0"]
    assert int(conf["max_inflight_messages"][0]) > _MQTT_DEFAULT_INFLIGHT
    packet, message = int(conf["max_packet_size"][0]), int(conf["message_size_limit"][0])
    assert max_payload < message < packet, "ingest must see (and dead-letter) over-size payloads first"
    assert packet - message >= 1024, "room for the topic and properties"
    assert conf["sys_interval"] == ["10"]

    admin_port, admin = admin_listener()
    assert set(listeners) == {str(TLS_PORT), f"{admin_port} 127.0.0.1"}, "TLS, and the loopback admin listener"
    tls = listeners[str(TLS_PORT)]
    assert {"cafile", "certfile", "keyfile"} <= set(tls)
    assert tls["require_certificate"] == ["false"], "password logins over TLS"
    assert tls["use_username_as_clientid"] == ["true"], "one account cannot take over another's session"
    assert not {"certfile", "keyfile"} & set(admin)
    assert admin_port != TLS_PORT


def test_only_tls_is_published_and_only_the_admin_jobs_share_the_brokers_network() -> None:
    svcs = services()
    assert svcs["mosquitto"]["ports"] == [f"${{HOST_BIND_ADDRESS:-127.0.0.1}}:{TLS_PORT}:{TLS_PORT}"]
    admin_port, _ = admin_listener()
    sharing = {name for name, svc in svcs.items() if svc.get("network_mode")}
    assert sharing == {"broker-accounts", "devices"}
    for name in sharing:
        assert svcs[name]["network_mode"] == "service:mosquitto"
        assert environment(svcs[name])["IOC_BROKER_ADMIN_URL"] == f"mqtt://127.0.0.1:{admin_port}"
        assert environment(svcs[name])["IOC_BROKER_ADMIN_USERNAME"] == ADMIN_USER
    for name, svc in svcs.items():
        text = " ".join(_strings(svc))
        if name not in sharing:
            assert f":{admin_port}" not in text, f"{name} must not know the admin listener"
        assert "mqtt://mosquitto" not in text, f"{name}: TLS only (mqtts://mosquitto:8883)"
        assert ":1883" not in text, f"{name}: TLS only (mqtts://mosquitto:8883)"


def test_mosquitto_files_are_where_compose_mounts_them() -> None:
    svc = services()["mosquitto"]
    conf = conf_values(MOSQUITTO_CONF_PATH.read_text(encoding="utf-8"))
    assert dict(bind_mounts(svc))["./deploy/mosquitto/mosquitto.conf"] == "/mosquitto/config/mosquitto.conf"
    mounts = named_volumes(svc)
    init_mounts = named_volumes(services()["broker-init"])
    for key in ("cafile", "certfile", "keyfile", "plugin_opt_config_file", "persistence_location"):
        path = conf[key][0]
        target = next((t for t in mounts if under(path, t)), None)
        assert target is not None, f"{key} {path} is in no volume of the broker"
        name, read_only = mounts[target]
        assert init_mounts[target] == (name, False), f"broker-init writes {path} into the same volume"
        if key in ("plugin_opt_config_file", "persistence_location"):
            assert not read_only, f"the broker writes {path}"
    init = services()["broker-init"]["command"][0]
    assert f"mosquitto_ctrl dynsec init {conf['plugin_opt_config_file'][0]} {ADMIN_USER} " in init
    # ioc-init's volume holds the CA's key: the broker never mounts it.
    assert "broker-auth" not in {name for name, _ in mounts.values()}
    assert ("broker-auth", True) in init_mounts.values()


def test_roles_confine_devices_and_grant_the_services() -> None:
    """The roles broker-accounts creates (registry/broker_accounts.py), against the topics in use."""
    own = device_acls("dev-1")
    topic = device_topic("ca_mau", Kind.SALINITY, "dev-1", "telemetry")
    assert topic.split("/")[4] == "dev-1"
    assert {(a["acltype"], a["topic"], a["allow"]) for a in own} == {
        ("publishClientSend", "ioc/v1/+/+/dev-1/#", True),
        ("publishClientSend", f"{DLQ_PREFIX}/#", False),
    }, "a device publishes under its own id only, never a dead letter; it subscribes to nothing"
    granted = {role: {(a["acltype"], a["topic"]) for a in acls if a["allow"]} for role, acls in ROLES.items()}
    assert granted["ioc-ingest"] == {
        ("subscribePattern", SUBSCRIPTION),
        ("subscribePattern", f"$share/+/{SUBSCRIPTION}"),  # ingest workers sharing the stream
        ("subscribePattern", "$SYS/broker/publish/messages/dropped"),
        ("publishClientSend", f"{DLQ_PREFIX}/#"),
    }
    assert granted["ioc-operator"] == {("subscribePattern", SUBSCRIPTION)}, "people watch read-only"
    assert granted["ioc-health"] == {("subscribePattern", "$SYS/broker/uptime")}
    assert set(SERVICE_USERS) == set(ROLES)


def test_the_healthcheck_logs_in_over_tls_with_its_own_account() -> None:
    health = services()["mosquitto"]["healthcheck"]["test"]
    assert health[0] == "CMD-SHELL"
    cmd = health[1]
    conf = conf_values(MOSQUITTO_CONF_PATH.read_text(encoding="utf-8"))
    assert f"-p {TLS_PORT}" in cmd
    host = re.search(r"-h (\S+)", cmd)
    assert host is not None
    assert host[1] in BROKER_HOST_NAMES, "a name the certificate carries"
    assert f"--cafile {conf['cafile'][0]}" in cmd
    assert "-u ioc-health -i ioc-health" in cmd
    assert "'$$SYS/broker/uptime'" in cmd
    pw_file = re.search(r"cat (\S+)\)", cmd)
    assert pw_file is not None
    assert under(pw_file[1], "/mosquitto/secrets")
    assert Path(pw_file[1]).name in services()["broker-init"]["command"][0], "broker-init copies it there"


def test_ingest_client_id_is_its_user_name() -> None:
    """The account's client id is bound to its user name (and the TLS listener uses the user name as
    client id): ingest's logs and metrics must name the session the broker keeps."""
    env = environment(services()["ingest"])
    assert env["IOC_MQTT_CLIENT_ID"] == env["IOC_MQTT_USERNAME"] == "ioc-ingest"


def test_documented_passwords_are_the_simulators_passwords() -> None:
    from simulators.publisher import device_password

    secret = " 0123456789abcdef0123 \n"
    for device in _tiny_fleet().devices:
        assert device_password(secret.encode().strip(), device.id) == _documented_password(secret, device.id)


# --- the init jobs, run here ----------------------------------------------------------------------


def test_ioc_init_makes_the_ca_the_brokers_certificate_and_the_registry(tmp_path: Path) -> None:
    _write_fleet(tmp_path, _tiny_fleet())
    done = run_init_job("ioc-init", tmp_path)
    assert done.returncode == 0, done.stderr
    auth = volume(tmp_path, "broker-auth")
    tls = auth / "tls"
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tls / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == BROKER_HOST_NAMES
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    for secret in (tls / "ca.key", tls / "server.key", auth / "health.pw", auth / "operator.pw"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    registry = DeviceRegistry(registry_url(tmp_path))
    try:
        assert {r.device.id for r in registry.list()} == {d.id for d in _tiny_fleet().devices}
        first = _tiny_fleet().devices[0].id
        registry.set_state(first, "suspended")  # an operator's change through the API
    finally:
        registry.close()
    kept = {p: p.read_bytes() for p in (tls / "ca.crt", tls / "server.crt", auth / "health.pw", auth / "operator.pw")}

    again = run_init_job("ioc-init", tmp_path)  # the next `docker compose up`
    assert again.returncode == 0, again.stderr
    assert {p: p.read_bytes() for p in kept} == kept, "the CA, the certificate and the passwords are kept"
    registry = DeviceRegistry(registry_url(tmp_path))
    try:
        assert registry.get(first).device.state == "suspended", "the fleet file is not imported again"
    finally:
        registry.close()


@pytest.mark.integration
def test_broker_init_copies_the_brokers_files_and_makes_the_admin_account(tmp_path: Path) -> None:
    _skip_without_mosquitto()
    _write_fleet(tmp_path, _tiny_fleet())
    assert run_init_job("ioc-init", tmp_path).returncode == 0
    done = run_init_job("broker-init", tmp_path)
    assert done.returncode == 0, done.stderr
    secrets_dir, data = volume(tmp_path, "mosquitto-secrets"), volume(tmp_path, "mosquitto-data")
    tls = volume(tmp_path, "broker-auth") / "tls"
    assert (secrets_dir / "server.key").read_bytes() == (tls / "server.key").read_bytes()
    assert stat.S_IMODE((secrets_dir / "server.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((secrets_dir / "health.pw").stat().st_mode) == 0o600
    assert (volume(tmp_path, "ca") / "ca.crt").read_bytes() == (tls / "ca.crt").read_bytes()
    assert sorted(p.name for p in volume(tmp_path, "ca").iterdir()) == ["ca.crt"], "the clients get no key"
    state = data / "dynamic-security.json"
    made = state.read_bytes()
    assert [c["username"] for c in json.loads(made)["clients"]] == [ADMIN_USER]
    assert run_init_job("broker-init", tmp_path).returncode == 0
    assert state.read_bytes() == made, "the plugin's state (every account) survives the next start"


def test_broker_init_refuses_a_short_admin_password(tmp_path: Path) -> None:
    done = run_init_job("broker-init", tmp_path, {**ENV_VALUES, "IOC_BROKER_ADMIN_PASSWORD": "short"})
    assert done.returncode != 0
    assert "IOC_BROKER_ADMIN_PASSWORD is too short" in done.stderr
    assert not (volume(tmp_path, "mosquitto-data") / "dynamic-security.json").exists()


@pytest.mark.parametrize(
    ("env", "device_id", "message"),
    [
        ({"IOC_MQTT_PASSWORD": "a\nb"}, None, "IOC_MQTT_PASSWORD must be one non-empty line"),
        ({}, "ioc-health", "collide with the broker's service accounts"),
        ({}, ADMIN_USER, "collide with the broker's service accounts"),
    ],
)
def test_broker_accounts_refuses_bad_input_before_it_touches_the_broker(
    tmp_path: Path, env: dict[str, str], device_id: str | None, message: str
) -> None:
    fleet = _tiny_fleet()
    if device_id is not None:
        fleet = Fleet(devices=(*fleet.devices, fleet.devices[0].model_copy(update={"id": device_id})))
    _write_fleet(tmp_path, fleet)
    assert run_init_job("ioc-init", tmp_path).returncode == 0
    done = run_init_job("broker-accounts", tmp_path, {**ENV_VALUES, **env}, admin_port=free_port())
    assert done.returncode != 0
    assert message in done.stderr
    assert "cannot reach the broker" not in done.stderr


# --- database, image ------------------------------------------------------------------------------


def test_influxdb_init_script_maps_dbrp_and_creates_the_grafana_user() -> None:
    svc = services()["influxdb"]
    assert dict(bind_mounts(svc))["./deploy/influxdb/init"] == "/docker-entrypoint-initdb.d"
    scripts = sorted(INFLUX_INIT_DIR.glob("*.sh"))
    assert scripts, "no init script"
    for script in scripts:
        assert os.access(script, os.X_OK), f"{script.name} must be executable (run-parts skips it)"
        assert script.read_text().startswith("#!/bin/bash\n")
    text = "\n".join(s.read_text() for s in scripts)
    assert "influx v1 dbrp create" in text
    assert "--db ioc" in text
    assert "--default" in text
    assert "influx v1 auth create" in text
    assert "--read-bucket" in text
    env = environment(svc)
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for name in re.findall(r"\$\{(GRAFANA_[A-Z_]+)", text):
        assert name in env, f"the init script reads {name}"
        assert name in environment(services()["grafana"]), f"Grafana's data source needs {name}"


def test_dockerfile_runs_ioc_as_an_unprivileged_user() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert froms
    assert all(f.startswith("python:3.11-slim") for f in froms)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["ioc"]' in lines
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git"} <= set(ignored)


# --- the broker configuration, for real -----------------------------------------------------------


@dataclass
class ComposeBroker:
    """The compose broker running here, provisioned by the three init jobs."""

    server: ServerProcess
    """``port``: the admin listener (loopback, plaintext); ``tls_port``: the TLS listener (8883 in compose)."""
    passwords: dict[str, str]
    """Every account's password: the fleet's devices (derived from :data:`DEVICE_SECRET`) and :data:`SERVICE_USERS`."""
    ca_file: Path
    """The CA certificate clients trust (the ``ca`` volume)."""
    root: Path

    @property
    def tls_port(self) -> int:
        assert self.server.tls_port is not None
        return self.server.tls_port

    @property
    def admin_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.server.port}"

    def admin(self) -> BrokerAccounts:
        """The plugin's admin API (a context manager)."""
        return BrokerAccounts(self.admin_url, ADMIN_USER, ENV_VALUES["IOC_BROKER_ADMIN_PASSWORD"])

    def stop(self) -> None:
        self.server.stop()


def start_compose_broker(tmp_path: Path, *, fleet: Fleet | None = None, conf: str | None = None) -> ComposeBroker:
    """The compose broker as ``docker compose up`` makes it, on free local ports.

    Runs ioc-init and broker-init (their compose commands), starts Mosquitto with the compose
    ``mosquitto.conf`` (or ``conf``), with Debian's plugin and every file in the temp folders
    standing for the volumes, then runs broker-accounts against it. Skips the test when Mosquitto,
    ``mosquitto_ctrl`` or the plugin are not installed.
    """
    binary = _skip_without_mosquitto()
    fleet = fleet or _tiny_fleet()
    _write_fleet(tmp_path, fleet)
    for job in ("ioc-init", "broker-init"):
        done = run_init_job(job, tmp_path)
        assert done.returncode == 0, f"{job}: {done.stderr}"
    admin_port, tls_port = free_port(), free_port()
    run_dir = tmp_path / "mosquitto-run"
    run_dir.mkdir()
    conf_path = run_dir / "mosquitto.conf"
    conf_path.write_text(
        local_broker_conf(
            conf if conf is not None else MOSQUITTO_CONF_PATH.read_text(),
            ports={TLS_PORT: tls_port, admin_listener()[0]: admin_port},
            paths=container_paths("mosquitto", tmp_path),
        )
    )
    server = ServerProcess("mosquitto", [binary, "-c", str(conf_path)], admin_port, run_dir, tls_port=tls_port)
    server.start()
    try:
        done = run_init_job("broker-accounts", tmp_path, admin_port=admin_port)
        assert done.returncode == 0, f"broker-accounts: {done.stderr}"
    except BaseException:
        server.stop()
        raise
    auth = volume(tmp_path, "broker-auth")
    passwords = {d.id: _documented_password(DEVICE_SECRET, d.id) for d in fleet.devices}
    passwords["ioc-ingest"] = ENV_VALUES["IOC_MQTT_PASSWORD"]
    for user in ("health", "operator"):
        passwords[f"ioc-{user}"] = (auth / f"{user}.pw").read_text().strip()
    return ComposeBroker(server, passwords, volume(tmp_path, "ca") / "ca.crt", tmp_path)


@pytest.fixture
def compose_broker(tmp_path: Path) -> Iterator[ComposeBroker]:
    """The compose broker configuration, running and provisioned."""
    broker = start_compose_broker(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


class _Client:
    """A small synchronous MQTT v5 client over paho and TLS, for the checks below."""

    def __init__(self, broker: ComposeBroker, user: str, password: str, *, client_id: str | None = None) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.messages: list[tuple[str, bytes]] = []
        self.acks: dict[int, int] = {}
        self.suback: list[int] = []
        self._ack = threading.Condition()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.connect_rc: Any = None
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or user, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.tls_set(ca_certs=str(broker.ca_file))
        self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", broker.tls_port)
        self.client.loop_start()
        assert self._connected.wait(5), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connect_rc = rc
        self._connected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._ack:
            self.acks[mid] = int(rc.value)
            self._ack.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, rcs: Any, _p: Any) -> None:
        self.suback = [int(rc.value) for rc in rcs]
        self._subscribed.set()

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1; the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self._ack:
            assert self._ack.wait_for(lambda: info.mid in self.acks, 5), "no PUBACK"
            return self.acks[info.mid]

    def subscribe(self, topic: str) -> list[int]:
        """Subscribe at QoS 1; the SUBACK reason codes."""
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(5)
        return self.suback

    def wait_for(self, topic: str, timeout: float = 5) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(t == topic for t, _ in self.messages):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


NOT_AUTHORIZED = 0x87


@pytest.mark.integration
def test_compose_broker_config_starts_and_enforces_the_roles(compose_broker: ComposeBroker) -> None:
    passwords = compose_broker.passwords
    devices = [d for d in passwords if d not in SERVICE_USERS]
    me, other = devices[0], devices[1]
    health = _Client(compose_broker, "ioc-health", passwords["ioc-health"])
    ingest = _Client(compose_broker, "ioc-ingest", passwords["ioc-ingest"])
    device = _Client(compose_broker, me, passwords[me])
    operator = _Client(compose_broker, "ioc-operator", passwords["ioc-operator"])
    try:
        assert not health.connect_rc.is_failure
        assert not device.connect_rc.is_failure
        assert health.subscribe("$SYS/broker/uptime") == [1]
        assert health.wait_for("$SYS/broker/uptime", timeout=15), "the healthcheck's subscription gets nothing"

        assert ingest.subscribe(SUBSCRIPTION) == [1]
        assert ingest.subscribe("$SYS/broker/publish/messages/dropped") == [1]
        assert operator.subscribe(SUBSCRIPTION) == [1]
        own = device_topic("ca_mau", Kind.SALINITY, me, "telemetry")
        spoofed = device_topic("ca_mau", Kind.SALINITY, other, "telemetry")
        fake_dlq = f"{DLQ_PREFIX}/x/{me}/telemetry"
        assert device.publish(spoofed, b"{}") == NOT_AUTHORIZED
        assert device.publish(fake_dlq, b"{}") == NOT_AUTHORIZED
        assert device.publish(own, b"{}") == 0
        assert ingest.publish(f"{DLQ_PREFIX}/bad_json", b"{}") == 0
        assert ingest.wait_for(own)
        assert ingest.wait_for(f"{DLQ_PREFIX}/bad_json")
        assert {t for t, _ in ingest.messages if not t.startswith("$SYS/")} == {own, f"{DLQ_PREFIX}/bad_json"}
        assert ingest.wait_for("$SYS/broker/publish/messages/dropped", timeout=15), "ingest watches the drop counter"
        assert operator.wait_for(f"{DLQ_PREFIX}/bad_json"), "people can watch the dead letters"
        assert operator.publish(f"{DLQ_PREFIX}/bad_json", b"{}") == NOT_AUTHORIZED, "read only"
        assert operator.subscribe("$SYS/#") == [NOT_AUTHORIZED]

        # A device may not read the fleet: the plugin refuses its subscription to '#' outright.
        snoop = _Client(compose_broker, other, passwords[other])
        try:
            assert snoop.subscribe("#") == [NOT_AUTHORIZED]
            assert snoop.subscribe(SUBSCRIPTION) == [NOT_AUTHORIZED]
            assert device.publish(own, b'{"again": 1}') == 0
            assert ingest.wait_for(own)
            assert not snoop.wait_for(own, timeout=1.0)
            assert snoop.messages == []
        finally:
            snoop.close()
    finally:
        for client in (health, ingest, device, operator):
            client.close()


@pytest.mark.integration
def test_compose_broker_refuses_anonymous_wrong_passwords_and_plaintext(compose_broker: ComposeBroker) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    passwords = compose_broker.passwords
    device = next(d for d in passwords if d not in SERVICE_USERS)

    def connack(user: str | None, password: str | None, *, tls: bool = True) -> Any:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=user or "anon-t", protocol=MQTTProtocolVersion.MQTTv5
        )
        if tls:
            client.tls_set(ca_certs=str(compose_broker.ca_file))
        if user:
            client.username_pw_set(user, password)
        result: list[Any] = []
        client.on_connect = lambda _c, _u, _f, rc, _p: result.append(rc)
        try:
            client.connect("127.0.0.1", compose_broker.tls_port)
            deadline = time.monotonic() + 3
            while not result and time.monotonic() < deadline:
                client.loop(timeout=0.1)
        except OSError:
            pass
        client.disconnect()
        return result[0] if result else None

    for user, password in [(None, None), (device, "wrong"), (device, passwords["ioc-ingest"])]:
        rc = connack(user, password)
        assert rc is not None, (user, "no CONNACK")
        assert rc.is_failure, (user, rc)
    assert not connack(device, passwords[device]).is_failure
    assert connack(device, passwords[device], tls=False) is None, "no plaintext MQTT on the TLS port"


@pytest.mark.integration
def test_the_brokers_certificate_is_valid_for_the_names_compose_uses(compose_broker: ComposeBroker) -> None:
    context = ssl.create_default_context(cafile=str(compose_broker.ca_file))
    port = compose_broker.tls_port
    for name in sorted(BROKER_HOST_NAMES):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname=name) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(sock, server_hostname="broker.example")


@pytest.mark.integration
def test_only_the_admin_account_may_use_the_plugins_api(compose_broker: ComposeBroker) -> None:
    device = next(d for d in compose_broker.passwords if d not in SERVICE_USERS)
    for user in (*SERVICE_USERS, device):
        client = _Client(compose_broker, user, compose_broker.passwords[user])
        try:
            assert client.subscribe("$CONTROL/dynamic-security/v1/response") == [NOT_AUTHORIZED], user
            assert client.publish("$CONTROL/dynamic-security/v1", b'{"commands": []}') == NOT_AUTHORIZED, user
        finally:
            client.close()
        # BrokerAccounts sends a client id of its own (user-xxxx): a bound account is refused at once.
        api = BrokerAccounts(compose_broker.admin_url, user, compose_broker.passwords[user])
        with pytest.raises(BrokerAccountError, match="refused the admin login: Not authorized"), api:
            pass
    with compose_broker.admin() as accounts:
        clients = accounts.clients()
    assert set(clients) == {*compose_broker.passwords, ADMIN_USER}
    assert not any(c.disabled for c in clients.values())


@pytest.mark.integration
def test_broker_accounts_with_a_wrong_admin_password_stops_at_once(compose_broker: ComposeBroker) -> None:
    env = {**ENV_VALUES, "IOC_BROKER_ADMIN_PASSWORD": "changed-in-env-only-later"}
    started = time.monotonic()
    done = run_init_job("broker-accounts", compose_broker.root, env, admin_port=compose_broker.server.port)
    assert done.returncode != 0
    assert "refused the admin login" in done.stderr
    assert "applied on the first start only" in done.stderr
    assert time.monotonic() - started < 20, "no waiting for a password that will not change"


@pytest.mark.integration
def test_the_init_jobs_run_again_on_the_next_up(compose_broker: ComposeBroker) -> None:
    """A second ``docker compose up``: nothing is created twice, a new IOC_MQTT_PASSWORD takes effect,
    a device suspended in the registry (through the API) has its account disabled."""
    root = compose_broker.root
    suspended = next(d for d in compose_broker.passwords if d not in SERVICE_USERS)
    registry = DeviceRegistry(registry_url(root))
    try:
        registry.set_state(suspended, "suspended")
    finally:
        registry.close()
    env = {**ENV_VALUES, "IOC_MQTT_PASSWORD": "a-new-ingest-password"}
    for job in INIT_JOBS:
        done = run_init_job(job, root, env, admin_port=compose_broker.server.port)
        assert done.returncode == 0, f"{job}: {done.stderr}"
    devices = len(compose_broker.passwords) - len(SERVICE_USERS)
    assert f"broker accounts: 0 created, {devices} already there, 1 disabled" in done.stdout
    old = _Client(compose_broker, "ioc-ingest", ENV_VALUES["IOC_MQTT_PASSWORD"])
    new = _Client(compose_broker, "ioc-ingest", env["IOC_MQTT_PASSWORD"])
    gone = _Client(compose_broker, suspended, compose_broker.passwords[suspended])
    try:
        assert old.connect_rc.is_failure
        assert not new.connect_rc.is_failure
        assert gone.connect_rc.is_failure
    finally:
        for client in (old, new, gone):
            client.close()
