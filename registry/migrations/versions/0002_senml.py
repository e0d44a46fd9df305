"""A SenML base name among a device's external ids.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("senml", sa.String(128), nullable=True))
    op.create_index("devices_by_senml", "devices", ["senml"], unique=True)  # SQLite adds no UNIQUE column


def downgrade() -> None:
    op.drop_index("devices_by_senml", "devices")
    op.drop_column("devices", "senml")
