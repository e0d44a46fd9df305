"""``ioc rules``: validate a rule pack, replay stored readings through it (backtest)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from contract.clock import now_ms as clock_ms
from ioc.errors import Commands
from rules.pack import DEFAULT_PACK, load_pack, parse_duration_ms

app = typer.Typer(cls=Commands, no_args_is_help=True, help="Rule packs: validate, backtest.")
DELTA = timezone(timedelta(hours=7))
_AGO = re.compile(r"^-(\d+(?:\.\d+)?(?:ms|s|m|h|d))$")


def parse_time_ms(text: str, *, now_ms: int | None = None, flag: str | None = None) -> int:
    """``now``, ``-72h`` (ago), epoch milliseconds, or ISO 8601 (no zone: Delta local time, UTC+7)."""
    now = now_ms if now_ms is not None else clock_ms()
    text = text.strip()
    if text == "now":
        return now
    if match := _AGO.match(text):
        return now - parse_duration_ms(match.group(1))
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: use now, -72h, epoch ms or 2026-03-20T06:00", param_hint=flag) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=DELTA)
    return int(when.timestamp() * 1000)


Pack = Annotated[Path, typer.Option(help="rule pack (YAML)")]


@app.command()
def validate(pack: Annotated[Path, typer.Argument(help="rule pack (YAML)")] = DEFAULT_PACK) -> None:
    """Load a pack and report its rules, or exactly what is wrong with it."""
    loaded = load_pack(pack)
    enabled = [r for r in loaded.rules if r.enabled]
    typer.echo(f"{pack}: {len(loaded.rules)} rules ({len(enabled)} enabled) — valid")


@app.command()
def backtest(
    pack: Pack = DEFAULT_PACK,
    from_: Annotated[str, typer.Option("--from", help="start: now, -72h, epoch ms or ISO 8601")] = "-72h",
    to: Annotated[str, typer.Option(help="end (exclusive)")] = "now",
    fleet: Annotated[Path, typer.Option(help="fleet file")] = Path("var/fleet.yaml"),
    influx_url: Annotated[str, typer.Option(help="InfluxDB URL (InfluxQL /query)")] = "http://127.0.0.1:8086",
    influx_db: Annotated[str, typer.Option(help="database")] = "ioc",
    details: Annotated[bool, typer.Option(help="also print every transition as JSON lines")] = False,
) -> None:
    """Replay stored readings through a pack: what would have fired, how often, per rule and device."""
    import httpx

    from contract.fleet import load_fleet
    from ingest.backtest import backtest as run
    from ioc.preflight import influx_problem, require

    loaded, registry = load_pack(pack), load_fleet(fleet)
    start, end = parse_time_ms(from_, flag="--from"), parse_time_ms(to, flag="--to")
    if end <= start:
        raise typer.BadParameter("--to must be after --from")
    with httpx.Client(base_url=influx_url) as client:
        require(influx_problem(client, url_flag="--influx-url", db=influx_db, db_flag="--influx-db"))
    report = run(loaded, registry, url=influx_url, db=influx_db, start_ms=start, end_ms=end)
    if details:
        for t in report.transitions:
            typer.echo(msgspec.json.encode({
                "rule": t.rule_id, "device": t.device_id, "state": t.state.value, "ts": t.ts_ms,
                "value": None if t.value != t.value else t.value, "severity": t.severity.label, "vi": t.message_vi,
            }).decode())  # fmt: skip
    typer.echo(msgspec.json.encode({"from": start, "to": end, **report.summary()}).decode())
