"""``ioc devices …``: provision devices in the registry without restarting anything.

The registry is ``--registry-url`` or ``IOC_REGISTRY_URL`` (default ``sqlite:///var/registry.db``);
a running ingest and API follow every change within a few seconds. A mistake (a bad file, row,
field or URL) is one line on stderr and exit code 2. The settings (:class:`RegistrySettings`: the
registry, the broker admin, the fleet secret, the certificates' folders) are ``IOC_*`` variables;
the options that describe one device, or filter a listing, are not settings and have none.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field, ValidationError
from pydantic_settings import SettingsConfigDict

from contract.fleet import DEVICE_STATES, Device, DeviceState
from contract.settings import DeviceSecretFile, Folder, RegistryUrl
from ioc.errors import Commands, UserError, load_settings
from registry.broker_accounts import BrokerAccountError, BrokerAccounts, BrokerAdmin, Credentials
from registry.errors import RegistryError
from registry.files import FileFormat, parse, read_devices, render_csv, render_yaml, write_devices
from registry.store import DeviceRecord, DeviceRegistry

DEFAULT_URL = "sqlite:///var/registry.db"

app = typer.Typer(
    cls=Commands,
    no_args_is_help=True,
    add_completion=False,
    help="The device registry: import, export, add, show, list, suspend, decommission.",
)

Opt = typer.Option
Url = Annotated[str | None, Opt("--registry-url", help=f"registry database [IOC_REGISTRY_URL] (default {DEFAULT_URL})")]
DeviceIdArg = Annotated[str, typer.Argument(help="device id")]
AsJson = Annotated[bool, Opt("--json", help="print JSON")]
BrokerUrl = Annotated[
    str | None,
    Opt("--broker-admin-url", help="create and disable device accounts on this broker [IOC_BROKER_ADMIN_URL]"),
]


class RegistrySettings(DeviceSecretFile, BrokerAdmin):
    """Where the registry is, the broker whose accounts follow it, and the devices' secrets (``ioc devices``)."""

    # hide_input_in_errors: a refused registry URL may have a password in it
    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    registry_url: RegistryUrl = Field(DEFAULT_URL, description="the device registry database")
    tls_ca_dir: Folder = Field(Path("var/tls"), description="the local CA's folder (ca.crt, ca.key): issue-cert")
    device_cert_dir: Folder = Field(
        Path("var/tls/devices"), description="where ioc devices issue-cert writes ID.crt and ID.key"
    )


_FLAGS = {
    "registry_url": "--registry-url", "broker_admin_url": "--broker-admin-url",
    "device_secret_file": "--device-secret-file", "tls_ca_dir": "--ca-dir", "device_cert_dir": "--out",
}  # fmt: skip


def _settings(url: str | None, broker_url: str | None = None, **options: Any) -> RegistrySettings:
    return load_settings(RegistrySettings, flags=_FLAGS, registry_url=url, broker_admin_url=broker_url, **options)


@contextmanager
def _broker(settings: RegistrySettings) -> Iterator[BrokerAccounts | None]:
    try:
        with settings.session() as accounts:
            yield accounts
    except BrokerAccountError as exc:
        raise UserError(f"{exc} (--broker-admin-url, IOC_BROKER_ADMIN_URL, IOC_BROKER_ADMIN_PASSWORD)") from None


@contextmanager
def _registry(url: str | None) -> Iterator[DeviceRegistry]:
    settings = _settings(url)
    try:
        registry = DeviceRegistry(settings.registry_url)
    except RegistryError as exc:
        raise UserError(f"{exc} (--registry-url, IOC_REGISTRY_URL)") from None
    with closing(registry):
        yield registry


def _record_json(r: DeviceRecord) -> dict[str, Any]:
    return {**r.device.model_dump(mode="json"), "created_ms": r.created_ms, "updated_ms": r.updated_ms}


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="fleet file, YAML or CSV ('-' reads YAML from stdin)")],
    registry_url: Url = None,
    format_: Annotated[FileFormat | None, Opt("--format", help="yaml or csv (default: from the file name)")] = None,
) -> None:
    """Add or change every device of a fleet file: all of them, or none (each bad row is named)."""
    if str(file) == "-":
        devices = parse(sys.stdin.read(), format_ or "yaml", "stdin")
    elif format_ is not None:
        devices = parse(file.read_text(encoding="utf-8-sig"), format_, str(file))
    else:
        devices = read_devices(file)
    with _registry(registry_url) as registry:
        result = registry.import_devices(devices, source=str(file))
    typer.echo(
        f"{file}: {result.added} added, {result.changed} changed, {result.unchanged} unchanged "
        f"(registry revision {result.revision})"
    )


@app.command()
def export(
    file: Annotated[Path | None, typer.Argument(help="write here (.yaml or .csv); default: YAML to stdout")] = None,
    registry_url: Url = None,
    format_: Annotated[FileFormat, Opt("--format", help="yaml or csv, for stdout")] = "yaml",
    state: Annotated[list[str] | None, Opt(help="only devices in this state (repeatable)")] = None,
) -> None:
    """Write the registry as a fleet file (the format ``import`` reads)."""
    states = _states(state)
    with _registry(registry_url) as registry:
        devices = [r.device for r in registry.list(states=states)]
    if file is None:
        typer.echo(render_yaml(devices) if format_ == "yaml" else render_csv(devices), nl=False)
        return
    try:
        write_devices(devices, file)
    except OSError as exc:
        raise UserError(f"{file}: cannot write ({exc.strerror})") from None
    typer.echo(f"{file}: {len(devices)} devices")


def _states(given: list[str] | None) -> list[DeviceState] | None:
    if not given:
        return None
    bad = [s for s in given if s not in DEVICE_STATES]
    if bad:
        raise typer.BadParameter(f"{bad}: use {', '.join(DEVICE_STATES)}", param_hint="--state")
    return [s for s in DEVICE_STATES if s in given]


@app.command()
def add(
    device_id: Annotated[str, Opt("--id", help="device id")],
    kind: Annotated[str, Opt(help="water_quality, salinity, light_trap or camera")],
    province: Annotated[str, Opt(help="province slug, e.g. ben_tre")],
    district: Annotated[str, Opt(help="district slug, e.g. ba_tri")],
    site: Annotated[str, Opt(help="river, canal, pond, field, sluice, kitchen, road, market or school")],
    lat: Annotated[float, Opt(help="latitude")],
    lon: Annotated[float, Opt(help="longitude")],
    crop: Annotated[str, Opt(help="crop or species")] = "none",
    model: Annotated[str, Opt(help="hardware and payload format")] = "ioc_v1",
    dev_eui: Annotated[str | None, Opt(help="LoRaWAN DevEUI")] = None,
    tts_device_id: Annotated[str | None, Opt(help="The Things Stack device id")] = None,
    sparkplug: Annotated[str | None, Opt(help="Sparkplug B group/edge[/device]")] = None,
    thingsboard: Annotated[str | None, Opt(help="ThingsBoard device name")] = None,
    senml: Annotated[str | None, Opt(help="SenML base name (bn)")] = None,
    registry_url: Url = None,
    broker_admin_url: BrokerUrl = None,
) -> None:
    """Register one new device (active at once: a running ingest stores its readings within seconds).

    With a broker admin configured, the device also gets its broker account; its password is
    printed once, here, and never again.
    """
    ids = {
        "dev_eui": dev_eui, "tts_device_id": tts_device_id, "sparkplug": sparkplug, "thingsboard": thingsboard,
        "senml": senml,
    }  # fmt: skip
    raw = {
        "id": device_id, "kind": kind, "province": province, "district": district, "site": site, "crop": crop,
        "lat": lat, "lon": lon, "model": model, "external_ids": {k: v for k, v in ids.items() if v},
    }  # fmt: skip
    try:
        device = Device.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc'][:1]).replace('_', '-')}: {e['msg']}" for e in exc.errors()
        )
        raise UserError(problems) from None
    settings = _settings(registry_url, broker_admin_url)
    with _broker(settings) as accounts, _registry(registry_url) as registry:
        record = registry.add(device)
        out = _record_json(record)
        if accounts is not None:
            cred = accounts.create_devices([device.id])[0]
            out["mqtt_username"], out["mqtt_password"] = cred.username, cred.password
    typer.echo(json.dumps(out, ensure_ascii=False))


@app.command()
def show(device_id: DeviceIdArg, registry_url: Url = None) -> None:
    """One device as JSON."""
    with _registry(registry_url) as registry:
        record = registry.get(device_id)
    typer.echo(json.dumps(_record_json(record), ensure_ascii=False, indent=2))


@app.command("list")
def list_(
    registry_url: Url = None,
    province: Annotated[str | None, Opt(help="province slug")] = None,
    kind: Annotated[str | None, Opt(help="device kind")] = None,
    state: Annotated[list[str] | None, Opt(help="device state (repeatable)")] = None,
    as_json: AsJson = False,
) -> None:
    """Devices by id: id, kind, province, district, site, state (or JSON lines)."""
    with _registry(registry_url) as registry:
        records = registry.list(province=province, kind=kind, states=_states(state))
    for r in records:
        d = r.device
        if as_json:
            typer.echo(json.dumps(_record_json(r), ensure_ascii=False))
        else:
            typer.echo(f"{d.id}\t{d.kind.value}\t{d.province}\t{d.district}\t{d.site}\t{d.state}")


def _set_state(device_id: str, state: DeviceState, registry_url: str | None, broker_url: str | None) -> None:
    settings = _settings(registry_url, broker_url)
    with _broker(settings) as accounts, _registry(registry_url) as registry:
        record = registry.set_state(device_id, state)
        if accounts is not None:
            accounts.set_enabled([device_id], state == "active")
    kicked = " (broker account disabled)" if accounts is not None and state != "active" else ""
    typer.echo(f"{device_id}: {record.device.state}{kicked} (registry revision {record.revision})")


@app.command()
def suspend(device_id: DeviceIdArg, registry_url: Url = None, broker_admin_url: BrokerUrl = None) -> None:
    """Stop storing a device's readings (dead-lettered ``unknown_device``) until it is activated.

    With a broker admin configured, its account is disabled too and the broker disconnects it.
    """
    _set_state(device_id, "suspended", registry_url, broker_admin_url)


@app.command()
def activate(device_id: DeviceIdArg, registry_url: Url = None, broker_admin_url: BrokerUrl = None) -> None:
    """Store a suspended device's readings again (and enable its broker account)."""
    _set_state(device_id, "active", registry_url, broker_admin_url)


@app.command()
def decommission(device_id: DeviceIdArg, registry_url: Url = None, broker_admin_url: BrokerUrl = None) -> None:
    """Retire a device for good: its readings are dead-lettered, its id is never reused, its account disabled."""
    _set_state(device_id, "decommissioned", registry_url, broker_admin_url)


@app.command("sync-broker")
def sync_broker(
    registry_url: Url = None,
    broker_admin_url: BrokerUrl = None,
    credentials_out: Annotated[
        Path | None, Opt(help="write id,username,password of every account created here (CSV, mode 600)")
    ] = None,
    device_secret_file: Annotated[
        Path | None,
        Opt(
            "--device-secret-file",
            help="derive the password of each account created here from this fleet secret, as `ioc simulate "
            "--device-secret-file` does (hex HMAC-SHA256(secret, device id)), instead of generating one "
            "[IOC_DEVICE_SECRET_FILE]",
        ),
    ] = None,
) -> None:
    """Bring the broker's device accounts in line with the registry: create missing ones (their
    passwords go to --credentials-out, once, or are derived from --device-secret-file), enable
    active devices, disable the others."""
    settings = _settings(registry_url, broker_admin_url, device_secret_file=device_secret_file)
    secret_file = settings.device_secret_file
    secret = _device_secret(secret_file) if secret_file is not None else None
    if settings.broker_admin_url is None:
        raise UserError("no broker to sync: give --broker-admin-url (IOC_BROKER_ADMIN_URL)")
    with _broker(settings) as accounts, _registry(registry_url) as registry:
        assert accounts is not None
        devices = [r.device for r in registry.list()]
        known = accounts.clients()
        missing = [d.id for d in devices if d.id not in known]
        if missing and credentials_out is None and secret is None:
            raise UserError(
                f"{len(missing)} devices have no broker account: give --credentials-out FILE for their passwords "
                "(or --device-secret-file to derive them)"
            )
        created = accounts.create_devices(missing, _derived_passwords(secret, missing) if secret else None)
        known = {**known, **accounts.clients([c.username for c in created])}
        accounts.set_enabled([d.id for d in devices if d.active], True, known=known)
        accounts.set_enabled([d.id for d in devices if not d.active], False, known=known)
    if created and credentials_out is not None:
        _write_credentials(credentials_out, created)
    typer.echo(f"broker accounts: {len(created)} created, {len(devices) - len(created)} already there, "
               f"{sum(not d.active for d in devices)} disabled")  # fmt: skip


MIN_DEVICE_SECRET_CHARS = 16


def _device_secret(path: Path) -> bytes:
    """The fleet secret in ``path``, surrounding whitespace removed (as the simulators read it)."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise UserError(
            f"--device-secret-file {path}: cannot read it ({exc.strerror}) [IOC_DEVICE_SECRET_FILE]"
        ) from None
    if len(secret) < MIN_DEVICE_SECRET_CHARS:
        raise UserError(
            f"--device-secret-file {path}: the secret is too short: use at least {MIN_DEVICE_SECRET_CHARS} "
            "characters (openssl rand -hex 32) [IOC_DEVICE_SECRET_FILE]"
        )
    return secret


def _derived_passwords(secret: bytes, device_ids: Sequence[str]) -> dict[str, str]:
    """Each device's password as the simulators compute it (``simulators.publisher.device_password``)."""
    from simulators.publisher import device_password

    return {d: device_password(secret, d) for d in device_ids}


def _write_credentials(path: Path, creds: Sequence[Credentials]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
            f.write("device_id,username,password\n")
            f.writelines(f"{c.device_id},{c.username},{c.password}\n" for c in creds)
    except OSError as exc:
        raise UserError(f"--credentials-out {path}: cannot write ({exc.strerror})") from None


@app.command("issue-cert")
def issue_cert(
    device_id: DeviceIdArg,
    ca_dir: Annotated[
        Path | None, Opt("--ca-dir", help="the local CA's folder (ca.crt, ca.key) [IOC_TLS_CA_DIR]")
    ] = None,
    out: Annotated[Path | None, Opt("--out", help="write ID.crt and ID.key here [IOC_DEVICE_CERT_DIR]")] = None,
    new_ca: Annotated[bool, Opt("--new-ca", help="make a CA in --ca-dir if there is none")] = False,
    registry_url: Url = None,
) -> None:
    """A client certificate for a registered device (CN = its id): with the broker's mutual TLS
    listener it logs in with it, no password (the broker takes the CN as its user name)."""
    from ioc.tls import issue_device_cert

    settings = _settings(registry_url, tls_ca_dir=ca_dir, device_cert_dir=out)
    with _registry(registry_url) as registry:
        device = registry.get(device_id)
    if not device.device.active:
        raise UserError(f"device {device_id!r} is {device.device.state}: activate it before issuing a certificate")
    ca, folder = settings.tls_ca_dir, settings.device_cert_dir
    pair = issue_device_cert(device_id, ca_dir=ca, out_dir=folder, new_ca=new_ca)
    typer.echo(f"{device_id}: certificate {pair.cert}, key {pair.key} (CA {ca / 'ca.crt'})")
