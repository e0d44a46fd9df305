"""Fleet files in and out of the registry: the YAML fleet (``version: 1, devices: [...]``) and CSV.

Both are read row by row, so a bad file is answered with every bad row at once (row number, device
id, field and reason) and nothing half-read. CSV columns are the device's fields; ``faults`` is a
``;``-separated list and the external ids are columns of their own (``dev_eui``, ``tts_device_id``,
``sparkplug``, ``thingsboard``). Blank cells take the field's default.
"""

from __future__ import annotations

import csv
import gc
import io
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import yaml
from pydantic import ValidationError

from contract.fleet import Device, DeviceTags, ExternalIds, Fleet, fleet_yaml
from contract.yamltext import safe_load
from registry.errors import ImportRefused, RegistryError

FileFormat = Literal["yaml", "csv"]
EXTERNAL_ID_COLUMNS: Final = tuple(ExternalIds.model_fields)
CSV_COLUMNS: Final = (
    *(name for name in Device.model_fields if name != "external_ids"),
    *EXTERNAL_ID_COLUMNS,
)
REQUIRED_COLUMNS: Final = tuple(n for n, f in Device.model_fields.items() if f.is_required())


def format_of(path: Path) -> FileFormat:
    """``yaml`` or ``csv`` from the file's suffix; :class:`RegistryError` for anything else."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".csv":
        return "csv"
    raise RegistryError(f"{path}: a fleet file ends in .yaml, .yml or .csv")


@dataclass(frozen=True)
class _Unreadable:
    """A row that cannot even be validated; ``reason`` says why."""

    raw: dict[str, Any]
    reason: str


def _who(row: int, raw: Any) -> str:
    return f"row {row}" + (f" ({raw.get('id')!r})" if isinstance(raw, dict) and raw.get("id") else "")


def _problem(row: int, raw: Any, exc: ValidationError) -> list[str]:
    who = _who(row, raw)
    return [f"{who}: {'.'.join(str(p) for p in e['loc']) or 'device'}: {e['msg']}" for e in exc.errors()]


def _validate_rows(rows: Iterable[tuple[int, Any]], source: str) -> list[Device]:
    devices: list[Device] = []
    problems: list[str] = []
    for number, raw in rows:
        if isinstance(raw, _Unreadable):
            problems.append(f"{_who(number, raw.raw)}: {raw.reason}")
            continue
        try:
            devices.append(Device.model_validate(raw))
        except ValidationError as exc:
            problems.extend(_problem(number, raw, exc))
    if problems:
        raise ImportRefused(source, problems)
    return devices


def parse_yaml(text: str, source: str) -> list[Device]:
    """Devices of a YAML fleet (``{version: 1, devices: [...]}``, or a bare list of devices)."""
    try:
        raw = safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{source}: not valid YAML ({exc})") from None
    if isinstance(raw, dict):
        if raw.get("version", 1) != 1:
            raise RegistryError(f"{source}: fleet version {raw.get('version')!r}; this version reads version 1")
        unknown = set(raw) - {"version", "devices"}
        if unknown:
            raise RegistryError(
                f"{source}: unknown top-level key(s) {sorted(unknown)}; a fleet has version and devices"
            )
        raw = raw.get("devices")
    if not isinstance(raw, list):
        raise RegistryError(f"{source}: a fleet file holds a list of devices under 'devices'")
    return _validate_rows(enumerate(raw, start=1), source)


def _csv_row(row: dict[str | Any, str | Any], columns: int) -> dict[str, Any] | _Unreadable:
    extra = row.pop(None, None)  # csv.DictReader's place for cells beyond the header's columns
    if extra:  # a shifted row: none of its cells can be trusted
        return _Unreadable(row, f"{len(extra)} cell(s) more than the {columns} columns")
    out: dict[str, Any] = {}
    ids: dict[str, str] = {}
    for key, value in row.items():
        value = (value or "").strip()
        if not value:
            continue
        if key in EXTERNAL_ID_COLUMNS:
            ids[key] = value
        elif key == "faults":
            out[key] = [f.strip() for f in value.split(";") if f.strip()]
        else:
            out[key] = value
    if ids:
        out["external_ids"] = ids
    return out


def parse_csv(text: str, source: str) -> list[Device]:
    """Devices of a CSV fleet with a header row (see the module docstring for the columns)."""
    try:
        return _parse_csv(csv.DictReader(io.StringIO(text)), source)
    except csv.Error as exc:  # e.g. a cell over the csv module's field size limit
        raise RegistryError(f"{source}: not readable as CSV ({exc})") from None


def _parse_csv(reader: csv.DictReader[str], source: str) -> list[Device]:
    header = list(reader.fieldnames or [])
    unknown = [c for c in header if c not in CSV_COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if unknown or missing or repeated:
        parts = []
        if unknown:
            parts.append(f"unknown column(s) {unknown}")
        if missing:
            parts.append(f"missing column(s) {missing}")
        if repeated:
            parts.append(f"repeated column(s) {repeated}")
        raise RegistryError(f"{source}: {'; '.join(parts)} (columns: {', '.join(CSV_COLUMNS)})")
    rows = [(number, _csv_row(row, len(header))) for number, row in enumerate(reader, start=2)]  # 1: header
    return _validate_rows(rows, source)


def parse(text: str, fmt: FileFormat, source: str) -> list[Device]:
    return parse_yaml(text, source) if fmt == "yaml" else parse_csv(text, source)


def read_devices(path: Path) -> list[Device]:
    """The devices of a YAML or CSV fleet file; :class:`RegistryError` naming the file and rows."""
    fmt = format_of(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read the fleet file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: the fleet file is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return parse(text, fmt, str(path))


def repeated_ids(devices: Sequence[Device]) -> list[str]:
    """Each row that gives a device id an earlier row gave (an import takes each device once)."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, d in enumerate(devices, start=1):
        if d.id in seen:
            problems.append(f"row {i}: device {d.id!r} appears again (first at row {seen[d.id]})")
        seen.setdefault(d.id, i)
    return problems


def claimed_twice(row: int, column: str, value: str, first: tuple[str, int]) -> str:
    """The refusal of a row giving external id ``column`` ``value`` that ``first`` (device id, row) was given."""
    return f"row {row}: {column} {value!r} is given to device {first[0]!r} too (row {first[1]})"


def fleet_tags(path: Path) -> list[DeviceTags]:
    """The devices of a fleet file as ingest takes them, by id: what importing the file into an empty
    registry and reading it back gives (:meth:`~registry.store.DeviceRegistry.import_devices`, whose
    refusals these are), without a database. The tags' repeated texts are shared (``sys.intern``), as
    the registry's reads share them.

    Raises :class:`RegistryError`: the file cannot be read or parsed; :class:`ImportRefused`: rows repeat
    a device id, or give an external id another row gave (each row named).
    """
    # Copied out: what survives the parse would pin the memory of the YAML nodes it freed (about
    # 15 MiB for 1,000 devices), which Python gives back only once nothing of the parse is left in it.
    parsed = _parsed_tags(path)
    gc.collect()  # the parse's reference cycles too
    tags = _TAGS_DECODER.decode(parsed)
    n = sys.intern
    return [
        t._replace(province=n(t.province), district=n(t.district), site=n(t.site), crop=n(t.crop),
                   state=n(t.state), model=n(t.model))
        for t in tags
    ]  # fmt: skip


def _parsed_tags(path: Path) -> bytes:
    """:func:`fleet_tags`, by id, encoded (MessagePack) before the parse's objects are let go."""
    devices = read_devices(path)
    problems = repeated_ids(devices)
    claimed: dict[tuple[str, str], tuple[str, int]] = {}  # (column, value) → (device id, row)
    for i, d in enumerate(devices, start=1):
        for col in EXTERNAL_ID_COLUMNS:
            value = getattr(d.external_ids, col)
            if value is None:
                continue
            other = claimed.setdefault((col, value), (d.id, i))
            if other[0] != d.id:
                problems.append(claimed_twice(i, col, value, other))
    if problems:
        raise ImportRefused(str(path), problems)
    return _TAGS_ENCODER.encode(sorted((d.tags() for d in devices), key=lambda t: t.id))


_TAGS_ENCODER: Final = msgspec.msgpack.Encoder()
_TAGS_DECODER: Final = msgspec.msgpack.Decoder(list[DeviceTags])


def render_csv(devices: Sequence[Device]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for d in devices:
        row = d.model_dump(mode="json", exclude={"external_ids"})
        row["faults"] = ";".join(d.faults)
        row.update({k: getattr(d.external_ids, k) or "" for k in EXTERNAL_ID_COLUMNS})
        writer.writerow(row)
    return out.getvalue()


def render_yaml(devices: Sequence[Device]) -> str:
    return fleet_yaml(Fleet(devices=tuple(devices)))


def write_devices(devices: Sequence[Device], path: Path) -> None:
    """Write ``devices`` as a YAML or CSV fleet file, by the path's suffix."""
    text = render_yaml(devices) if format_of(path) == "yaml" else render_csv(devices)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
