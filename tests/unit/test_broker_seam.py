"""The MQTT seam: which path ingest takes, and the fast path's refusal of versions it was not written for."""

from __future__ import annotations

import sys

import pytest

from ingest.broker import broker_factory, path_name
from ingest.config import IngestSettings
from ingest.errors import ConfigError
from ingest.mqtt_fastpath import WRITTEN_FOR, FastPathBroker, FastPathUnavailable, check_versions
from ingest.mqtt_public import PublicBroker


def settings(fast_path: str) -> IngestSettings:
    return IngestSettings(_env_file=None, mqtt_fast_path=fast_path)  # type: ignore[call-arg]


def test_the_installed_versions_are_the_ones_the_fast_path_was_written_for() -> None:
    check_versions()  # pyproject.toml admits newer ones; this says when the fast path stops loading


@pytest.mark.parametrize(
    ("installed", "complaint"),
    [
        ({"aiomqtt": "2.6.0", "paho-mqtt": "2.2.0"}, "aiomqtt 2.5.1, found 2.6.0"),
        ({"aiomqtt": "2.5.1", "paho-mqtt": "2.3.0"}, "paho-mqtt 2.1.0 or 2.2.0, found 2.3.0"),
    ],
)
def test_other_versions_refuse_the_fast_path(installed: dict[str, str], complaint: str) -> None:
    with pytest.raises(FastPathUnavailable, match=complaint):
        check_versions(installed)


def test_written_for_names_exact_versions() -> None:
    assert all(v.count(".") == 2 for versions in WRITTEN_FOR.values() for v in versions)


def test_on_and_auto_take_the_fast_path_off_takes_the_public_one() -> None:
    assert broker_factory(settings("on")) is FastPathBroker
    assert broker_factory(settings("auto")) is FastPathBroker
    assert broker_factory(settings("off")) is PublicBroker
    assert [path_name(f) for f in (FastPathBroker, PublicBroker)] == ["fast", "public"]


def test_without_the_fast_path_auto_falls_back_and_on_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "ingest.mqtt_fastpath", None)  # as if its import had failed
    assert broker_factory(settings("auto")) is PublicBroker
    assert "fast path unavailable" in caplog.text
    with pytest.raises(ConfigError, match="--mqtt-fast-path on"):
        broker_factory(settings("on"))
