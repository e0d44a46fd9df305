"""The careful do-it-yourself consumer: paho-mqtt ``on_message`` → JSON → a batch of 1000
messages or 1 s, whichever comes first → one InfluxDB write.

Written as a user who read about batching would: ``json.loads`` in the callback, lines appended
to a list under a lock, a writer thread that swaps the list out and POSTs it with ``requests``-
style keep-alive (``http.client`` here: no extra dependency). paho's defaults otherwise (clean
session, automatic PUBACK on receipt: a crash loses the batch in memory).

    python -m bench.peers.paho_batched --mqtt-port 1883 --influx-url http://127.0.0.1:8086 --db ioc
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import threading
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.peers import TOPICS

BATCH_MESSAGES = 1000
BATCH_SECONDS = 1.0


def to_lines(topic: str, payload: bytes | bytearray) -> list[str]:
    """The line-protocol lines of one message (measurement = kind, tag device_id)."""
    data = json.loads(payload)
    parts = topic.split("/")
    kind, device = parts[3], parts[4]
    lines = []
    for r in data.get("readings", [data]):
        fields = ",".join(f"{k}={v}" for k, v in r.items() if k not in ("ts", "seq") and isinstance(v, int | float))
        lines.append(f"{kind},device_id={device} {fields},seq={r['seq']}i {r['ts']}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--influx-url", default="http://127.0.0.1:8086")
    parser.add_argument("--db", default="ioc")
    args = parser.parse_args(argv)
    url = urlsplit(args.influx_url)
    path = f"/write?db={args.db}&precision=ms"
    lock = threading.Lock()
    full = threading.Event()
    stop = threading.Event()
    batch: list[str] = []
    messages = [0]

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            lines = to_lines(msg.topic, msg.payload)
        except (ValueError, KeyError, IndexError) as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            return
        with lock:
            batch.extend(lines)
            messages[0] += 1
            if messages[0] >= BATCH_MESSAGES:
                full.set()

    def writer() -> None:
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 8086, timeout=30)
        while not stop.is_set() or batch:
            full.wait(BATCH_SECONDS)
            full.clear()
            with lock:
                lines = batch[:]
                batch.clear()
                messages[0] = 0
            if not lines:
                continue
            try:
                conn.request("POST", path, body="\n".join(lines).encode())
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 300:
                    print(f"write failed: {resp.status}", file=sys.stderr)
            except OSError as exc:
                print(f"write failed: {exc}", file=sys.stderr)
                conn.close()

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in TOPICS])
    client.connect("127.0.0.1", args.mqtt_port)
    thread = threading.Thread(target=writer)
    thread.start()
    signal.signal(signal.SIGTERM, lambda *a: client.disconnect())
    client.loop_forever()
    stop.set()
    full.set()
    thread.join()


if __name__ == "__main__":
    main()
