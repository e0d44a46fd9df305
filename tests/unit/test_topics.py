"""MQTT topics of the device contract (contract.topics)."""

from __future__ import annotations

import pytest

from contract.fields import Kind
from contract.reasons import Reason
from contract.topics import (
    DLQ_PREFIX,
    PREFIX,
    SUBSCRIPTION,
    Channel,
    DeviceTopic,
    MqttEndpoint,
    TopicError,
    device_topic,
    dlq_topic,
    mqtt_endpoint,
    parse_device_topic,
    parse_mqtt_url,
)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (
            "ioc/v1/ben_tre/water_quality/wq-bt-0001/telemetry",
            DeviceTopic("ben_tre", Kind.WATER_QUALITY, "wq-bt-0001", Channel.TELEMETRY),
        ),
        (
            "ioc/v1/ca_mau/salinity/sal_cm_31/status",
            DeviceTopic("ca_mau", Kind.SALINITY, "sal_cm_31", Channel.STATUS),
        ),
        (
            "ioc/v1/long_an/light_trap/TRAP-9/telemetry",
            DeviceTopic("long_an", Kind.LIGHT_TRAP, "TRAP-9", Channel.TELEMETRY),
        ),
        (
            "ioc/v1/soc_trang/camera/cam-1/event",
            DeviceTopic("soc_trang", Kind.CAMERA, "cam-1", Channel.EVENT),
        ),
        (  # the contract does not restrict event to cameras at topic level: the decoder does
            "ioc/v1/p1/salinity/x/event",
            DeviceTopic("p1", Kind.SALINITY, "x", Channel.EVENT),
        ),
        ("ioc/v1/x/camera/" + "a" * 64 + "/status", DeviceTopic("x", Kind.CAMERA, "a" * 64, Channel.STATUS)),
        ("ioc/v1/" + "p" * 64 + "/camera/_/status", DeviceTopic("p" * 64, Kind.CAMERA, "_", Channel.STATUS)),
    ],
)
def test_parse_valid(topic: str, expected: DeviceTopic) -> None:
    parsed = parse_device_topic(topic)
    assert parsed == expected
    assert isinstance(parsed.kind, Kind)
    assert isinstance(parsed.channel, Channel)


_GOOD = ("ioc", "v1", "ben_tre", "water_quality", "wq-1", "telemetry")


def _with(**levels: str) -> str:
    names = ("root", "version", "province", "kind", "device_id", "channel")
    return "/".join(levels.get(n, v) for n, v in zip(names, _GOOD, strict=True))


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        # wrong depth / prefix
        ("", "ioc/v1/"),
        ("ioc/v1/ben_tre/water_quality/wq-1", "ioc/v1/"),
        ("ioc/v1/ben_tre/water_quality/wq-1/telemetry/extra", "ioc/v1/"),
        ("ioc/v1/ben_tre/water_quality/wq-1/telemetry/", "ioc/v1/"),
        ("/ioc/v1/ben_tre/water_quality/wq-1/telemetry", "ioc/v1/"),
        ("ioc/v1/ben_tre/wq-1/telemetry", "ioc/v1/"),
        (_with(root="IOC"), "ioc/v1/"),
        (_with(root="iot"), "ioc/v1/"),
        (_with(version="v2"), "ioc/v1/"),
        (_with(version="V1"), "ioc/v1/"),
        ("ioc/v1/_dlq/bad_json", "ioc/v1/"),
        # province
        (_with(province="Ben_Tre"), "province"),
        (_with(province="ben-tre"), "province"),
        (_with(province=""), "province"),
        (_with(province="ben tre"), "province"),
        (_with(province="p" * 65), "province"),
        (_with(province="ben_tre\n"), "province"),
        # kind
        (_with(kind="waterquality"), "unknown kind"),
        (_with(kind="Water_Quality"), "unknown kind"),
        (_with(kind=""), "unknown kind"),
        (_with(kind="+"), "unknown kind"),
        # device id
        (_with(device_id=""), "device id"),
        (_with(device_id="a,b"), "device id"),
        (_with(device_id="a=b"), "device id"),
        (_with(device_id="a b"), "device id"),
        (_with(device_id="a\nb"), "device id"),
        (_with(device_id="wq-1\n"), "device id"),
        (_with(device_id="a\\b"), "device id"),
        (_with(device_id="a.b"), "device id"),
        (_with(device_id="+"), "device id"),
        (_with(device_id="#"), "device id"),
        (_with(device_id="é"), "device id"),
        (_with(device_id="a" * 65), "device id"),
        # channel
        (_with(channel="Telemetry"), "unknown channel"),
        (_with(channel="telemetry\n"), "unknown channel"),
        (_with(channel="events"), "unknown channel"),
        (_with(channel=""), "unknown channel"),
    ],
)
def test_parse_rejects(topic: str, message: str) -> None:
    with pytest.raises(TopicError, match=message):
        parse_device_topic(topic)


def test_topic_error_message_is_bounded() -> None:
    with pytest.raises(TopicError) as info:
        parse_device_topic(_with(kind="k" * 10_000))
    assert len(str(info.value)) < 100


def test_topic_error_is_value_error() -> None:
    assert issubclass(TopicError, ValueError)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("ben_tre", Kind.WATER_QUALITY, "wq-1", Channel.TELEMETRY), "ioc/v1/ben_tre/water_quality/wq-1/telemetry"),
        (("ca_mau", "camera", "cam-1", "event"), "ioc/v1/ca_mau/camera/cam-1/event"),
        (("long_an", Kind.LIGHT_TRAP, "t", "status"), "ioc/v1/long_an/light_trap/t/status"),
    ],
)
def test_device_topic(args: tuple[str, str, str, str], expected: str) -> None:
    topic = device_topic(*args)
    assert topic == expected
    assert parse_device_topic(topic).device_id == args[2]


@pytest.mark.parametrize(("kind", "channel"), [("fish", "telemetry"), ("camera", "video")])
def test_device_topic_refuses_unknown_kind_or_channel(kind: str, channel: str) -> None:
    with pytest.raises(ValueError, match="is not a valid"):
        device_topic("p", kind, "d", channel)


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("channel", list(Channel))
def test_device_topic_round_trips(kind: Kind, channel: Channel) -> None:
    assert parse_device_topic(device_topic("tien_giang", kind, "dev_01", channel)) == DeviceTopic(
        "tien_giang", kind, "dev_01", channel
    )


@pytest.mark.parametrize("reason", list(Reason))
def test_dlq_topic(reason: Reason) -> None:
    topic = dlq_topic(reason)
    assert topic == f"ioc/v1/_dlq/{reason.value}"
    assert topic.startswith(DLQ_PREFIX + "/")
    with pytest.raises(TopicError):  # a dead letter is never mistaken for a device topic
        parse_device_topic(topic)


def test_prefixes() -> None:
    assert PREFIX == "ioc/v1"
    assert SUBSCRIPTION == "ioc/v1/#"
    assert DLQ_PREFIX == "ioc/v1/_dlq"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", ("127.0.0.1", 1883)),
        ("mqtt://broker.local", ("broker.local", 1883)),
        ("mqtt://broker.local:18830", ("broker.local", 18830)),
        ("mqtt://[::1]:1884", ("::1", 1884)),
        ("mqtt://user:pw@host:2000", ("host", 2000)),
        ("mqtts://broker.example", ("broker.example", 8883)),
        ("mqtts://10.0.0.5:18883", ("10.0.0.5", 18883)),
    ],
)
def test_parse_mqtt_url(url: str, expected: tuple[str, int]) -> None:
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "tcp://host:1883",
        "http://host",
        "host:1883",
        "mqtt://",
        "mqtt://:1883",
        "",
        "mqtts//host",
        "mqtts://",
        "ssl://h",
    ],
)
def test_parse_mqtt_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match="mqtt://host:port"):
        parse_mqtt_url(url)


@pytest.mark.parametrize("url", ["mqtt://host:99999", "mqtt://host:port"])
def test_parse_mqtt_url_bad_port(url: str) -> None:
    with pytest.raises(ValueError, match=r"[Pp]ort"):
        parse_mqtt_url(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1", MqttEndpoint("127.0.0.1", 1883, tls=False)),
        ("mqtt://h:8883", MqttEndpoint("h", 8883, tls=False)),  # the scheme says TLS, never the port
        ("mqtts://broker.example", MqttEndpoint("broker.example", 8883, tls=True)),
        ("mqtts://[::1]:1884", MqttEndpoint("::1", 1884, tls=True)),
    ],
)
def test_mqtt_endpoint_says_whether_tls_is_on(url: str, expected: MqttEndpoint) -> None:
    assert mqtt_endpoint(url) == expected
    assert parse_mqtt_url(url) == (expected.host, expected.port)


def test_mqtt_endpoint_names_both_schemes_when_it_refuses() -> None:
    with pytest.raises(ValueError, match="mqtt://host:port or mqtts://host:port"):
        mqtt_endpoint("https://broker")
