"""The propagator's own schema: deliveries, receipts, inbox, parked records.

Before issue 16 the consent service's migrations created these tables in ``public``. On such
an install they are moved, data and all (``ALTER TABLE … SET SCHEMA`` keeps rows, indexes,
constraints and identity sequences); on a new install they are created here.

Revision ID: p0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "p0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "propagator"
TABLES = ("deliveries", "processor_receipts", "propagator_inbox", "parked_records")


def upgrade() -> None:
    bind = op.get_bind()
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    moved = set()
    for table in TABLES:
        legacy = bind.execute(sa.text("SELECT to_regclass(:n)"), {"n": f"public.{table}"})
        mine = bind.execute(sa.text("SELECT to_regclass(:n)"), {"n": f"{SCHEMA}.{table}"})
        if legacy.scalar() is not None and mine.scalar() is None:
            op.execute(f"ALTER TABLE public.{table} SET SCHEMA {SCHEMA}")
            moved.add(table)
    # unqualified names below are created in the propagator's schema
    op.execute(f"SET LOCAL search_path TO {SCHEMA}")
    for table, create in (
        ("deliveries", _create_deliveries),
        ("processor_receipts", _create_processor_receipts),
        ("propagator_inbox", _create_propagator_inbox),
        ("parked_records", _create_parked_records),
    ):
        exists = bind.execute(sa.text("SELECT to_regclass(:n)"), {"n": f"{SCHEMA}.{table}"})
        if table not in moved and exists.scalar() is None:
            create()


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")


def _create_deliveries() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("subject_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("processor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("replay", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "processor", name="uq_delivery_event_processor"),
    )
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["processor", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_deliveries_status", "deliveries", ["status", "processor", "created_at"], unique=False
    )
    op.create_index(
        "ix_deliveries_subject", "deliveries", ["processor", "subject_id", "sequence"], unique=False
    )


def _create_processor_receipts() -> None:
    op.create_table(
        "processor_receipts",
        sa.Column("processor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("subject_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("last_delivered_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_event_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("processor", "subject_id"),
    )


def _create_propagator_inbox() -> None:
    op.create_table(
        "propagator_inbox",
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("event_id"),
    )


def _create_parked_records() -> None:
    # records the propagator's intake could not use (owned by the propagator)
    op.create_table(
        "parked_records",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("headers", postgresql.JSONB(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column(
            "parked_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retry_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_parked_position"),
    )
    op.create_index(
        "ix_parked_retry",
        "parked_records",
        ["retry_requested_at"],
        postgresql_where=sa.text("retry_requested_at IS NOT NULL"),
    )
