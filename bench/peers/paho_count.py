"""The receive ceiling of any Python MQTT consumer: a bare paho-mqtt subscriber that only counts.

QoS 1, paho's defaults otherwise (clean session, automatic PUBACK on receipt), ``loop_forever``.
Every 100 ms a thread writes the count of messages received so far to ``--count-file``.

    python -m bench.peers.paho_count --mqtt-port 1883 --count-file count.txt
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.peers import TOPICS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--count-file", type=Path, required=True)
    args = parser.parse_args(argv)
    received = [0]

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received[0] += 1

    def report(stop: threading.Event) -> None:
        tmp = args.count_file.with_suffix(".tmp")
        while not stop.wait(0.1):
            tmp.write_text(str(received[0]))
            tmp.replace(args.count_file)

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in TOPICS])
    client.connect("127.0.0.1", args.mqtt_port)
    stop = threading.Event()
    threading.Thread(target=report, args=(stop,), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *a: client.disconnect())
    client.loop_forever()
    stop.set()
    args.count_file.write_text(str(received[0]))


if __name__ == "__main__":
    main()
