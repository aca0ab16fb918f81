"""The transparency log over the ledger (issue 19): each entry's ``leaf_index`` (given
after commit by the single sequencer), the tree's complete subtrees, signed checkpoints;
the ledger and the log refuse TRUNCATE as well as UPDATE and DELETE.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

APPEND_ONLY = ("consent_ledger", "log_nodes", "log_checkpoints", "audit_log")


def upgrade() -> None:
    op.add_column("consent_ledger", sa.Column("leaf_index", sa.BigInteger(), nullable=True))
    op.create_index(
        "ux_ledger_leaf_index",
        "consent_ledger",
        ["leaf_index"],
        unique=True,
        postgresql_where=sa.text("leaf_index IS NOT NULL"),
    )
    op.create_index(
        "ix_ledger_unsequenced",
        "consent_ledger",
        ["recorded_at", "subject_id", "sequence"],
        postgresql_where=sa.text("leaf_index IS NULL"),
    )
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("tree_size", sa.BigInteger(), primary_key=True),
        sa.Column("root_hash", sa.String(), nullable=False),
        sa.Column("issued_at", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("signature", sa.String(), nullable=False),
    )
    # The ledger stays append-only; the one update allowed is the sequencer's: setting a
    # NULL leaf_index, every other column unchanged.
    op.execute("""
        CREATE OR REPLACE FUNCTION consent_ledger_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL
               AND (to_jsonb(NEW) - 'leaf_index') = (to_jsonb(OLD) - 'leaf_index') THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'consent_ledger is append-only';
        END $$
    """)
    op.execute("""
        CREATE FUNCTION log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$
    """)
    for table in ("log_nodes", "log_checkpoints"):
        op.execute(f"""
            CREATE TRIGGER {table}_no_update BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION log_append_only()
        """)
    # row triggers do not see TRUNCATE: a statement-level guard does
    for table in APPEND_ONLY:
        op.execute(f"""
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION log_append_only()
        """)


def downgrade() -> None:
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.drop_table("log_checkpoints")
    op.drop_table("log_nodes")
    op.execute("DROP FUNCTION IF EXISTS log_append_only()")
    op.execute("""
        CREATE OR REPLACE FUNCTION consent_ledger_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'consent_ledger is append-only'; END $$
    """)
    op.drop_index("ix_ledger_unsequenced", table_name="consent_ledger")
    op.drop_index("ux_ledger_leaf_index", table_name="consent_ledger")
    op.drop_column("consent_ledger", "leaf_index")
