"""Replays restricted to processors go through the outbox to the private topic
``consent.replays.v1``: the processors they are for.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("targets", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "targets")
