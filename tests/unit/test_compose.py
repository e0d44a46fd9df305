"""docker-compose.yml and the files it mounts: pinned, healthy, secret-free, in step with the code.

Docker is not needed: the compose file is checked as data. The broker configuration is also run
for real when the ``mosquitto`` binary is installed (marked ``integration``).

To add a service configured through ``IOC_*`` variables or ``ioc`` flags, add its settings class
to :data:`SETTINGS_BY_SERVICE`.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import os
import pwd
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from contract.fields import Kind
from contract.fleet import Device, Fleet, dump_fleet
from contract.topics import DLQ_PREFIX, SUBSCRIPTION, device_topic
from ingest.config import IngestSettings
from ioc.servers import ServerProcess, find_binary, free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_PATH = ROOT / "docker-compose.yml"
MOSQUITTO_CONF_PATH = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
ACL_PATH = ROOT / "deploy" / "mosquitto" / "acl"
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
}
"""Further settings classes a service reads from the same environment (the alert store, webhooks)."""


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
SERVICE_USERS = ("ioc-ingest", "ioc-health", "ioc-operator")
"""Broker accounts fleet-init writes besides one per device."""
_MQTT_DEFAULT_QUEUE = 1000


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


def mount_targets(service: dict[str, Any]) -> list[str]:
    targets = []
    for vol in service.get("volumes") or []:
        targets.append(vol["target"] if isinstance(vol, dict) else vol.split(":")[1])
    return targets


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


def acl_sections(text: str) -> dict[str | None, list[str]]:
    """ACL lines by user (``None``: before the first ``user`` line, i.e. anonymous + patterns)."""
    sections: dict[str | None, list[str]] = {None: []}
    current: str | None = None
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if not line or line.startswith("#"):
            continue
        if line.startswith("user "):
            current = line.split(" ", 1)[1]
            sections.setdefault(current, [])
        else:
            sections[current].append(line)
    return sections


def local_broker_conf(conf: str, *, port: int, password_file: Path, acl_file: Path, data_dir: Path) -> str:
    """The compose ``mosquitto.conf`` for a broker on 127.0.0.1:``port`` with local files."""
    replacements = {
        "listener": f"listener {port} 127.0.0.1",
        "password_file": f"password_file {password_file}",
        "acl_file": f"acl_file {acl_file}",
        "persistence_location": f"persistence_location {data_dir}/",
    }
    out, seen = [], set()
    for line in conf.splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() and not line.lstrip().startswith("#") else ""
        if key in replacements:
            line = replacements[key]
            seen.add(key)
        out.append(line)
    assert seen == set(replacements), f"mosquitto.conf lacks {set(replacements) - seen}"
    if os.geteuid() == 0:  # do not drop to the `mosquitto` user, which cannot read tmp files
        out.append(f"user {pwd.getpwuid(0).pw_name}")
    return "\n".join(out) + "\n"


def fleet_init_script() -> str:
    """The inline Python of the fleet-init service."""
    command = services()["fleet-init"]["command"]
    text = command[0] if isinstance(command, list) else command
    m = re.search(r"<<'PY'\n(.*?)\nPY\b", text, flags=re.S)
    assert m, "fleet-init has no <<'PY' ... PY block"
    return m.group(1)


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


def _run_fleet_init(tmp_path: Path, secret: str, ingest_pw: str = "ingest-pw") -> subprocess.CompletedProcess[str]:
    auth, data = tmp_path / "broker-auth", tmp_path / "data"
    auth.mkdir(exist_ok=True)
    if not (data / "fleet.yaml").exists():
        dump_fleet(_tiny_fleet(), data / "fleet.yaml")
    script = fleet_init_script().replace('"/broker-auth"', repr(str(auth)))
    script = script.replace('"/data/fleet.yaml"', repr(str(data / "fleet.yaml")))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "MQTT_DEVICE_SECRET": secret,
        "MQTT_INGEST_PASSWORD": ingest_pw,
    }
    return subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- images and services --------------------------------------------------------------------------


def test_compose_parses_with_the_expected_services() -> None:
    assert {
        "fleet-init",
        "broker-auth",
        "mosquitto",
        "influxdb",
        "grafana",
        "ingest",
        "simulators",
    } <= set(services())


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
    assert svcs["broker-auth"]["image"] == svcs["mosquitto"]["image"]
    assert re.fullmatch(r"influxdb:2\.\d+\.\d+", svcs["influxdb"]["image"])
    assert re.fullmatch(r"grafana/grafana-oss:\d+\.\d+\.\d+", svcs["grafana"]["image"])
    for name in SETTINGS_BY_SERVICE:
        assert svcs[name]["build"]["context"] == "."
        assert svcs[name]["image"] == svcs["ingest"]["image"]


def test_long_running_services_have_healthchecks() -> None:
    one_shot = one_shot_services()
    assert {"fleet-init", "broker-auth"} <= one_shot
    for name, svc in services().items():
        if name in one_shot:
            assert svc.get("restart") == "no", f'{name} is an init job: restart: "no"'
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} has its healthcheck disabled"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check.get("interval"), name
        assert check.get("retries"), name
        assert svc.get("restart") == "unless-stopped", name


def test_dependencies_wait_for_health_or_completion() -> None:
    one_shot = one_shot_services()
    for name, svc in services().items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: use depends_on with conditions"
        for dep, spec in deps.items():
            expected = "service_completed_successfully" if dep in one_shot else "service_healthy"
            assert spec.get("condition") == expected, f"{name} -> {dep}"
    assert "fleet-init" in services()["ingest"]["depends_on"]
    assert {"mosquitto", "influxdb"} <= set(services()["ingest"]["depends_on"])


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


def test_ingest_settings_from_compose_validate_and_point_at_the_services() -> None:
    settings = _settings_from_service("ingest")
    assert isinstance(settings, IngestSettings)
    assert settings.mqtt_host_port == ("mosquitto", 1883)
    assert settings.influx_url == "http://influxdb:8086"
    assert settings.influx_api == "v2"
    influx_env = environment(services()["influxdb"])
    assert settings.influx_org == influx_env["DOCKER_INFLUXDB_INIT_ORG"] == "mekong"
    assert settings.influx_bucket == influx_env["DOCKER_INFLUXDB_INIT_BUCKET"] == "ioc"
    assert settings.metrics_host == "0.0.0.0"
    health = " ".join(services()["ingest"]["healthcheck"]["test"])
    assert f":{settings.metrics_port}/" in health
    user = settings.mqtt_username
    assert user
    assert f"topic read {SUBSCRIPTION}" in acl_sections(ACL_PATH.read_text())[user]


def test_simulator_settings_from_compose_validate(tmp_path: Path) -> None:
    secrets = services()["simulators"]["secrets"]
    assert command_flags(services()["simulators"])["device_secret_file"] in {f"/run/secrets/{s}" for s in secrets}
    secret_file = tmp_path / "device_secret"  # the settings check that the file is there
    secret_file.write_text("x" * 32)
    settings = _settings_from_service("simulators", device_secret_file=secret_file)
    assert settings.mqtt_url == "mqtt://mosquitto:1883"  # type: ignore[attr-defined]


def test_one_fleet_file_for_everyone() -> None:
    svcs = services()
    ingest_fleet = environment(svcs["ingest"])["IOC_FLEET"]
    assert command_flags(svcs["simulators"])["fleet"] == ingest_fleet
    assert f"--write-fleet {ingest_fleet} --devices 200 --seed 1" in svcs["fleet-init"]["command"][0]
    assert f'Path("{ingest_fleet}")' in fleet_init_script()
    fleet_dir = str(Path(ingest_fleet).parent)
    for name in ("fleet-init", "ingest", "simulators"):
        assert fleet_dir in mount_targets(svcs[name]), name


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
    conf = conf_values(MOSQUITTO_CONF_PATH.read_text(encoding="utf-8"))
    max_payload = IngestSettings.model_fields["max_payload_bytes"].default
    assert conf["listener"] == ["1883"]
    assert conf["allow_anonymous"] == ["false"]
    assert conf["use_username_as_clientid"] == ["true"], "one account cannot take over another's session"
    assert conf["persistence"] == ["true"]
    assert int(conf["max_queued_messages"][0]) >= 1_000_000 > _MQTT_DEFAULT_QUEUE
    assert conf["max_queued_bytes"] == ["0"]
    assert int(conf["max_inflight_messages"][0]) > _MQTT_DEFAULT_INFLIGHT
    packet, message = int(conf["max_packet_size"][0]), int(conf["message_size_limit"][0])
    assert max_payload < message < packet, "ingest must see (and dead-letter) over-size payloads first"
    assert packet - message >= 1024, "room for the topic and properties"
    assert conf["sys_interval"] == ["10"]
    assert conf["password_file"]
    assert conf["acl_file"]


def test_mosquitto_files_are_where_compose_mounts_them() -> None:
    svc = services()["mosquitto"]
    conf = conf_values(MOSQUITTO_CONF_PATH.read_text(encoding="utf-8"))
    mounts = dict(bind_mounts(svc))
    assert mounts["./deploy/mosquitto/mosquitto.conf"] == "/mosquitto/config/mosquitto.conf"
    assert mounts["./deploy/mosquitto/acl"] == conf["acl_file"][0]
    targets = mount_targets(svc)
    for path in (conf["password_file"][0], conf["persistence_location"][0]):
        assert any(path.startswith(t.rstrip("/") + "/") for t in targets), path
    auth_dir = str(Path(conf["password_file"][0]).parent)
    assert auth_dir in mount_targets(services()["broker-auth"])


def test_acl_confines_devices_to_their_own_topics() -> None:
    sections = acl_sections(ACL_PATH.read_text(encoding="utf-8"))
    global_rules = sections[None]
    assert "pattern write ioc/v1/+/+/%u/#" in global_rules
    assert f"pattern deny {DLQ_PREFIX}/#" in global_rules
    assert all(r.startswith("pattern ") for r in global_rules), "no rules for anonymous clients"
    assert not [r for r in global_rules if r.split()[1] in ("read", "readwrite")], "devices read nothing"
    topic = device_topic("ca_mau", Kind.SALINITY, "dev-1", "telemetry")
    assert topic.split("/")[4] == "dev-1"  # the level %u stands for


def test_ingest_client_id_is_its_user_name() -> None:
    """The broker replaces the client id with the user name (use_username_as_clientid): ingest's
    logs and metrics must name the session the broker keeps."""
    env = environment(services()["ingest"])
    assert env["IOC_MQTT_CLIENT_ID"] == env["IOC_MQTT_USERNAME"] == "ioc-ingest"


def test_acl_grants_ingest_and_the_healthcheck() -> None:
    sections = acl_sections(ACL_PATH.read_text(encoding="utf-8"))
    ingest_user = environment(services()["ingest"])["IOC_MQTT_USERNAME"]
    assert sorted(sections[ingest_user]) == sorted(
        [
            f"topic read {SUBSCRIPTION}",
            f"topic write {DLQ_PREFIX}/#",
            "topic read $SYS/broker/publish/messages/dropped",
        ]
    )
    health = " ".join(services()["mosquitto"]["healthcheck"]["test"])
    assert "-u ioc-health" in health
    assert "'$$SYS/broker/uptime'" in health
    assert sections["ioc-health"] == ["topic read $SYS/broker/uptime"]
    assert sections["ioc-operator"] == [f"topic read {SUBSCRIPTION}"], "people watch read-only"


def test_fleet_init_writes_the_documented_passwords(tmp_path: Path) -> None:
    secret = "s3cret-" + "x" * 20 + "\n"
    done = _run_fleet_init(tmp_path, secret)
    assert done.returncode == 0, done.stderr
    auth = tmp_path / "broker-auth"
    plain = auth / "passwd.plain"
    lines = dict(line.split(":", 1) for line in plain.read_text().splitlines())
    health = (auth / "health.pw").read_text().strip()
    operator = (auth / "operator.pw").read_text().strip()
    expected = {"ioc-ingest": "ingest-pw", "ioc-health": health, "ioc-operator": operator}
    expected |= {d.id: _documented_password(secret, d.id) for d in _tiny_fleet().devices}
    assert lines == expected
    assert stat.S_IMODE(plain.stat().st_mode) == 0o600
    assert stat.S_IMODE((auth / "health.pw").stat().st_mode) == 0o600
    assert stat.S_IMODE((auth / "operator.pw").stat().st_mode) == 0o600

    again = _run_fleet_init(tmp_path, secret)
    assert again.returncode == 0, again.stderr
    assert (auth / "health.pw").read_text().strip() == health, "the running broker knows the old one"
    assert (auth / "operator.pw").read_text().strip() == operator


def test_fleet_init_passwords_are_the_simulators_passwords() -> None:
    from simulators.publisher import device_password

    secret = " 0123456789abcdef0123 \n"
    for device in _tiny_fleet().devices:
        assert device_password(secret.encode().strip(), device.id) == _documented_password(secret, device.id)


@pytest.mark.parametrize(
    ("secret", "ingest_pw", "message"),
    [
        ("short", "pw", "too short"),
        ("x" * 32, "", "non-empty"),
        ("x" * 32, "a\nb", "one non-empty line"),
    ],
)
def test_fleet_init_refuses_weak_input(tmp_path: Path, secret: str, ingest_pw: str, message: str) -> None:
    done = _run_fleet_init(tmp_path, secret, ingest_pw)
    assert done.returncode != 0
    assert message in done.stderr
    assert not (tmp_path / "broker-auth" / "passwd.plain").exists()


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


DEVICE_SECRET = "y" * 32
"""The fleet secret :func:`start_compose_broker` derives device passwords from."""


def start_compose_broker(
    tmp_path: Path, *, fleet: Fleet | None = None, conf: str | None = None
) -> tuple[ServerProcess, dict[str, str]]:
    """Mosquitto with the compose ``mosquitto.conf`` (or ``conf``), ACL and fleet-init's users.

    Returns the running broker and every user's plaintext password (devices of ``fleet``,
    and :data:`SERVICE_USERS`). Skips the test when Mosquitto is not installed.
    """
    binary, passwd_tool = find_binary("mosquitto"), find_binary("mosquitto_passwd")
    if binary is None or passwd_tool is None:
        pytest.skip("mosquitto and mosquitto_passwd are not installed")
    if fleet is not None:
        (tmp_path / "data").mkdir(parents=True, exist_ok=True)
        dump_fleet(fleet, tmp_path / "data" / "fleet.yaml")
    done = _run_fleet_init(tmp_path, DEVICE_SECRET)
    assert done.returncode == 0, done.stderr
    auth = tmp_path / "broker-auth"
    passwords = dict(line.split(":", 1) for line in (auth / "passwd.plain").read_text().splitlines())
    subprocess.run([passwd_tool, "-U", str(auth / "passwd.plain")], check=True, timeout=60)
    port = free_port()
    data = tmp_path / "mosquitto-data"
    data.mkdir()
    conf_path = data / "mosquitto.conf"
    conf_path.write_text(
        local_broker_conf(
            conf if conf is not None else MOSQUITTO_CONF_PATH.read_text(),
            port=port,
            password_file=auth / "passwd.plain",
            acl_file=ACL_PATH,
            data_dir=data,
        )
    )
    return ServerProcess("mosquitto", [binary, "-c", str(conf_path)], port, data).start(), passwords


@pytest.fixture
def compose_broker(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """The compose broker configuration, running: (port, passwords)."""
    broker, passwords = start_compose_broker(tmp_path)
    try:
        yield broker.port, passwords
    finally:
        broker.stop()


class _Client:
    """A small synchronous MQTT v5 client over paho, for the checks below."""

    def __init__(self, port: int, user: str, password: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.messages: list[tuple[str, bytes]] = []
        self.acks: dict[int, int] = {}
        self._ack = threading.Condition()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.connect_rc: Any = None
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{user}-t", protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._connected.wait(5), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connect_rc = rc
        self._connected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._ack:
            self.acks[mid] = int(rc.value)
            self._ack.notify_all()

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1; the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self._ack:
            assert self._ack.wait_for(lambda: info.mid in self.acks, 5), "no PUBACK"
            return self.acks[info.mid]

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(5)

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


@pytest.mark.integration
def test_compose_broker_config_starts_and_enforces_the_acl(
    compose_broker: tuple[int, dict[str, str]],
) -> None:
    port, passwords = compose_broker
    devices = [d for d in passwords if d not in SERVICE_USERS]
    me, other = devices[0], devices[1]
    health = _Client(port, "ioc-health", passwords["ioc-health"])
    ingest = _Client(port, "ioc-ingest", passwords["ioc-ingest"])
    device = _Client(port, me, passwords[me])
    operator = _Client(port, "ioc-operator", passwords["ioc-operator"])
    try:
        assert not health.connect_rc.is_failure
        assert not device.connect_rc.is_failure
        health.subscribe("$SYS/broker/uptime")
        assert health.wait_for("$SYS/broker/uptime"), "the healthcheck's subscription gets nothing"

        ingest.subscribe(SUBSCRIPTION)
        operator.subscribe(SUBSCRIPTION)
        own = device_topic("ca_mau", Kind.SALINITY, me, "telemetry")
        spoofed = device_topic("ca_mau", Kind.SALINITY, other, "telemetry")
        fake_dlq = f"{DLQ_PREFIX}/x/{me}/telemetry"
        not_authorized = 0x87
        assert device.publish(spoofed, b"{}") == not_authorized
        assert device.publish(fake_dlq, b"{}") == not_authorized
        assert device.publish(own, b"{}") == 0
        assert ingest.publish(f"{DLQ_PREFIX}/bad_json", b"{}") == 0
        assert ingest.wait_for(own)
        assert ingest.wait_for(f"{DLQ_PREFIX}/bad_json")
        assert {t for t, _ in ingest.messages} == {own, f"{DLQ_PREFIX}/bad_json"}
        assert operator.wait_for(f"{DLQ_PREFIX}/bad_json"), "people can watch the dead letters"
        assert operator.publish(f"{DLQ_PREFIX}/bad_json", b"{}") == not_authorized, "read only"

        # A device may not read the fleet: its subscription to '#' gets nothing.
        snoop = _Client(port, other, passwords[other])
        try:
            snoop.subscribe("#")
            assert device.publish(own, b'{"again": 1}') == 0
            assert ingest.wait_for(own)
            assert not snoop.wait_for(own, timeout=1.5)
            assert snoop.messages == []
        finally:
            snoop.close()
    finally:
        for client in (health, ingest, device, operator):
            client.close()


@pytest.mark.integration
def test_compose_broker_refuses_anonymous_and_wrong_passwords(
    compose_broker: tuple[int, dict[str, str]],
) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    port, passwords = compose_broker
    device = next(d for d in passwords if d not in SERVICE_USERS)
    for user, password in [(None, None), (device, "wrong"), (device, passwords["ioc-ingest"])]:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="anon-t", protocol=MQTTProtocolVersion.MQTTv5)
        if user:
            client.username_pw_set(user, password)
        result: list[Any] = []
        client.on_connect = lambda _c, _u, _f, rc, _p, result=result: result.append(rc)
        client.connect("127.0.0.1", port)
        deadline = time.monotonic() + 5
        while not result and time.monotonic() < deadline:
            client.loop(timeout=0.1)
        client.disconnect()
        assert result, (user, "no CONNACK")
        assert result[0].is_failure, (user, result)
