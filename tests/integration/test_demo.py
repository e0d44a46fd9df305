"""`ioc demo` end to end, as a user runs it: its last stdout line is the JSON summary; while it runs
its alert desk answers at the URL it prints; a second demo over the same ``var/`` resumes it,
keeping what the user made there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

ENV = {
    "IOC_DEMO_MQTT_PORT": "0",  # free ports: never collide with a broker or database already here
    "IOC_DEMO_MQTTS_PORT": "0",
    "IOC_DEMO_INFLUX_PORT": "0",
    "IOC_DEMO_METRICS_PORT": "0",
    "IOC_DEMO_MALFORMED_SHARE": "0.02",
    "IOC_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",  # the user's own subscriber below, on loopback (no DNS here)
}
DEMO = ["demo", "--duration", "4", "--devices", "40", "--seed", "2", "--backfill-hours", "12"]
SITUATIONS = {  # each scripted situation's first alert, delivered live to the demo's farmer
    "salinity_intrusion": {"SAL_FRUIT"},  # drinking water fires at the same reading: a lower level
    "shrimp_dawn_oxygen_crash": {"SH_DO_WARN"},
    "planthopper_migration": {"BPH_SURGE"},
    "market_smoke": {"CAM_FIRE"},
    "quiet_rice_canal": {"SAL_SILENT"},
}


def ioc(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, **ENV}
    return subprocess.run(
        [sys.executable, "-m", "ioc", *args], env=env, cwd=tmp_path, capture_output=True, timeout=timeout
    )


DESK_LINE = re.compile(r"alert desk: (http://127\.0\.0\.1:\d+/)\s+\(key in (\S+)\)")


def open_desk(url: str, key_file: Path) -> dict[str, Any]:
    """What a browser gets from the desk: the page, the stream without a key, and its first snapshot."""
    seen: dict[str, Any] = {"key_mode": oct(key_file.stat().st_mode & 0o777)}
    page = httpx.get(url, timeout=10)
    seen["page"] = (page.status_code, page.headers.get("content-type"), "<html" in page.text.lower())
    seen["stream_without_key"] = httpx.get(url + "v1/alerts/stream", timeout=10).status_code
    key = key_file.read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("GET", url + "v1/alerts/stream", headers=headers, timeout=httpx.Timeout(10)) as r:
        seen["stream"] = (r.status_code, r.headers.get("content-type"))
        event = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event == "snapshot":
                seen["snapshot"] = json.loads(line.removeprefix("data:"))
                break
    seen["devices"] = len(httpx.get(url + "v1/devices", headers=headers, timeout=10).json())
    return seen


def ioc_with_desk(
    tmp_path: Path, *args: str, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[bytes], dict[str, Any]]:
    """:func:`ioc`, and while the demo runs, :func:`open_desk` at the URL it prints (its key in ``var/``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ioc", *args], env={**os.environ, **ENV}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    err: list[bytes] = []
    desk: dict[str, Any] = {}

    def watch(stream: Any) -> None:
        for raw in stream:
            err.append(raw)
            if not desk and (m := DESK_LINE.search(raw.decode(errors="replace"))):
                try:
                    desk.update(open_desk(m.group(1), tmp_path / m.group(2)))
                except Exception as exc:
                    desk["error"] = repr(exc)

    watcher = threading.Thread(target=watch, args=(proc.stderr,), daemon=True)
    watcher.start()
    out = proc.stdout.read()
    proc.wait(timeout)
    watcher.join(30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, b"".join(err)), desk


def summary_of(out: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def test_demo_stores_every_published_reading(tmp_path: Path) -> None:
    out, desk = ioc_with_desk(tmp_path, *DEMO)
    summary = summary_of(out)
    # While it ran, the alert desk it printed answered: the page without a key, the data with the key
    # the demo wrote for it (an operate key, readable by the user alone).
    assert "error" not in desk, desk.get("error")
    assert desk["page"] == (200, "text/html; charset=utf-8", True)
    assert desk["stream_without_key"] == 401
    assert desk["stream"] == (200, "text/event-stream; charset=utf-8")
    assert isinstance(desk["snapshot"], list)
    assert desk["devices"] == 40
    assert desk["key_mode"] == "0o600"
    assert summary["published"] > 1000
    assert summary["stored"] == summary["published"]
    assert summary["rejected"] == summary["malformed_sent"] > 0
    assert summary["devices"] == 40
    assert summary["broker_dropped"] == 0
    # Rules ran on the stream, and each of the five scripted situations, played live, reached the
    # demo's farmer as it happened, signed and verified.
    assert summary["scenario_readings"] > 0
    assert summary["alerts_fired"] > 0
    assert summary["webhooks_pending"] == 0
    assert {k: set(v) for k, v in summary["situations"].items()} == SITUATIONS
    assert summary["situations_delivered"] == 5
    assert summary["webhooks_delivered"] >= 5
    counts = summary["situation_messages"]
    assert counts["salinity_intrusion"] == {"events": 2, "messages": 1}, "two rules fired, the farmer heard one"
    assert all(c["messages"] <= c["events"] for c in counts.values()), counts
    assert summary["farmer_messages"] == summary["webhooks_delivered"] < summary["farmer_events"]
    printed = out.stdout.decode()
    for text in (
        "Phát hiện khói/lửa tại Ba Tri, Bến Tre",
        "Mặn 0,61‰ tại Châu Thành, Tiền Giang",
        "Oxy ao tôm tại Trần Đề, Sóc Trăng thấp (3,8 mg/L)",
        "Rầy nâu vào đèn tại Tháp Mười, Đồng Tháp tăng mạnh (260 con/đêm)",
        "Trạm đo mặn la-sal-rice tại Cần Đước, Long An mất tín hiệu",
    ):
        assert text in printed
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
    assert summary["resumed"] is False


def test_a_second_demo_resumes_and_keeps_what_the_user_made(tmp_path: Path) -> None:
    first = summary_of(ioc(tmp_path, *DEMO))
    assert first["resumed"] is False
    # The demo's own farmer subscription lived and died with it; what the user adds stays.
    subs = json.loads(ioc(tmp_path, "subscriptions", "list", "--json").stdout)
    assert subs == []
    made = ioc(tmp_path, "subscriptions", "add", "http://127.0.0.1:9/zalo-gateway", "--description", "co-op", "--json")
    assert made.returncode == 0, made.stderr.decode()
    key = ioc(tmp_path, "api", "keys", "create", "--scope", "operate", "--name", "duty desk")
    assert key.returncode == 0, key.stderr.decode()
    # Another fleet over this data is refused, naming --fresh; nothing is touched.
    other = ioc(tmp_path, "demo", "--duration", "1", "--devices", "41")
    assert other.returncode == 2
    assert "--fresh" in other.stderr.decode()
    assert "Traceback" not in other.stderr.decode()

    second = summary_of(ioc(tmp_path, *DEMO))
    assert second["resumed"] is True
    assert second["stored"] == second["published"] > 0  # counted back: only this run's readings
    assert second["backfill_hours"] < 1  # only the gap since the first run, not 12 h again
    subs = json.loads(ioc(tmp_path, "subscriptions", "list", "--json").stdout)
    assert [s["description"] for s in subs] == ["co-op"]
    keys = ioc(tmp_path, "api", "keys", "list").stdout.decode()
    assert "duty desk" in keys
    from registry.store import DeviceRegistry

    registry = DeviceRegistry(f"sqlite:///{tmp_path / 'var' / 'registry.db'}")
    assert registry.count() == 40
    registry.close()

    # --fresh deletes that data (and only the demo's files) and starts anew.
    (tmp_path / "var" / "notes.txt").write_text("mine")
    fresh = summary_of(ioc(tmp_path, *DEMO, "--fresh"))
    assert fresh["resumed"] is False
    assert fresh["situations_delivered"] == 5
    assert "duty desk" not in ioc(tmp_path, "api", "keys", "list").stdout.decode()
    assert (tmp_path / "var" / "notes.txt").read_text() == "mine"


def test_servers_come_back_over_the_demo_data(tmp_path: Path) -> None:
    summary = summary_of(ioc(tmp_path, *DEMO))
    status = ioc(tmp_path, "servers", "status")
    assert status.returncode == 3  # stopped with the timed demo
    assert "mosquitto stopped" in status.stdout.decode()
    started = ioc(tmp_path, "servers", "start")
    try:
        assert started.returncode == 0, started.stderr.decode()
        status = ioc(tmp_path, "servers", "status")
        assert status.returncode == 0
        influx = re.search(r"influxd\s+running \(pid \d+\): (http://127\.0\.0\.1:\d+)", status.stdout.decode())
        assert influx, status.stdout.decode()
        from ioc.demo import count_stored

        assert count_stored(influx.group(1)) == summary["stored"]  # the demo's readings, back
        again = ioc(tmp_path, "servers", "start")
        assert "(already running)" in again.stdout.decode()
    finally:
        stopped = ioc(tmp_path, "servers", "stop")
    assert stopped.returncode == 0
    assert "stopped mosquitto, influxd" in stopped.stdout.decode()
    assert ioc(tmp_path, "servers", "status").returncode == 3


@pytest.mark.parametrize("fresh", [False, True])
def test_a_taken_desk_port_is_refused_in_one_line(tmp_path: Path, fresh: bool) -> None:
    import socket

    kept = [tmp_path / "var" / name for name in ("registry.db", "alerts.db", "desk.key")]  # an earlier demo's
    if fresh:
        kept[0].parent.mkdir()
        for path in kept:
            path.write_text("earlier")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {**os.environ, **ENV, "IOC_DEMO_API_PORT": str(port)}
        out = subprocess.run(
            [sys.executable, "-m", "ioc", *DEMO, *(["--fresh"] if fresh else [])],
            env=env, cwd=tmp_path, capture_output=True, timeout=120,
        )  # fmt: skip
    assert out.returncode == 2
    said = out.stderr.decode().strip()
    taken = f"port {port} on 127.0.0.1 is already in use"
    assert said == f"error: {taken}: choose another with --api-port (IOC_DEMO_API_PORT)"
    assert not (tmp_path / "var" / "influxdb").exists(), "refused before any server started"
    if fresh:
        assert all(path.read_text() == "earlier" for path in kept), "refused before --fresh deleted anything"
