"""Index for the expiry scheduler: granted rows by expiry time.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_consent_state_expiring ON consent_state (expires_at) "
        "WHERE status = 'granted' AND expires_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_consent_state_expiring")
