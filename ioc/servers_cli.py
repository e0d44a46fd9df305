"""``ioc servers start|stop|status``: the local stack of ``ioc demo`` (Mosquitto, InfluxDB) over ``var/``.

After a timed demo the servers stop with it; ``ioc servers start`` brings them back over the same
data, so that ``ioc api``, ``ioc devices``, ``ioc rules backtest`` and ``influx`` work on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ioc.errors import Commands, load_settings
from ioc.local_stack import LocalStack, StackSettings, describe, env_hints

app = typer.Typer(
    cls=Commands, no_args_is_help=True,
    help="The demo's local servers (Mosquitto, InfluxDB 1.x) over the var folder: start, stop, status.",
)  # fmt: skip
Opt = typer.Option
VarDir = Annotated[Path | None, Opt(help="data folder of the servers (the demo's) [IOC_DEMO_VAR_DIR]")]


def _settings(**options: Any) -> StackSettings:
    return load_settings(StackSettings, flags={name: "--" + name.replace("_", "-") for name in options}, **options)


@app.command()
def start(
    var_dir: VarDir = None,
    mqtt_port: Annotated[
        int | None, Opt(help="broker port, loopback, the first time (then: the last one) [IOC_DEMO_MQTT_PORT]")
    ] = None,
    mqtts_port: Annotated[int | None, Opt(help="broker port over TLS, likewise [IOC_DEMO_MQTTS_PORT]")] = None,
    influx_port: Annotated[int | None, Opt(help="InfluxDB port, likewise [IOC_DEMO_INFLUX_PORT]")] = None,
) -> None:
    """Start Mosquitto and InfluxDB over the var folder (those already running stay as they are)."""
    settings = _settings(var_dir=var_dir, mqtt_port=mqtt_port, mqtts_port=mqtts_port, influx_port=influx_port)
    local = LocalStack(settings.var_dir)
    stack = local.start(settings)
    started = {s.name for s in stack.started}
    stack.started.clear()  # they outlive this command: `ioc servers stop` stops them
    states = local.status()
    for line in describe(local.var, states):
        name = line.split()[0]
        typer.echo(line + ("" if name in started else "  (already running)"))
    for hint in env_hints(states):
        typer.echo(hint)


@app.command()
def stop(var_dir: VarDir = None) -> None:
    """Stop the servers of the var folder (their data stays)."""
    local = LocalStack(_settings(var_dir=var_dir).var_dir)
    stopped = local.stop()
    typer.echo(f"stopped {', '.join(stopped)}" if stopped else f"no server of {local.var} was running")


@app.command()
def status(var_dir: VarDir = None) -> None:
    """Say what runs over the var folder; exit code 0 when both servers run, 3 when not."""
    local = LocalStack(_settings(var_dir=var_dir).var_dir)
    states = local.status()
    for line in describe(local.var, states):
        typer.echo(line)
    for hint in env_hints(states):
        typer.echo(hint)
    if not all(s.running for s in states.values()):
        raise typer.Exit(3)
