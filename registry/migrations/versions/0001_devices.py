"""The devices table and the revision counter.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("province", sa.String(64), nullable=False),
        sa.Column("district", sa.String(64), nullable=False),
        sa.Column("site", sa.String(32), nullable=False),
        sa.Column("crop", sa.String(32), nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("km_from_sea", sa.Float, nullable=False),
        sa.Column("coast", sa.String(8), nullable=False),
        sa.Column("faults", sa.String(128), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("dev_eui", sa.String(16), nullable=True, unique=True),
        sa.Column("tts_device_id", sa.String(128), nullable=True, unique=True),
        sa.Column("sparkplug", sa.String(128), nullable=True, unique=True),
        sa.Column("thingsboard", sa.String(128), nullable=True, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.create_index("devices_by_revision", "devices", ["revision"])
    op.create_index("devices_by_place", "devices", ["province", "district"])
    meta = op.create_table(
        "registry_meta",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(meta, [{"id": 1, "revision": 0}])


def downgrade() -> None:
    op.drop_table("registry_meta")
    op.drop_index("devices_by_place", "devices")
    op.drop_index("devices_by_revision", "devices")
    op.drop_table("devices")
