"""Which decoder a message goes to: the sources file's topic filters, matched once per topic.

The native ``ioc/v1`` contract keeps its own decoder (:class:`ingest.decode.Decoder`); every other
format has one of :mod:`ingest.sources`. A topic's match is remembered (a bounded map: topics are
per device, a few per device), so the hot path is one dict lookup, as before.
"""

from __future__ import annotations

import importlib
import logging
from typing import Final, cast

from contract.reasons import Reason
from contract.topics import DLQ_PREFIX
from ingest.batch import BatchBuilder, Rejection
from ingest.decode import Decoder
from ingest.registry import Registry
from ingest.sources.base import DecoderClass, FormatDecoder, Ignore, SourceContext
from ingest.sources.config import NATIVE_ONLY, SourcesFile
from ingest.sources.mapping import FieldMapper

log = logging.getLogger(__name__)
MAX_REMEMBERED: Final = 1_000_000
"""Topics whose decoder is remembered; past it the map starts again (a burst of junk topics)."""

DECODERS: Final = {
    "chirpstack_v4": "ingest.sources.lorawan:ChirpStackV4",
    "tts_v3": "ingest.sources.lorawan:TtsV3",
    "sparkplug_b": "ingest.sources.sparkplug:SparkplugB",
    "senml": "ingest.sources.senml:SenML",
    "thingsboard": "ingest.sources.thingsboard:ThingsBoard",
    "influx_lp": "ingest.sources.lineprotocol:InfluxLineProtocol",
    "json_map": "ingest.sources.jsonmap:JsonMap",
}
"""Each format's decoder class (imported only when a source uses it)."""


def decoder_class(format_name: str) -> DecoderClass:
    """The decoder class of ``format_name`` (one of :data:`DECODERS`)."""
    module, name = DECODERS[format_name].split(":")
    return cast(DecoderClass, getattr(importlib.import_module(module), name))


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching (``+`` one level, ``#`` the rest; ``$`` topics only by explicit filters)."""
    if topic.startswith("$") and not topic_filter.startswith("$"):
        return False
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


class Router:
    """Sends each message to its format's decoder; a topic no source claims is dead-lettered."""

    def __init__(self, sources: SourcesFile, native: Decoder, registry: Registry, ignore: Ignore) -> None:
        context = SourceContext(registry, FieldMapper(sources.models), ignore)
        self._max_payload = native.max_payload_bytes
        self._routes: list[tuple[str, FormatDecoder]] = []
        for source in sources.sources:
            decoder = native if source.format == "ioc_v1" else decoder_class(source.format)(source, context)
            self._routes.extend((f, decoder) for f in source.filters)
        self.native_only = sources == NATIVE_ONLY
        self._by_topic: dict[str, FormatDecoder | None] = {}

    @property
    def filters(self) -> tuple[str, ...]:
        """Every topic filter to subscribe to."""
        return tuple(f for f, _ in self._routes)

    def decode(self, topic: str, payload: bytes, *, retained: bool, now_ms: int, out: BatchBuilder) -> None:
        """Decode one message into ``out`` with its format's decoder (without a sources file, callers
        use the native decoder directly: :attr:`native_only`)."""
        try:
            decoder = self._by_topic[topic]
        except KeyError:
            if len(self._by_topic) >= MAX_REMEMBERED:
                self._by_topic.clear()
            decoder = self._by_topic[topic] = next((d for f, d in self._routes if matches(f, topic)), None)
        if decoder is not None:
            if len(payload) > self._max_payload:  # every format under the native contract's limit
                detail = f"payload of {len(payload)} bytes is over the limit of {self._max_payload}"
                out.reject(Rejection(topic, Reason.TOO_LARGE, detail, payload))
                return
            try:
                decoder.decode(topic, payload, retained=retained, now_ms=now_ms, out=out)
            except Exception as exc:  # a decoder's bug must not stop the service: the message is refused, said
                log.exception("decoding a message on %s failed", topic)
                detail = f"ingest could not decode it ({type(exc).__name__}: {str(exc)[:200]}): a defect, reported"
                out.reject(Rejection(topic, Reason.BAD_SHAPE, detail, payload))
        elif not topic.startswith(DLQ_PREFIX):
            detail = "no source of the sources file takes this topic"
            out.reject(Rejection(topic, Reason.BAD_TOPIC, detail, payload))
