"""Every commit that changes what a decision is computed from notifies the API workers'
in-process views (``consent_changes``), from the write transaction itself: a trigger, so no
writer (API replica, scheduler, ``consentctl``, an import) can forget to.

Payloads: ``s|<sequence>|<epoch µs of the write statement>|<subject_id>`` (a subject's head, its recorded
statuses, guardian links, aliases; sequence -1 when the change does not take a new one),
``k`` (API
keys), ``p`` (policy versions). PostgreSQL delivers them only after the commit, and folds
identical payloads of one transaction into one.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SUBJECT_TABLES = {
    # table: (subject column, sequence expression or NULL)
    "subjects": ("subject_id", "sequence"),
    "consent_state": ("subject_id", "sequence"),
    "guardian_links": ("subject_id", None),
    "subject_aliases": ("alias_id", None),
}


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION consent_notify_subject() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            rec record := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
            sid text := to_jsonb(rec) ->> TG_ARGV[0];
            seq text := CASE WHEN TG_OP = 'DELETE' OR TG_ARGV[1] = '' THEN '-1'
                             ELSE to_jsonb(rec) ->> TG_ARGV[1] END;
        BEGIN
            -- a change that takes no new sequence (an operator's fix, a cleared birth date)
            -- cannot be told apart by its sequence: "unknown", so it always invalidates
            IF TG_OP = 'UPDATE' AND seq <> '-1'
               AND (to_jsonb(OLD) ->> TG_ARGV[1]) = (to_jsonb(NEW) ->> TG_ARGV[1]) THEN
                seq := '-1';
            END IF;
            PERFORM pg_notify('consent_changes', 's|' || seq || '|'
                || floor(extract(epoch FROM statement_timestamp()) * 1000000)::bigint || '|' || sid);
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE FUNCTION consent_notify_table() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('consent_changes', TG_ARGV[0]); RETURN NULL; END $$
    """)
    for table, (column, sequence) in SUBJECT_TABLES.items():
        op.execute(
            f"CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION consent_notify_subject('{column}', '{sequence or ''}')"
        )
    for table, tag in (("api_keys", "k"), ("policy_versions", "p")):
        op.execute(
            f"CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION consent_notify_table('{tag}')"
        )


def downgrade() -> None:
    for table in (*SUBJECT_TABLES, "api_keys", "policy_versions"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify ON {table}")
    op.execute("DROP FUNCTION IF EXISTS consent_notify_subject()")
    op.execute("DROP FUNCTION IF EXISTS consent_notify_table()")
