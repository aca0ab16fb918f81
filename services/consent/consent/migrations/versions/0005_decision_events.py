"""decision events: what each subject was last told, age tracking, re-consent rollout,
parked records

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the decisions the subject's last event carried (NULL: written before this column)
    op.add_column("subjects", sa.Column("decisions", postgresql.JSONB(), nullable=True))
    # the age status recorded with the last event, and when it may next change
    op.add_column("subjects", sa.Column("age_status", sa.String(), nullable=True))
    op.add_column("subjects", sa.Column("age_check_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_subjects_age_check",
        "subjects",
        ["age_check_at", "subject_id"],
        postgresql_where=sa.text("age_check_at IS NOT NULL"),
    )
    # subjects with a birth date get their age status looked at once by the scheduler
    op.execute(
        "UPDATE subjects SET age_check_at = now() "
        "WHERE birth_date IS NOT NULL AND erased_at IS NULL"
    )
    # when the scheduler finished announcing a material version's re-consent
    op.add_column(
        "policy_versions",
        sa.Column("reconsent_done_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute("UPDATE policy_versions SET reconsent_done_at = now() WHERE NOT material")
    op.create_index(
        "ix_consent_state_granted",
        "consent_state",
        ["purpose", "subject_id"],
        postgresql_where=sa.text("status = 'granted'"),
    )
    # an outbox row the relay cannot publish holds back only its own subject
    op.add_column("outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("last_error", sa.String(), nullable=True))
    op.create_index(
        "ix_outbox_parked",
        "outbox",
        ["aggregateid"],
        postgresql_where=sa.text("parked_at IS NOT NULL AND published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_parked", table_name="outbox")
    op.drop_column("outbox", "last_error")
    op.drop_column("outbox", "parked_at")
    op.drop_index("ix_consent_state_granted", table_name="consent_state")
    op.drop_column("policy_versions", "reconsent_done_at")
    op.drop_index("ix_subjects_age_check", table_name="subjects")
    op.drop_column("subjects", "age_check_at")
    op.drop_column("subjects", "age_status")
    op.drop_column("subjects", "decisions")
