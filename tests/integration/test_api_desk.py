"""The alert desk's backend against a real server: ``ioc api``'s uvicorn (StreamingServer) on a loopback
port, a real alert store on both backends (``alerts_location``), the InfluxDB and fleet of
``simulated_data``.

The live stream is read as the page's ``fetch()`` reads it (a streamed HTTP response, parsed as
Server-Sent Events); alert changes are recorded as ingest records them (another AlertStore on the
same database, ``apply()``), so an event only arrives if the API's watcher found it.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from alerts.store import AlertStore
from api.config import ApiSettings
from api.feed import feed_of
from api.keys import KeyStore
from api.main import create_app
from api.serve import ApiThread
from contract.fields import CAMERA_EVENTS, Kind
from contract.fleet import Device
from ingest.devices import device_infos
from ioc.preflight import listen
from rules.model import Severity, State, Transition
from rules.pack import DEFAULT_PACK
from storage.influxql import query
from tests.conftest import SimulatedData

ADMIN = "admin-" + "d" * 40
T_FIRED = 1_764_900_000_000
POLL_S = 0.2


@dataclass
class Live:
    """A running API and its keys: read, operate, and read keys limited to one province."""

    url: str
    api: ApiThread
    store_location: Path | str
    data: SimulatedData
    keys: dict[str, str] = field(default_factory=dict)

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def get(self, path: str, role: str | None = "read", **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.h(role) if role else {}, timeout=10, **kw)

    def stop(self) -> None:
        self.api.__exit__()


@contextlib.contextmanager
def live_api(data: SimulatedData, location: Path | str, **overrides: Any) -> Iterator[Live]:
    """``ioc api`` as it runs (the app factory under StreamingServer: :class:`api.serve.ApiThread`) on a free port."""
    sock = listen("127.0.0.1", 0, host_flag="127.0.0.1", port_flag="a free port")
    settings = ApiSettings(  # type: ignore[call-arg]
        _env_file=None,
        influx_url=data.influx_url,
        influx_db=data.db,
        fleet=data.fleet_file,
        alerts_db=location,
        api_admin_key=ADMIN,
        api_port=sock.getsockname()[1],
        api_stream_poll_s=POLL_S,
        **overrides,
    )
    with ApiThread(create_app(settings), sock) as api, contextlib.closing(KeyStore(location)) as keys:
        live = Live(api.base_url, api, location, data)
        provinces = sorted({d.province for d in data.fleet.devices})
        for role, scope, limited in (
            ("read", "read", None),
            ("operate", "operate", None),
            ("first_province", "read", [provinces[0]]),
            ("last_province", "read", [provinces[-1]]),
        ):
            _, live.keys[role] = keys.create(f"{role}-desk", scope, provinces=limited)
        yield live


class Reader:
    """Reads an SSE stream in a thread, as the page does: ``(event, id, data)`` per event, comments as
    ``(":", None, text)``, and ``None`` once the stream ended."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.items: queue.Queue[tuple[str, str | None, str] | None] = queue.Queue()
        self.status: int | None = None
        self.retry: str | None = None
        self.ready = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self._thread.start()
        assert self.ready.wait(10), "no answer"

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as r:
                self.status = r.status_code
                self.content_type = r.headers.get("content-type", "")
                self.ready.set()
                event, event_id, data = "message", None, []
                for line in r.iter_lines():
                    if line.startswith(":"):
                        self.items.put((":", None, line[1:].strip()))
                    elif line.startswith("retry:"):
                        self.retry = line.removeprefix("retry:").strip()
                    elif line.startswith("event:"):
                        event = line.removeprefix("event:").strip()
                    elif line.startswith("id:"):
                        event_id = line.removeprefix("id:").strip()
                    elif line.startswith("data:"):
                        data.append(line.removeprefix("data:").strip())
                    elif line == "" and data:
                        self.items.put((event, event_id, "\n".join(data)))
                        event, event_id, data = "message", None, []
        except httpx.HTTPError:
            pass
        finally:
            self.ready.set()
            self.items.put(None)

    def next_event(self, timeout_s: float = 5.0) -> tuple[str, str | None, str] | None:
        """The next event (comments skipped); fails after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no event within {timeout_s} s"
            item = self.items.get(timeout=left)
            if item is None or item[0] != ":":
                return item

    def drain(self) -> list[tuple[str, str | None, str] | None]:
        out = []
        while not self.items.empty():
            out.append(self.items.get_nowait())
        return out

    def close(self) -> None:
        """Stop reading (the thread ends with the stream: at the latest when the server stops)."""
        self._client.close()
        self._thread.join(0.5)


@pytest.fixture
def live(simulated_data: SimulatedData, alerts_location: Path | str) -> Iterator[Live]:
    with live_api(simulated_data, alerts_location) as api:
        yield api


@pytest.fixture(scope="module")
def desk(simulated_data: SimulatedData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One API on a SQLite store for the tests that read only."""
    with live_api(simulated_data, tmp_path_factory.mktemp("desk") / "alerts.db") as api:
        yield api


def firing(device: Device, rule: str = "SAL_DESK_TEST", state: State = State.FIRING, ts: int = T_FIRED) -> Transition:
    return Transition(
        rule_id=rule,
        device=0,
        device_id=device.id,
        state=state,
        ts_ms=ts,
        value=4.5,
        severity=Severity.CRITICAL,
        message_vi=f"Độ mặn cao tại {device.id}",
        message_en=f"Salinity high at {device.id}",
    )


def record(live: Live, device: Device, **kw: Any) -> str:
    """Record a transition as ingest does (its own store on the same database); the alert's id."""
    with AlertStore(live.store_location) as store:
        [event] = store.apply([firing(device, **kw)], device_infos([device]))
    return event.alert_id


# -- the live stream -----------------------------------------------------------------------------


def test_the_stream_needs_a_key(live: Live) -> None:
    r = live.get("/v1/alerts/stream", role=None)
    assert r.status_code == 401
    assert httpx.get(live.url + "/v1/alerts/stream", headers={"Authorization": "Bearer ioc_nope"}).status_code == 401


def test_the_stream_carries_opened_acknowledged_and_resolved_alerts_to_the_keys_that_may_see_them(
    live: Live,
) -> None:
    devices = sorted(live.data.fleet.devices, key=lambda d: d.province)
    first, last = devices[0], devices[-1]
    assert first.province != last.province
    earlier = record(live, first, rule="SAL_BEFORE")  # active before anyone connects: in the snapshot
    everyone = Reader(live.url + "/v1/alerts/stream", live.h("read"))
    mine = Reader(live.url + "/v1/alerts/stream", live.h("first_province"))
    other = Reader(live.url + "/v1/alerts/stream", live.h("last_province"))
    try:
        assert (everyone.status, everyone.content_type.split(";")[0]) == (200, "text/event-stream")
        for reader, seen in ((everyone, [earlier]), (mine, [earlier]), (other, [])):
            event, event_id, data = reader.next_event() or ("", None, "")
            assert event == "snapshot"
            assert [a["id"] for a in json.loads(data)] == seen
            assert event_id is not None
            assert int(event_id) >= 1
            assert reader.retry == "3000"

        t0 = time.monotonic()
        alert_id = record(live, first)
        event, event_id, data = everyone.next_event(5.0) or ("", None, "")
        assert time.monotonic() - t0 < 5.0
        alert = json.loads(data)
        assert event == "alert"
        assert (alert["id"], alert["state"], alert["severity"], alert["acknowledged_by"]) == (
            alert_id, "firing", "critical", None
        )  # fmt: skip
        assert alert["device_id"] == first.id
        assert alert["province"] == first.province
        assert alert["message_vi"] == f"Độ mặn cao tại {first.id}"
        assert int(event_id or 0) > 0
        assert (mine.next_event() or ("", None, ""))[2] == data, "a key of that province sees it too"

        r = httpx.post(f"{live.url}/v1/alerts/{alert_id}/acknowledge", headers=live.h("operate"), timeout=10)
        assert r.status_code == 200
        event, ack_id, data = everyone.next_event(5.0) or ("", None, "")
        acked = json.loads(data)
        assert (event, acked["id"], acked["acknowledged_by"]) == ("alert", alert_id, "operate-desk")
        assert int(ack_id or 0) > int(event_id or 0), "event ids grow"

        record(live, first, state=State.RESOLVED, ts=T_FIRED + 60_000)
        resolved = json.loads((everyone.next_event(5.0) or ("", None, "{}"))[2])
        assert (resolved["id"], resolved["state"], resolved["active"]) == (alert_id, "resolved", False)
        # the other province's key heard none of it (give its stream a few polls to show otherwise)
        time.sleep(POLL_S * 5)
        assert [i for i in other.drain() if i is not None and i[0] != ":"] == []
    finally:
        for reader in (everyone, mine, other):
            reader.close()


def test_a_disconnected_client_is_let_go_and_shutdown_ends_open_streams(live: Live) -> None:
    def clients() -> float:
        text = live.get("/metrics").text
        line = next(x for x in text.splitlines() if x.startswith("ioc_api_stream_clients "))
        return float(line.split()[1])

    host, port = live.url.removeprefix("http://").split(":")
    gone = socket.create_connection((host, int(port)), timeout=10)  # a browser tab, closed
    gone.sendall(
        f"GET /v1/alerts/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {live.keys['read']}\r\n\r\n".encode()
    )
    received = b""
    while b"event: snapshot" not in received:
        chunk = gone.recv(65536)
        assert chunk, f"the server closed the stream before its snapshot: {received!r}"
        received += chunk
    staying = Reader(live.url + "/v1/alerts/stream", live.h("read"))
    assert (staying.next_event() or ("",))[0] == "snapshot"
    assert clients() == 2
    gone.close()
    deadline = time.monotonic() + 5
    while clients() != 1:
        assert time.monotonic() < deadline, "a client that went away still counts (its queue leaks)"
        time.sleep(0.1)
    metrics = live.get("/metrics").text
    assert 'ioc_api_requests_total{method="GET",route="/v1/alerts/stream",status="200"} 1.0' in metrics
    assert 'route="/v1/alerts/stream"' not in "\n".join(
        line for line in metrics.splitlines() if line.startswith("ioc_api_request_seconds")
    ), "a stream's hours are not a request's time"
    assert feed_of(live.api.server.config.loaded_app) is not None, "the server finds its own app's feed"
    started = time.monotonic()
    live.stop()
    assert not live.api.thread.is_alive(), "the server waited for the open stream instead of ending it"
    assert time.monotonic() - started < 5
    assert staying.items.get(timeout=5) is None or staying.next_event() is None, "the stream ended"
    staying.close()


# -- the page and its files ----------------------------------------------------------------------


def test_the_page_loads_without_a_key_and_its_files_with_their_types(desk: Live) -> None:
    r = desk.get("/", role=None)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "<html" in r.text.lower()
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    for path in ("/", "/desk/desk.css"):  # as link checkers and monitors ask
        head = httpx.head(desk.url + path, timeout=10)
        assert (head.status_code, head.content) == (200, b""), path
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    served = 0
    for path in sorted((Path(__file__).parents[2] / "api" / "desk").iterdir()):
        if path.suffix in types:
            f = desk.get(f"/desk/{path.name}", role=None)
            assert (f.status_code, f.headers["content-type"]) == (200, types[path.suffix]), path.name
            assert f.content == path.read_bytes()
            served += 1
    assert served >= 1, "the desk has at least one script or style sheet"


@pytest.mark.parametrize(
    "path",
    [
        "/desk/..%2Fdesk.py",
        "/desk/..%2F..%2Fapi%2Fconfig.py",
        "/desk/%2e%2e/%2e%2e/api/config.py",
        "/desk/%2Fetc%2Fpasswd",
        "/desk/",
        "/desk/no-such-file.js",
        "/desk/.hidden",
        "/desk/index.html%00.js",
    ],
)
def test_nothing_outside_the_desk_folder_is_served(desk: Live, path: str) -> None:
    r = httpx.get(desk.url + path, timeout=10)
    assert r.status_code == 404, (path, r.text[:200])
    assert "ApiSettings" not in r.text
    assert "root:" not in r.text


def test_desk_config_needs_no_key_and_names_the_stream(desk: Live) -> None:
    r = desk.get("/v1/desk/config", role=None)
    assert r.status_code == 200
    assert r.json() == {"tile_url": None, "stream_path": "/v1/alerts/stream", "version": "1.0.0"}


# -- a station's thresholds and camera events -------------------------------------------------------


def _pack_levels(kind: str, device: Device) -> set[tuple[str, str, str, float]]:
    """(rule, field, op, value) of the pack's threshold and range rules of ``kind`` that select ``device``,
    read from the YAML itself."""
    levels: set[tuple[str, str, str, float]] = set()
    for rule in yaml.safe_load(DEFAULT_PACK.read_text(encoding="utf-8"))["rules"]:
        select = rule.get("select") or {}
        if rule["kind"] != kind or rule.get("enabled", True) is False:
            continue
        if any(
            values and getattr(device, tag, None) not in values for tag, values in select.items() if tag != "devices"
        ):
            continue
        if select.get("devices") and device.id not in select["devices"]:
            continue
        c = rule["condition"]
        if c["type"] == "threshold":
            levels.add((rule["id"], c["field"], c["op"], float(c["value"])))
            if rule.get("critical_above") is not None:  # the engine escalates at the level, on the rule's side
                up = c["op"] in (">", ">=")
                levels.add((rule["id"], c["field"], ">=" if up else "<=", float(rule["critical_above"])))
        elif c["type"] == "range":
            levels |= {(rule["id"], c["field"], "<", float(c["low"])), (rule["id"], c["field"], ">", float(c["high"]))}
    return levels


def test_thresholds_are_the_pack_s_fixed_levels_for_that_device(desk: Live) -> None:
    seen_any = False
    for kind in Kind:
        device = next(d for d in desk.data.fleet.devices if d.kind is kind)
        r = desk.get(f"/v1/devices/{device.id}/thresholds")
        assert r.status_code == 200
        got = r.json()
        assert {(t["rule_id"], t["field"], t["op"], t["value"]) for t in got} == _pack_levels(kind.value, device)
        assert all(t["severity"] in ("info", "warning", "critical") and t["name_vi"] and t["name_en"] for t in got)
        seen_any = seen_any or bool(got)
    assert seen_any, "the Mekong pack has threshold rules"
    assert desk.get("/v1/devices/nope-000/thresholds").status_code == 404


def test_a_key_of_another_province_cannot_see_a_station(desk: Live) -> None:
    provinces = sorted({d.province for d in desk.data.fleet.devices})
    device = next(d for d in desk.data.fleet.devices if d.province == provinces[-1])
    assert desk.get(f"/v1/devices/{device.id}/thresholds", role="first_province").status_code == 404
    assert desk.get(f"/v1/devices/{device.id}/camera-events", role="first_province").status_code == 404
    assert desk.get(f"/v1/devices/{device.id}/thresholds", role="last_province").status_code == 200


def test_camera_events_are_those_influxdb_holds_newest_first(desk: Live) -> None:
    data = desk.data
    hours = (time.time() * 1000 - data.start_ms) / 3_600_000 + 1
    counted: dict[str, int] = {}
    for s in query(
        data.influx_url,
        f'SELECT count("confidence") FROM "camera" WHERE "event" != \'\' AND time >= {data.start_ms - 3_600_000}ms'
        ' GROUP BY "device_id"',
        db=data.db,
    ):
        counted[s["tags"]["device_id"]] = int(s["values"][0][1])
    cameras = [d for d in data.fleet.devices if d.kind is Kind.CAMERA]
    assert counted, "the simulated fleet's cameras reported events"
    for camera in cameras:
        r = desk.get(f"/v1/devices/{camera.id}/camera-events", params={"hours": hours, "limit": 1000})
        assert r.status_code == 200
        events = r.json()
        assert len(events) == counted.get(camera.id, 0), camera.id
        assert [e["ts_ms"] for e in events] == sorted((e["ts_ms"] for e in events), reverse=True)
        assert all(e["event"] in CAMERA_EVENTS and 0 <= e["confidence"] <= 1 for e in events)
    busiest = max(counted, key=lambda k: counted[k])
    assert len(desk.get(f"/v1/devices/{busiest}/camera-events", params={"hours": hours, "limit": 1}).json()) == 1
    not_camera = next(d for d in data.fleet.devices if d.kind is not Kind.CAMERA)
    assert desk.get(f"/v1/devices/{not_camera.id}/camera-events").json() == []
    assert desk.get("/v1/devices/nope-000/camera-events").status_code == 404
