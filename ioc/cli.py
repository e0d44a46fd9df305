"""The ``ioc`` command line: ``demo``, ``simulate`` and ``ingest``; the other commands are mounted.

Every option has an ``IOC_*`` environment variable, named in its help as ``[IOC_…]`` and read by
the settings classes (so a flag and its variable can never disagree; the flag wins);
``.env.example`` lists them all. Options that are no settings — ``--verbose``, a mode such as
``--write-fleet``, what one action creates or lists — have none: ``tests/unit/test_cli_env_vars.py``
walks every command and keeps that list. A user's mistake (a bad flag, file or variable, a port
in use, a server not there at start-up) ends as one line on stderr and exit code 2
(:mod:`ioc.errors`); ``ioc ingest`` alone waits for its servers, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from pydantic_settings import BaseSettings

from ioc.errors import Commands, UserError, blame, load_settings

app = typer.Typer(
    cls=Commands, no_args_is_help=True, add_completion=False, help="Mekong IOC: fleet → MQTT → InfluxDB → alerts."
)
log = logging.getLogger(__name__)

S = TypeVar("S", bound=BaseSettings)


def _settings(cls: type[S], **options: Any) -> S:
    """Build settings from the flags given (the rest from IOC_* variables, .env and defaults)."""
    return load_settings(cls, flags={name: "--" + name.replace("_", "-") for name in options}, **options)


def _flags(given: dict[str, Any], *not_settings: str) -> dict[str, Any]:
    """A command's flag values that are settings fields (all but ``verbose`` and ``not_settings``)."""
    return {k: v for k, v in given.items() if k != "verbose" and k not in not_settings}


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("mqtt").setLevel(logging.ERROR)


Opt = typer.Option

MqttUrl = Annotated[str | None, Opt(help="broker URL mqtt://host:port, or mqtts://host:port for TLS [IOC_MQTT_URL]")]
MqttCaFile = Annotated[
    Path | None, Opt(help="mqtts: trust this CA (PEM) for the broker's certificate [IOC_MQTT_CA_FILE]")
]
MqttCertFile = Annotated[Path | None, Opt(help="mqtts: client certificate, mutual TLS [IOC_MQTT_CERT_FILE]")]
MqttKeyFile = Annotated[Path | None, Opt(help="mqtts: the client certificate's key [IOC_MQTT_KEY_FILE]")]
Fleet = Annotated[Path | None, Opt(help="fleet file (device registry, YAML) [IOC_FLEET]")]
RegistryUrl = Annotated[
    str | None, Opt(help="device registry, sqlite:///var/registry.db or postgresql://… [IOC_REGISTRY_URL]")
]
Seed = Annotated[int | None, Opt(help="random seed [IOC_SEED]")]
Verbose = Annotated[bool, Opt("--verbose", "-v", help="debug logging")]


@app.command()
def ingest(
    mqtt_url: MqttUrl = None,
    mqtt_client_id: Annotated[str | None, Opt(help="fixed MQTT client id [IOC_MQTT_CLIENT_ID]")] = None,
    mqtt_username: Annotated[str | None, Opt(help="broker user [IOC_MQTT_USERNAME]")] = None,
    mqtt_password: Annotated[str | None, Opt(help="broker password [IOC_MQTT_PASSWORD]")] = None,
    mqtt_shared_group: Annotated[
        str | None, Opt(help="share the subscription in this group [IOC_MQTT_SHARED_GROUP]")
    ] = None,
    mqtt_fast_path: Annotated[
        str | None, Opt(help="auto, on or off: the MQTT receive fast path [IOC_MQTT_FAST_PATH]")
    ] = None,
    mqtt_ca_file: MqttCaFile = None,
    mqtt_cert_file: MqttCertFile = None,
    mqtt_key_file: MqttKeyFile = None,
    influx_url: Annotated[str | None, Opt(help="InfluxDB URL http(s)://host:port [IOC_INFLUX_URL]")] = None,
    influx_api: Annotated[str | None, Opt(help="v1 or v2 [IOC_INFLUX_API]")] = None,
    influx_db: Annotated[str | None, Opt(help="database, v1 [IOC_INFLUX_DB]")] = None,
    influx_bucket: Annotated[str | None, Opt(help="bucket, v2 [IOC_INFLUX_BUCKET]")] = None,
    influx_org: Annotated[str | None, Opt(help="organisation, v2 [IOC_INFLUX_ORG]")] = None,
    influx_token: Annotated[str | None, Opt(help="API token, v2 [IOC_INFLUX_TOKEN]")] = None,
    influx_ca_file: Annotated[
        Path | None, Opt(help="https: trust this CA (PEM) for InfluxDB's certificate [IOC_INFLUX_CA_FILE]")
    ] = None,
    fleet: Fleet = None,
    registry_url: RegistryUrl = None,
    sources: Annotated[
        Path | None, Opt(help="sources file: other payload formats' topics, device models [IOC_SOURCES]")
    ] = None,
    batch_max_readings: Annotated[int | None, Opt(help="readings per write [IOC_BATCH_MAX_READINGS]")] = None,
    batch_max_age_ms: Annotated[int | None, Opt(help="max wait before a write [IOC_BATCH_MAX_AGE_MS]")] = None,
    metrics_port: Annotated[int | None, Opt(help="Prometheus port, 0 = off [IOC_METRICS_PORT]")] = None,
    rules: Annotated[bool | None, Opt("--rules/--no-rules", help="evaluate the rule pack [IOC_RULES]")] = None,
    rules_pack: Annotated[Path | None, Opt(help="rule pack YAML [IOC_RULES_PACK]")] = None,
    webhooks: Annotated[bool | None, Opt("--webhooks/--no-webhooks", help="send alert webhooks [IOC_WEBHOOKS]")] = None,
    alerts_db: Annotated[str | None, Opt(help="alert store, a SQLite file or postgresql://… [IOC_ALERTS_DB]")] = None,
    verbose: Verbose = False,
) -> None:
    """Subscribe, validate, batch and store readings until SIGTERM/SIGINT, then drain and exit 0."""
    options = _flags(locals(), "alerts_db")
    _without_httpx_cli()
    from alerts.config import WebhookSettings
    from contract.settings import fleet_file
    from ingest.config import IngestSettings
    from ingest.memory import fix_mmap_threshold
    from ingest.runner import build, run_until_signalled, start_up

    fix_mmap_threshold()
    _logging(verbose)
    settings = _settings(IngestSettings, **options)
    if settings.fleet is not None:  # read later, when ingest starts: a file not there is named here, with its flag
        with blame("--fleet (IOC_FLEET)", ValueError):
            fleet_file(settings.fleet)
    webhook_settings = _settings(WebhookSettings, alerts_db=alerts_db)
    with start_up():
        process = build(settings, webhook_settings)
    _warn_unreachable(settings)
    asyncio.run(run_until_signalled(process))


def _without_httpx_cli() -> None:
    """httpx imports its own command line (``httpx._main``) whenever click, rich and Pygments are
    installed (uvicorn and typer bring them): 4 MiB that a long-running ingest keeps and never uses.
    Marked as not importable before httpx is first imported, httpx falls back to its stub ``main``."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "cannot be imported"


def _warn_unreachable(settings: Any) -> None:
    """Ingest waits for a broker or InfluxDB that is not there at start-up; say so once, naming the flag."""
    import httpx

    from ioc.preflight import broker_problem, influx_problem

    s = settings
    auth = (s.influx_username, s.influx_password.get_secret_value() if s.influx_password else "")
    db = s.influx_db if s.influx_api == "v1" else None
    tls = {"ca_file": s.mqtt_ca_file, "cert_file": s.mqtt_cert_file, "key_file": s.mqtt_key_file}
    verify = s.influx_verify()
    with httpx.Client(base_url=s.influx_url, auth=auth if s.influx_username else None, verify=verify) as client:
        problems = (
            broker_problem(s.mqtt_url, flag="--mqtt-url (IOC_MQTT_URL)", **tls),
            influx_problem(
                client,
                url_flag="--influx-url (IOC_INFLUX_URL)",
                db=db,
                db_flag="--influx-db (IOC_INFLUX_DB)",
                ca_flag="--influx-ca-file (IOC_INFLUX_CA_FILE)",
            ),
        )
    for problem in problems:
        if problem is not None:
            log.warning("%s — ingest keeps trying", problem)


@app.command()
def simulate(
    mqtt_url: MqttUrl = None,
    mqtt_ca_file: MqttCaFile = None,
    mqtt_cert_file: Annotated[
        Path | None, Opt(help="mqtts: client certificate; {device_id} in it: one per device [IOC_MQTT_CERT_FILE]")
    ] = None,
    mqtt_key_file: MqttKeyFile = None,
    fleet: Fleet = None,
    format: Annotated[
        str | None,
        Opt(
            "--format",
            help="payload format: ioc_v1, chirpstack_v4, tts_v3, sparkplug_b, senml, thingsboard, influx_lp, "
            "json_map, or mixed; ingest reads the others with --sources deploy/sources.sim.yaml [IOC_FORMAT]",
        ),
    ] = None,
    rate: Annotated[float | None, Opt(help="live messages/s for the fleet [IOC_RATE]")] = None,
    duration: Annotated[float | None, Opt(help="seconds of live publishing [IOC_DURATION]")] = None,
    readings: Annotated[int | None, Opt(help="stop after this many readings [IOC_READINGS]")] = None,
    seed: Seed = None,
    gateway_batch: Annotated[int | None, Opt(help="readings per message [IOC_GATEWAY_BATCH]")] = None,
    backfill_hours: Annotated[float | None, Opt(help="history to publish first [IOC_BACKFILL_HOURS]")] = None,
    backfill_batch: Annotated[int | None, Opt(help="readings per backfill message [IOC_BACKFILL_BATCH]")] = None,
    interval_s: Annotated[float | None, Opt(help="live sampling interval [IOC_INTERVAL_S]")] = None,
    malformed_share: Annotated[float | None, Opt(help="share of malformed messages [IOC_MALFORMED_SHARE]")] = None,
    device_secret_file: Annotated[
        Path | None, Opt(help="fleet secret for device passwords [IOC_DEVICE_SECRET_FILE]")
    ] = None,
    record: Annotated[Path | None, Opt(help="write published readings as JSON lines [IOC_RECORD]")] = None,
    write_fleet: Annotated[Path | None, Opt(help="generate a fleet file here (.yaml or .csv) and exit")] = None,
    devices: Annotated[int | None, Opt(help="devices in a generated fleet (with --write-fleet) [IOC_DEVICES]")] = None,
    write_sources: Annotated[
        Path | None, Opt(help="write the sources file that reads every --format (for ingest --sources) and exit")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Publish a simulated Mekong fleet, or generate a fleet file (--write-fleet) or sources file (--write-sources)."""
    options = _flags(locals(), "write_fleet", "devices", "write_sources")
    from contract.fleet import Fleet as FleetModel
    from ioc.preflight import broker_problem, require
    from registry.errors import RegistryError
    from registry.files import read_devices, write_devices
    from simulators.config import FleetFileSettings, SimulateSettings
    from simulators.fleetgen import generate_fleet
    from simulators.publisher import FleetPublisher

    _logging(verbose)
    if write_fleet is not None:
        wanted = _settings(FleetFileSettings, devices=devices, seed=seed)
        generated = generate_fleet(wanted.devices, wanted.seed)
        with blame("--write-fleet", OSError, RegistryError):
            write_devices(generated.devices, write_fleet)
        typer.echo(f"wrote {len(generated.devices)} devices to {write_fleet}", err=True)
        return
    if write_sources is not None:
        from simulators.formats.sources import write_sources as write_sources_file

        with blame("--write-sources", OSError):
            write_sources_file(write_sources)
        typer.echo(f"wrote the simulated formats' sources file to {write_sources}", err=True)
        return
    settings = _settings(SimulateSettings, **options)
    with blame("--fleet (IOC_FLEET)", RegistryError):
        devices_read = FleetModel(devices=tuple(read_devices(settings.fleet)))
    publisher = FleetPublisher(devices_read, settings)
    if settings.format != "ioc_v1":  # every device has the ids its format names it by: said before connecting
        from simulators.formats import connections

        try:
            connections(publisher.fleet.devices, settings.format)
        except ValueError as exc:
            raise UserError(f"--format {settings.format}: {exc}") from None
    first = publisher.fleet.devices[0].id if publisher.fleet.devices else ""
    cert_file, key_file = settings.client_cert(first) or (None, None)
    tls = {"ca_file": settings.mqtt_ca_file, "cert_file": cert_file, "key_file": key_file}
    require(broker_problem(settings.mqtt_url, flag="--mqtt-url (IOC_MQTT_URL)", **tls))
    try:
        stats = publisher.run()
    except KeyboardInterrupt:
        stats = publisher.stats
    except ConnectionError as exc:  # the broker refused the devices, or went away; a device without its format's id
        if str(exc).startswith("--format"):
            raise UserError(str(exc)) from exc
        raise UserError(f"{exc}: check --mqtt-url (IOC_MQTT_URL) and --device-secret-file") from exc
    typer.echo(msgspec.json.encode(stats.summary()).decode())


@app.command()
def demo(
    duration: Annotated[float | None, Opt(help="stop after this many live seconds [IOC_DEMO_DURATION]")] = None,
    devices: Annotated[int | None, Opt(help="fleet size [IOC_DEMO_DEVICES]")] = None,
    seed: Annotated[int | None, Opt(help="random seed [IOC_DEMO_SEED]")] = None,
    backfill_hours: Annotated[float | None, Opt(help="history first [IOC_DEMO_BACKFILL_HOURS]")] = None,
    rate: Annotated[float | None, Opt(help="live messages/s [IOC_DEMO_RATE]")] = None,
    var_dir: Annotated[Path | None, Opt(help="data folder [IOC_DEMO_VAR_DIR]")] = None,
    api_port: Annotated[
        int | None, Opt(help="loopback port of the API and its alert desk (0: a free one) [IOC_DEMO_API_PORT]")
    ] = None,
    format: Annotated[
        str | None,
        Opt(
            "--format",
            help="the fleet's payload format: mixed (the default: ChirpStack stations, Sparkplug ponds, SenML "
            "traps, the rest native), ioc_v1, or one format as for simulate --format [IOC_DEMO_FORMAT]",
        ),
    ] = None,
    fresh: Annotated[
        bool | None,
        Opt(
            "--fresh/--resume",
            help="delete what an earlier demo kept in the var folder (readings, registry, alerts, keys, "
            "subscriptions, broker accounts) and start anew; by default a demo resumes over it [IOC_DEMO_FRESH]",
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run the whole pipeline locally: Mosquitto, InfluxDB, ingest and a simulated fleet."""
    options = _flags(locals())
    from ioc.demo import DemoSettings, run_demo

    _logging(verbose)
    settings = _settings(DemoSettings, **options)
    summary = run_demo(settings)
    typer.echo(msgspec.json.encode(summary).decode())


OWN_COMMANDS = frozenset({"demo", "simulate", "ingest"})


def _runs_own_command(argv: list[str]) -> bool:
    """``ioc ingest …`` (or ``demo``, ``simulate``) from the shell: the mounted commands' modules are
    not needed, and not importing them takes a third of a second off every start."""
    return len(argv) > 1 and argv[1] in OWN_COMMANDS and Path(argv[0]).name in {"ioc", "__main__.py"}


def _mount_subcommands() -> None:
    if _runs_own_command(sys.argv):
        return
    from alerts.cli import app as subscriptions_app
    from api.cli import app as api_app
    from dashboards.cli import app as grafana_app
    from ioc.rules_cli import app as rules_app
    from ioc.servers_cli import app as servers_app
    from registry.cli import app as devices_app

    app.add_typer(rules_app, name="rules")
    app.add_typer(subscriptions_app)
    app.add_typer(grafana_app, name="grafana")
    app.add_typer(api_app, name="api")
    app.add_typer(devices_app, name="devices")
    app.add_typer(servers_app, name="servers")


_mount_subcommands()
