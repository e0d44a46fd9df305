"""The demo's five scripted field situations, played live.

Each scenario (:mod:`simulators.scenarios`) is shifted so that its cue — the reading at which its
first alert fires — happens now: its recent history and the cue go out at once, the rest of the
story when its device time comes, as the field would tell it (the salt front peaks seventy minutes
later, the next planthopper night tomorrow). So each situation's first alert reaches the farmer as
it happens, never as history too old to send. The silent station then falls silent: it leaves
with its MQTT will, the broker publishes its retained ``offline`` status, and its alert fires.

Each scenario device connects on its own, as a field device would: over TLS for ``mqtts://``
(trusting ``ca_file``), with its account (password derived from the fleet ``secret``).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from contract.topics import Channel, MqttEndpoint, device_topic, mqtt_endpoint
from simulators.model import FleetModel
from simulators.publisher import device_password
from simulators.scenarios import CUES, SCENARIOS, cued, scenario_fleet

SILENT = "quiet_rice_canal"
"""The scenario whose device falls silent after its cue (its will is published)."""


@dataclass
class PlayerStats:
    """What the broker acknowledged: readings, and the wills it published for devices that vanished."""

    readings_acked: int = 0
    wills: int = 0
    due: int = 0
    """Messages still ahead (device time in the future) when the player stopped."""
    by_scenario: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    """Scenarios not played: their device has readings in the script's span already (a resumed demo)."""


def device_client(
    endpoint: MqttEndpoint, device_id: str, *, ca_file: str | None, secret: bytes | None, will: bool
) -> paho.Client:
    """A scenario device's own connection, started: over TLS for ``mqtts://`` (trusting ``ca_file``),
    with its account when there is a fleet ``secret``, and its MQTT will (``offline``) if ``will``."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv5)
    if secret is not None:
        client.username_pw_set(device_id, device_password(secret, device_id))
    if endpoint.tls:
        client.tls_set(ca_certs=ca_file)
    if will:
        d = scenario_fleet().by_id()[device_id]
        topic = device_topic(d.province, d.kind, d.id, Channel.STATUS)
        client.will_set(topic, msgspec.json.encode(FleetModel.will_payload()), qos=1, retain=True)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    return client


def play_scenarios(mqtt_url: str, end_ms: int, *, ca_file: Path | None = None, secret: bytes | None = None) -> int:
    """Publish every scripted scenario whole, ending at ``end_ms`` (history for tests and backtests);
    return how many messages the broker acknowledged. The demo plays them live instead (:class:`ScenarioPlayer`)."""
    endpoint = mqtt_endpoint(mqtt_url)
    by_id = scenario_fleet().by_id()
    per_device: dict[str, list[tuple[str, bytes]]] = {}
    for script in SCENARIOS.values():
        for device_id, channel, reading in script(end_ms):
            d = by_id[device_id]
            topic = device_topic(d.province, d.kind, d.id, channel)
            per_device.setdefault(device_id, []).append((topic, msgspec.json.encode(reading)))
    published = 0
    for device_id, messages in per_device.items():
        client = device_client(
            endpoint, device_id, ca_file=str(ca_file) if ca_file else None, secret=secret, will=False
        )
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)
        client.disconnect()
        client.loop_stop()
        published += sum(1 for i in infos if i.is_published())
    return published


class ScenarioPlayer:
    """Plays every scenario with its cue at the moment :meth:`start` is called, until :meth:`stop`."""

    def __init__(self, mqtt_url: str, *, ca_file: str | None = None, secret: bytes | None = None) -> None:
        self._endpoint = mqtt_endpoint(mqtt_url)
        self._ca_file = ca_file
        self._secret = secret
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clients: dict[str, paho.Client] = {}
        self.stats = PlayerStats()
        self.scenario_of = {m[0]: name for name in SCENARIOS for m in SCENARIOS[name](0)}
        """device id → its scenario."""

    def start(self, now_ms: int | None = None, *, newest: Mapping[str, int] | None = None) -> None:
        """Connect the scenario devices, play everything up to the cues, then the rest in its time.

        ``newest`` (device id → device time of its newest stored reading): a scenario whose device
        has readings at or after the script's start is not played — its story would overlap the one
        stored (a demo resumed soon after the last), and its alerts may still be active.
        """
        now = int(time.time() * 1000) if now_ms is None else now_ms
        by_id = scenario_fleet().by_id()
        queue: list[tuple[int, int, str, str, bytes, bool]] = []
        for name in SCENARIOS:
            messages = cued(name, now)
            if newest and newest.get(messages[0][0], -1) >= int(messages[0][2]["ts"]):
                self.stats.skipped.append(name)
                continue
            for i, (device_id, channel, reading) in enumerate(messages):
                d = by_id[device_id]
                last_of_silent = name == SILENT and i == CUES[name]
                topic = device_topic(d.province, d.kind, d.id, Channel(channel))
                queue.append((int(reading["ts"]), len(queue), device_id, topic, msgspec.json.encode(reading),
                              last_of_silent))  # fmt: skip
        heapq.heapify(queue)
        for device_id in sorted({q[2] for q in queue}):
            self._clients[device_id] = self._connect(device_id)
        self._thread = threading.Thread(target=self._play, args=(queue,), name="scenarios", daemon=True)
        self._thread.start()

    def _connect(self, device_id: str) -> paho.Client:
        return device_client(self._endpoint, device_id, ca_file=self._ca_file, secret=self._secret, will=True)

    def _play(self, queue: list[tuple[int, int, str, str, bytes, bool]]) -> None:
        while queue and not self._stop.is_set():
            due_ms = queue[0][0]
            wait_s = (due_ms - time.time() * 1000) / 1000
            if wait_s > 0 and self._stop.wait(wait_s):
                break
            infos = []
            silent: str | None = None
            while queue and queue[0][0] <= time.time() * 1000:
                _, _, device_id, topic, payload, last_of_silent = heapq.heappop(queue)
                infos.append((device_id, self._clients[device_id].publish(topic, payload, qos=1)))
                if last_of_silent:
                    silent = device_id
            for device_id, info in infos:
                info.wait_for_publish(30)
                if info.is_published():
                    self.stats.readings_acked += 1
                    name = self.scenario_of[device_id]
                    self.stats.by_scenario[name] = self.stats.by_scenario.get(name, 0) + 1
            if silent is not None:  # the station vanishes: the broker publishes its will
                client = self._clients.pop(silent)
                client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
                client.loop_stop()
                self.stats.wills += 1
        self.stats.due = len(queue)

    def stop(self) -> PlayerStats:
        """Stop playing (what lies ahead is not sent) and disconnect the devices cleanly (no wills)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for client in self._clients.values():
            client.disconnect()
            client.loop_stop()
        self._clients.clear()
        return self.stats

    def wait_played_now(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything up to the cues was acknowledged (the scenarios' present)."""
        deadline = time.monotonic() + timeout_s
        played = [name for name in SCENARIOS if name not in self.stats.skipped]
        present = sum(CUES[name] + 1 for name in played)
        while time.monotonic() < deadline:
            if self.stats.readings_acked >= present and (self.stats.wills or SILENT not in played):
                return True
            time.sleep(0.05)
        return False
