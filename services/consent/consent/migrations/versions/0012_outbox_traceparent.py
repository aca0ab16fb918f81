"""The request's W3C ``traceparent`` on each outbox row, for the relay to continue the trace
(OpenTelemetry, when tracing is on; NULL otherwise).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("traceparent", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "traceparent")
