"""Render every dashboard to JSON (grafana/dashboards/) and check the committed files are current."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards import cameras, overview, salinity, traps, water
from dashboards.geography import GAZETTEER_FILE, gazetteer
from dashboards.panels import render

ROOT: Final = Path(__file__).resolve().parents[1]
DASHBOARDS_DIR: Final = ROOT / "grafana" / "dashboards"
GAZETTEER_DIR: Final = ROOT / "grafana" / "gazetteer"

BUILDERS: Final[tuple[Callable[[], dash.Dashboard], ...]] = (
    overview.dashboard,
    salinity.dashboard,
    water.dashboard,
    traps.dashboard,
    cameras.dashboard,
)


def dashboards() -> list[dict[str, Any]]:
    """Every dashboard as Grafana's JSON model, overview first."""
    return [render(build()) for build in BUILDERS]


def to_text(model: dict[str, Any]) -> str:
    """Stable, readable JSON (UTF-8, Vietnamese as is), one trailing newline."""
    return json.dumps(model, ensure_ascii=False, indent=2) + "\n"


def files() -> dict[str, str]:
    """File name → content of every generated file of the dashboards folder."""
    return {f"{d['uid']}.json": to_text(d) for d in dashboards()}


def write(out: Path = DASHBOARDS_DIR, gazetteer_dir: Path = GAZETTEER_DIR) -> list[Path]:
    """Write the dashboards to ``out`` (and the gazetteer beside them); remove stale ``ioc-*.json``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    wanted = files()
    for stale in out.glob("ioc-*.json"):
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    gazetteer_dir.mkdir(parents=True, exist_ok=True)
    path = gazetteer_dir / GAZETTEER_FILE
    path.write_text(gazetteer(), encoding="utf-8")
    written.append(path)
    return written


def stale(out: Path = DASHBOARDS_DIR, gazetteer_dir: Path = GAZETTEER_DIR) -> list[str]:
    """Files that differ from what ``ioc grafana export`` would write (missing, changed or extra)."""
    wanted = {out / n: t for n, t in files().items()}
    wanted[gazetteer_dir / GAZETTEER_FILE] = gazetteer()
    problems = [str(p) for p, t in wanted.items() if not p.is_file() or p.read_text(encoding="utf-8") != t]
    problems += [str(p) for p in sorted(out.glob("ioc-*.json")) if p not in wanted]
    return problems
