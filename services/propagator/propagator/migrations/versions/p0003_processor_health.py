"""Processor health: how long each processor has been failing, and whether it is disabled.

One row per processor, shared by every propagator replica: a processor that fails without a
single success for ``disable_after_s`` is disabled (no more attempts, its deliveries kept)
until an operator enables it again (``consentctl processors enable``).

Revision ID: p0003
Revises: p0002
Create Date: 2026-12-04
"""

from alembic import op

revision = "p0003"
down_revision = "p0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE propagator.processor_health (
            processor text PRIMARY KEY,
            failing_since timestamptz,
            last_success_at timestamptz,
            last_failure_at timestamptz,
            last_error text,
            disabled_at timestamptz,
            disabled_reason text,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS propagator.processor_health")
