"""The tutorial consumer: paho-mqtt ``on_message`` → JSON → one InfluxDB write per message.

Written honestly, as most tutorials show it: a clean session with a generated client id (paho's
defaults), QoS 1, ``json.loads``, one HTTP POST per message (its reading, or a gateway's
readings). It is a benchmark peer and the negative control of the reliability tests: whatever
is published while it is down is lost.

    python -m bench.peers.paho_naive --mqtt-port 1883 --influx-url http://127.0.0.1:8086 --db ioc
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import urllib.request

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.peers import TOPICS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--influx-url", default="http://127.0.0.1:8086")
    parser.add_argument("--db", default="ioc")
    args = parser.parse_args(argv)
    write_url = f"{args.influx_url}/write?db={args.db}&precision=ms"

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
            parts = msg.topic.split("/")
            kind, device = parts[3], parts[4]
            lines = []
            for r in data.get("readings", [data]):
                fields = ",".join(
                    f"{k}={v}" for k, v in r.items() if k not in ("ts", "seq") and isinstance(v, int | float)
                )
                lines.append(f"{kind},device_id={device} {fields},seq={r['seq']}i {r['ts']}")
            body = "\n".join(lines).encode()
            urllib.request.urlopen(urllib.request.Request(write_url, data=body, method="POST"))
        except Exception as exc:  # a tutorial consumer logs and moves on
            print(f"skipped: {exc}", file=sys.stderr)

    client = mqtt.Client(CallbackAPIVersion.VERSION2)  # paho's defaults: random id, clean session
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in TOPICS])
    client.on_subscribe = lambda *a: print(f"subscribed to {', '.join(TOPICS)}", file=sys.stderr, flush=True)
    client.connect("127.0.0.1", args.mqtt_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
