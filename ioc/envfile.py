"""``.env.example``, generated from the settings classes: ``python -m ioc.envfile > .env.example``.

Lines with a default are active (copying the file to ``.env`` changes nothing); settings without
one, and secrets, stay commented out. ``tests/unit/test_env_example.py`` keeps the file current.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings

from alerts.config import WebhookSettings
from api.config import ApiSettings
from dashboards.cli import GrafanaCheckSettings, GrafanaExportSettings, GrafanaPushSettings
from ingest.config import IngestSettings
from ioc.demo import DemoSettings
from ioc.rules_cli import BacktestSettings
from registry.cli import RegistrySettings
from simulators.config import FleetFileSettings, SimulateSettings

SETTINGS: tuple[tuple[str, type[BaseSettings]], ...] = (
    ("ioc ingest", IngestSettings),
    ("alerts: the store and the webhook sender (ioc ingest, ioc subscriptions)", WebhookSettings),
    ("ioc simulate", SimulateSettings),
    ("ioc simulate --write-fleet", FleetFileSettings),
    ("ioc demo", DemoSettings),
    ("ioc api", ApiSettings),
    ("ioc devices", RegistrySettings),
    ("ioc rules", BacktestSettings),
    ("ioc grafana export", GrafanaExportSettings),
    ("ioc grafana push", GrafanaPushSettings),
    ("ioc grafana check", GrafanaCheckSettings),
)
"""Every settings class of the ``ioc`` commands (``tests/unit/test_cli_env_vars.py`` checks that every
option's variable is one of their fields)."""


def _value(default: object) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, list | tuple):
        return ",".join(str(v) for v in default)
    return str(default)


def render_env_example() -> str:
    out = [
        "# Every setting of the `ioc` commands as an environment variable (copy to .env to use).",
        "# Flags override these. Generated: python -m ioc.envfile > .env.example",
        "",
    ]
    seen: set[str] = set()
    for title, cls in SETTINGS:
        out.append(f"# --- {title} ---")
        prefix = cls.model_config.get("env_prefix", "")
        for name, info in cls.model_fields.items():
            key = prefix + name.upper()
            if key in seen:
                out.append(f"# {key}: as above")
                continue
            seen.add(key)
            out.append(f"# {info.description}")
            secret = any(word in name for word in ("password", "token", "secret", "key"))
            if info.default is None or secret or info.default == []:
                out.append(f"# {key}=")
            else:
                out.append(f"{key}={_value(info.default)}")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render_env_example(), end="")
