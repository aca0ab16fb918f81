"""anonymous subjects merged into a person (issue 21)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_aliases",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("alias_id", sa.String(length=128), nullable=False),
        sa.Column("subject_id", sa.String(length=128), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("person_sequence", sa.BigInteger(), nullable=False),
        sa.Column("alias_sequence", sa.BigInteger(), nullable=False),
        sa.Column("replaced", postgresql.JSONB(), nullable=True),
        sa.Column("unlinked_at", sa.DateTime(timezone=True), nullable=True),
    )
    # one standing link per anonymous id; ended links stay as history
    op.create_index(
        "ux_alias_active",
        "subject_aliases",
        ["alias_id"],
        unique=True,
        postgresql_where=sa.text("unlinked_at IS NULL"),
    )
    op.create_index("ix_alias_person", "subject_aliases", ["subject_id"])


def downgrade() -> None:
    op.drop_index("ix_alias_person", table_name="subject_aliases")
    op.drop_index("ux_alias_active", table_name="subject_aliases")
    op.drop_table("subject_aliases")
