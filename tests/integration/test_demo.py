"""`ioc demo` end to end, as a user runs it: its last stdout line is the JSON summary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


def test_demo_stores_every_published_reading(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "IOC_DEMO_VAR_DIR": str(tmp_path / "var"),
        "IOC_DEMO_MQTT_PORT": "0",  # free ports: never collide with a broker or database already here
        "IOC_DEMO_INFLUX_PORT": "0",
        "IOC_DEMO_METRICS_PORT": "0",
        "IOC_DEMO_MALFORMED_SHARE": "0.02",
    }
    cmd = [
        sys.executable,
        "-m",
        "ioc",
        "demo",
        "--duration",
        "4",
        "--devices",
        "40",
        "--seed",
        "2",
        "--backfill-hours",
        "12",
    ]
    out = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    summary = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert summary["published"] > 1000
    assert summary["stored"] == summary["published"]
    assert summary["rejected"] == summary["malformed_sent"] > 0
    assert summary["devices"] == 40
    assert summary["broker_dropped"] == 0
    # Rules ran on the stream, and the scripted scenarios' fresh alerts reached the demo receiver
    # (the market smoke fires and resolves within the last hour), signed and verified.
    assert summary["scenario_readings"] > 0
    assert summary["alerts_fired"] > 0
    assert summary["webhooks_delivered"] >= 2
    assert summary["webhooks_pending"] == 0
    assert "Phát hiện khói/lửa tại Ba Tri, Bến Tre" in out.stdout.decode()
    assert (tmp_path / "var" / "fleet.yaml").is_file()
    assert "published" in out.stderr.decode()  # the progress line
    # Provisioned as a province would run it: the registry, an account per device, TLS.
    from registry.store import DeviceRegistry

    registry = DeviceRegistry(f"sqlite:///{tmp_path / 'var' / 'registry.db'}")
    assert registry.count() == 40
    registry.close()
    assert "mqtts://127.0.0.1:" in out.stderr.decode()
    # The mixed fleet (the default): stations behind a ChirpStack network server and Sparkplug edge
    # nodes with accounts of their own, SenML traps, the rest native; all stored, as counted above.
    said = " ".join(out.stderr.decode().split())  # the console wraps long lines
    assert re.search(r"40 device and [1-9]\d* gateway accounts, fleet as mixed", said)
    assert (tmp_path / "var" / "tls" / "ca.crt").is_file()
    assert oct((tmp_path / "var" / "operator.pw").stat().st_mode & 0o777) == "0o600"
    assert "ingest.service: subscribed to mqtts://" in out.stderr.decode()
