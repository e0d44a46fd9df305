"""The real-payload corpus the sources' tests read in place: ``../shared/realworld`` beside the
project (CI has it), or where ``IOC_REALWORLD`` says; a clone without it skips those tests.

Shared by the sources' unit and corpus tests: where the corpus is, the skip marker, its manifest's
entries, an ingest service with a sources file, and waiting for and reading back what was stored.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from contract.fleet import Device, DeviceTags, ExternalIds, Fleet
from ingest.config import IngestSettings
from ingest.service import IngestService
from ingest.sources.config import SourcesFile
from storage.influxql import query
from tests.helpers import IngestThread, LoopThread

CORPUS = Path(os.environ.get("IOC_REALWORLD") or Path(__file__).resolve().parents[2] / "shared" / "realworld")
"""The corpus beside the project (``../shared/realworld``), or where ``IOC_REALWORLD`` says."""


def corpus_device(device_id: str, kind: str, model: str, *, site: str = "field", **ids: str) -> Device:
    """A Bến Tre device of ``kind`` read with ``model``, known by the external ``ids`` its format names."""
    return Device(
        id=device_id, kind=kind, province="ben_tre", district="ba_tri", site=site, lat=10.04, lon=106.6,
        model=model, external_ids=ExternalIds(**ids),
    )  # fmt: skip


def needs_corpus(marker: str = "manifest.json") -> pytest.MarkDecorator:
    """Skip unless the corpus is there (``marker``, a file or folder of it, is):
    ``pytestmark = needs_corpus()`` for a module, ``@needs_corpus()`` for a test."""
    return pytest.mark.skipif(
        not (CORPUS / marker).exists(),
        reason=f"the real-payload corpus is not at {CORPUS} (CI has it; IOC_REALWORLD=DIR points elsewhere)",
    )


def manifest(*formats: str) -> list[dict[str, Any]]:
    """The manifest's entries (``file``, ``format``, ``topic``, ``carries``…) of these formats, in its order."""
    entries: list[dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))["entries"]
    return [e for e in entries if e["format"] in formats]


class SourcesIngest(IngestThread):
    """The ingest service with a sources file, on its own event loop in a thread."""

    def __init__(self, settings: IngestSettings, fleet: Fleet | Sequence[DeviceTags], sources: SourcesFile) -> None:
        self.service = IngestService(settings, fleet, sources=sources)
        LoopThread.__init__(self, self.service.run)


def wait_until(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    """Whether ``predicate`` came true within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def rows(url: str, db: str, influxql: str) -> list[dict[str, Any]]:
    """Every row an InfluxQL query returns, as {column: value}, series after series."""
    return [dict(zip(s["columns"], v, strict=True)) for s in query(url, influxql, db=db) for v in s["values"]]
