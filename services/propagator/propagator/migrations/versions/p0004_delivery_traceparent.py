"""The W3C ``traceparent`` of the intake span on each delivery, so every webhook attempt
continues the trace of the change it delivers (OpenTelemetry, when tracing is on).

Revision ID: p0004
Revises: p0003
Create Date: 2026-12-04
"""

from alembic import op

revision = "p0004"
down_revision = "p0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE propagator.deliveries ADD COLUMN IF NOT EXISTS traceparent text")


def downgrade() -> None:
    op.execute("ALTER TABLE propagator.deliveries DROP COLUMN IF EXISTS traceparent")
