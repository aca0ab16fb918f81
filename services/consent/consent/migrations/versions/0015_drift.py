"""The drift report: what each processor holds, and what the last check found.

``processor_acks`` keeps the decisions each processor last acknowledged (its purposes, from
the receipts; ``event_type`` tells an erasure, which carries none). ``drift_findings`` holds
the differences the scheduled check found (``consent_drift`` in /metrics counts them, and a
difference keeps the time it was first seen); ``drift_scan`` is where the check is in its pass.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("processor_acks", sa.Column("decisions", postgresql.JSONB(), nullable=True))
    op.add_column("processor_acks", sa.Column("event_type", sa.String(), nullable=True))
    op.create_table(
        "drift_findings",
        sa.Column("processor", sa.String(), primary_key=True),
        sa.Column("subject_id", sa.String(), primary_key=True),
        sa.Column("purpose", sa.String(), primary_key=True),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_drift_findings_subject", "drift_findings", ["subject_id"])
    op.create_table(
        "drift_scan",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("cursor", sa.String(), nullable=False, server_default=""),
        sa.Column("pass_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_pass_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_pass_subjects", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.execute("INSERT INTO drift_scan (id, cursor) VALUES (1, '')")


def downgrade() -> None:
    op.drop_table("drift_scan")
    op.drop_index("ix_drift_findings_subject", table_name="drift_findings")
    op.drop_table("drift_findings")
    op.drop_column("processor_acks", "event_type")
    op.drop_column("processor_acks", "decisions")
