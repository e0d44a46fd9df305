"""What every format's decoder is given and what it must offer (the router builds one per source).

A decoder class takes ``(source, context)``: its entry of the sources file and the shared parts
(the registry, the model mapping, the counter of messages that carry no reading). Its
:meth:`FormatDecoder.decode` adds readings, status reports, refusals and commands to the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ingest.batch import BatchBuilder
from ingest.registry import Registry
from ingest.sources.config import Source
from ingest.sources.mapping import FieldMapper

Ignore = Callable[[str], None]
"""Count a message that is not a reading (its event name)."""


class FormatDecoder(Protocol):
    def decode(self, topic: str, payload: bytes, *, retained: bool, now_ms: int, out: BatchBuilder) -> None: ...


@dataclass(frozen=True, slots=True)
class SourceContext:
    """The parts every decoder shares."""

    registry: Registry
    mapper: FieldMapper
    ignore: Ignore


DecoderClass = Callable[[Source, SourceContext], FormatDecoder]
