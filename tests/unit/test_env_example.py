"""`.env.example` lists exactly the settings of every command, with their defaults, and loads."""

from __future__ import annotations

import re
from pathlib import Path

from ioc.envfile import SETTINGS, render_env_example

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
LINE = re.compile(r"^(?:# )?(IOC_[A-Z0-9_]+)=(.*)$")


def test_env_example_is_current() -> None:
    assert ENV_EXAMPLE.read_text() == render_env_example(), "regenerate: python -m ioc.envfile > .env.example"


def test_env_example_lists_every_field_once() -> None:
    listed = [m.group(1) for line in ENV_EXAMPLE.read_text().splitlines() if (m := LINE.match(line))]
    fields = {cls.model_config.get("env_prefix", "") + name.upper() for _, cls in SETTINGS for name in cls.model_fields}
    assert sorted(listed) == sorted(fields)


def test_env_example_has_no_secret_values() -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        if (m := LINE.match(line)) and any(word in m.group(1) for word in ("PASSWORD", "TOKEN", "SECRET")):
            assert m.group(2) == "", m.group(1)


def test_env_example_loads_as_valid_settings() -> None:
    """Copying the example to .env gives working settings (empty lines stay commented out)."""
    for _, cls in SETTINGS:
        cls(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
