"""`.env.example` lists exactly the settings fields of every command, and the defaults agree."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from ingest.config import IngestSettings
from ioc.demo import DemoSettings
from simulators.config import SimulateSettings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
SETTINGS: tuple[type[BaseSettings], ...] = (IngestSettings, SimulateSettings, DemoSettings)
LINE = re.compile(r"^(?:# )?(IOC_[A-Z0-9_]+)=(.*)$")


def example_entries() -> dict[str, str]:
    entries = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = LINE.match(line)
        if match:
            assert match.group(1) not in entries, f"{match.group(1)} listed twice"
            entries[match.group(1)] = match.group(2)
    return entries


def settings_fields() -> dict[str, object]:
    fields: dict[str, object] = {}
    for cls in SETTINGS:
        prefix = cls.model_config["env_prefix"]
        for name, info in cls.model_fields.items():
            fields.setdefault(prefix + name.upper(), info.default)
    return fields


def test_env_example_lists_exactly_the_settings() -> None:
    assert set(example_entries()) == set(settings_fields())


def test_env_example_values_are_the_defaults() -> None:
    fields = settings_fields()
    for key, value in example_entries().items():
        default = fields[key]
        expected = "" if default is None else str(default)
        if "PASSWORD" in key or "TOKEN" in key:
            assert value == "", f"{key}: no secret in the example"
        else:
            assert value == expected, f"{key}: example says {value!r}, default is {expected!r}"


def test_env_example_loads_as_valid_settings(tmp_path: Path) -> None:
    """Copying the example to .env must give working settings (empty lines stay commented out)."""
    for cls in SETTINGS:
        cls(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
