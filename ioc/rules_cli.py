"""``ioc rules``: validate a rule pack, replay stored readings through it (backtest).

Every option has its ``IOC_*`` variable, read by :class:`BacktestSettings` (a flag overrides it);
the pack is ``IOC_RULES_PACK``, as for ``ioc ingest`` and ``ioc api``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.clock import now_ms as clock_ms
from contract.settings import DEFAULT_FLEET, InfluxUrl, Text
from contract.topics import readable_file
from ioc.errors import Commands, blame, load_settings
from rules.pack import DEFAULT_PACK, load_pack, parse_duration_ms

app = typer.Typer(cls=Commands, no_args_is_help=True, help="Rule packs: validate, backtest.")
DELTA = timezone(timedelta(hours=7))
_AGO = re.compile(r"^-(\d+(?:\.\d+)?(?:ms|s|m|h|d))$")
TIME_HELP = "now, -72h (ago), epoch ms or ISO 8601 (no zone: Delta local time, UTC+7)"


def time_ms(text: str, *, now_ms: int | None = None) -> int:
    """``now``, ``-72h`` (ago), epoch milliseconds, or ISO 8601 (no zone: Delta local time, UTC+7).

    Raises:
        ValueError: ``text`` is none of these.
    """
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
        raise ValueError(f"{text!r}: use now, -72h, epoch ms or 2026-03-20T06:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=DELTA)
    return int(when.timestamp() * 1000)


class RulesSettings(BaseSettings):
    """The rule pack (``ioc rules validate`` without a file, ``ioc rules backtest``)."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore")

    rules_pack: Path | None = Field(None, description="the rule pack, YAML (default: the built-in Mekong pack)")

    @field_validator("rules_pack")
    @classmethod
    def _rules_pack(cls, v: Path | None) -> Path | None:
        return None if v is None else readable_file(v)

    @property
    def pack(self) -> Path:
        return self.rules_pack or DEFAULT_PACK


class BacktestSettings(RulesSettings, InfluxUrl):
    """Settings of ``ioc rules backtest``: the readings (InfluxDB, v1 /query), the fleet, the pack, the range."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore")

    influx_db: Text = Field("ioc", min_length=1, description="database (v1; on 2.x the DBRP-mapped name)")
    fleet: Path = Field(DEFAULT_FLEET, description="the fleet file (YAML)")
    backtest_from: str = Field("-72h", description=f"start of a backtest: {TIME_HELP}")
    backtest_to: str = Field("now", description="end of a backtest (exclusive), as backtest_from")

    @field_validator("backtest_from", "backtest_to")
    @classmethod
    def _time(cls, v: str) -> str:
        time_ms(v)
        return v


_BACKTEST_FLAGS = {
    "rules_pack": "--pack", "backtest_from": "--from", "backtest_to": "--to", "fleet": "--fleet",
    "influx_url": "--influx-url", "influx_db": "--influx-db",
}  # fmt: skip


@app.command()
def validate(
    pack: Annotated[
        Path | None, typer.Argument(help="rule pack (YAML); default: IOC_RULES_PACK, else the built-in Mekong pack")
    ] = None,
) -> None:
    """Load a pack and report its rules, or exactly what is wrong with it."""
    if pack is None:
        pack = load_settings(RulesSettings, flags={"rules_pack": "PACK"}).pack
    loaded = load_pack(pack)
    enabled = [r for r in loaded.rules if r.enabled]
    typer.echo(f"{pack}: {len(loaded.rules)} rules ({len(enabled)} enabled) — valid")


@app.command()
def backtest(
    pack: Annotated[Path | None, typer.Option(help="rule pack (YAML) [IOC_RULES_PACK]")] = None,
    from_: Annotated[str | None, typer.Option("--from", help=f"start: {TIME_HELP} [IOC_BACKTEST_FROM]")] = None,
    to: Annotated[str | None, typer.Option(help="end (exclusive) [IOC_BACKTEST_TO]")] = None,
    fleet: Annotated[Path | None, typer.Option(help="fleet file [IOC_FLEET]")] = None,
    influx_url: Annotated[str | None, typer.Option(help="InfluxDB URL (InfluxQL /query) [IOC_INFLUX_URL]")] = None,
    influx_db: Annotated[str | None, typer.Option(help="database [IOC_INFLUX_DB]")] = None,
    details: Annotated[bool, typer.Option(help="also print every transition as JSON lines")] = False,
) -> None:
    """Replay stored readings through a pack: what would have fired, how often, per rule and device."""
    import httpx

    from contract.fleet import FleetError, load_fleet
    from ingest.backtest import backtest as run
    from ioc.preflight import influx_problem, require

    s = load_settings(
        BacktestSettings, flags=_BACKTEST_FLAGS, rules_pack=pack, backtest_from=from_, backtest_to=to, fleet=fleet,
        influx_url=influx_url, influx_db=influx_db,
    )  # fmt: skip
    loaded = load_pack(s.pack)
    with blame("--fleet (IOC_FLEET)", FleetError):
        registry = load_fleet(s.fleet)
    now = clock_ms()
    start, end = time_ms(s.backtest_from, now_ms=now), time_ms(s.backtest_to, now_ms=now)
    if end <= start:
        raise typer.BadParameter("--to must be after --from (IOC_BACKTEST_TO, IOC_BACKTEST_FROM)")
    with httpx.Client(base_url=s.influx_url) as client:
        problem = influx_problem(
            client, url_flag="--influx-url (IOC_INFLUX_URL)", db=s.influx_db, db_flag="--influx-db (IOC_INFLUX_DB)"
        )
        require(problem)
    report = run(loaded, registry, url=s.influx_url, db=s.influx_db, start_ms=start, end_ms=end)
    if details:
        for t in report.transitions:
            typer.echo(msgspec.json.encode({
                "rule": t.rule_id, "device": t.device_id, "state": t.state.value, "ts": t.ts_ms,
                "value": None if t.value != t.value else t.value, "severity": t.severity.label, "vi": t.message_vi,
            }).decode())  # fmt: skip
    typer.echo(msgspec.json.encode({"from": start, "to": end, **report.summary()}).decode())
