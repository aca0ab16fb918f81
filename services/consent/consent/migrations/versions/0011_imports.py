"""Bulk imports: the jobs (resumable, with their report) and the idempotency key of every
imported row, so a re-run imports nothing twice.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-04
"""

from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE import_jobs (
            id uuid PRIMARY KEY,
            status text NOT NULL,                -- running | completed | failed
            format text NOT NULL,                -- jsonl | csv
            mapping text,                        -- onetrust | didomi | unsubscribe | NULL
            purpose_map jsonb NOT NULL DEFAULT '{}',
            source_sha256 text NOT NULL,
            payload bytea,                       -- uploads only: any replica can resume
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz,
            finished_at timestamptz,
            cursor text,                         -- last subject done (subjects in id order)
            counts jsonb NOT NULL DEFAULT '{}',
            rejected jsonb NOT NULL DEFAULT '[]',  -- the first rejected rows, for the report
            error text
        )
    """)
    op.execute("""
        CREATE TABLE import_keys (
            idempotency_key text PRIMARY KEY,
            job_id uuid NOT NULL,
            subject_id text NOT NULL,
            sequence bigint,                     -- the change it was part of (NULL: skipped)
            imported_at timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("CREATE INDEX ix_import_keys_subject ON import_keys (subject_id)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS import_keys")
    op.execute("DROP TABLE IF EXISTS import_jobs")
