"""The consent service's own read model of propagation: what the propagator reports on
``consent.receipts.v1`` (one row per live delivery, the sequence each processor last
acknowledged per subject), and how far that topic has been projected.

``GET /v1/subjects/{id}/propagation`` and the erasure receipts read these tables; the
consent service no longer reads the propagator's.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "propagation_receipts",
        sa.Column("delivery_id", sa.Uuid(), primary_key=True),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("subject_id", sa.String(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("processor", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "projected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_propagation_receipts_subject",
        "propagation_receipts",
        ["subject_id", "processor", "sequence"],
    )
    op.create_index("ix_propagation_receipts_event", "propagation_receipts", ["event_id"])
    op.create_table(
        "processor_acks",
        sa.Column("processor", sa.String(), primary_key=True),
        sa.Column("subject_id", sa.String(), primary_key=True),
        sa.Column("last_delivered_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_event_id", sa.String(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "receipt_offsets",
        sa.Column("topic", sa.String(), primary_key=True),
        sa.Column("partition", sa.Integer(), primary_key=True),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
    )
    # audit entries of the propagator's actions arrive by event: one row per entry, however
    # often the event is read again
    op.add_column("audit_log", sa.Column("source_id", sa.String(), nullable=True))
    op.create_index("uq_audit_log_source_id", "audit_log", ["source_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_audit_log_source_id", table_name="audit_log")
    op.drop_column("audit_log", "source_id")
    op.drop_table("receipt_offsets")
    op.drop_table("processor_acks")
    op.drop_table("propagation_receipts")
