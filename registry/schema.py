"""The registry's tables (SQLAlchemy Core), shared by the store and the migrations.

``devices`` holds one row per device ever registered (a decommissioned one stays, so its id is
never reused by mistake); ``registry_meta`` holds the revision counter that every write bumps and
stamps on the rows it changed.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table

metadata = MetaData()

devices = Table(
    "devices",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("province", String(64), nullable=False),
    Column("district", String(64), nullable=False),
    Column("site", String(32), nullable=False),
    Column("crop", String(32), nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("km_from_sea", Float, nullable=False),
    Column("coast", String(8), nullable=False),
    Column("faults", String(128), nullable=False),
    Column("model", String(64), nullable=False),
    Column("dev_eui", String(16), nullable=True, unique=True),
    Column("tts_device_id", String(128), nullable=True, unique=True),
    Column("sparkplug", String(128), nullable=True, unique=True),
    Column("thingsboard", String(128), nullable=True, unique=True),
    Column("senml", String(128), nullable=True),
    Column("state", String(16), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Index("devices_by_revision", "revision"),
    Index("devices_by_place", "province", "district"),
    Index("devices_by_senml", "senml", unique=True),
)

registry_meta = Table(
    "registry_meta",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", BigInteger, nullable=False),
)
