"""The propagator's own outbox: dead letters, delivery receipts and audit entries, published
by the propagator itself (it no longer writes the consent service's ``outbox`` or
``audit_log``).

Every change of a delivery that ``/propagation`` or an erasure receipt shows (created, an
outcome recorded, a status change) queues a ``delivery.receipt`` by trigger, in the same
transaction, so no code path can forget one. Replayed deliveries queue one only when
delivered (the acknowledged sequence). Existing deliveries that a receipt view shows (the
newest per subject and processor, erasures, the last acknowledged) are queued once here, so the consent service's
read model starts complete on an upgraded install.

Revision ID: p0002
Revises: p0001
Create Date: 2026-11-29
"""

from alembic import op

revision = "p0002"
down_revision = "p0001"
branch_labels = None
depends_on = None

RECEIPT = """
jsonb_build_object(
    'delivery_id', d.id, 'event_id', d.event_id, 'event_type', d.event_type,
    'subject_id', d.subject_id, 'sequence', d.sequence, 'processor', d.processor,
    'status', d.status, 'attempts', d.attempts, 'last_error', d.last_error,
    'response_code', d.response_code, 'replay', d.replay, 'created_at', d.created_at,
    'updated_at', d.updated_at, 'delivered_at', d.delivered_at)
"""


def upgrade() -> None:
    op.execute("""
        CREATE TABLE propagator.propagator_outbox (
            position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            kind text NOT NULL,              -- deadletter | receipt | audit
            key text NOT NULL,
            type text NOT NULL,
            payload jsonb NOT NULL,
            sequence bigint,
            occurred_at timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz
        )""")
    op.execute(
        "CREATE INDEX ix_propagator_outbox_unpublished ON propagator.propagator_outbox "
        "(position) WHERE published_at IS NULL"
    )
    op.execute(f"""
        CREATE FUNCTION propagator.queue_delivery_receipt() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE d propagator.deliveries := NEW;
        BEGIN
            INSERT INTO propagator.propagator_outbox (kind, key, type, payload, sequence)
            VALUES ('receipt', d.subject_id, 'delivery.receipt', {RECEIPT}, d.sequence);
            PERFORM pg_notify('propagator_outbox', '');
            RETURN NULL;
        END $$""")
    op.execute("""
        CREATE TRIGGER deliveries_receipt_insert AFTER INSERT ON propagator.deliveries
        FOR EACH ROW WHEN (NOT NEW.replay)
        EXECUTE FUNCTION propagator.queue_delivery_receipt()""")
    op.execute("""
        CREATE TRIGGER deliveries_receipt_update AFTER UPDATE ON propagator.deliveries
        FOR EACH ROW WHEN (
            (OLD.status IS DISTINCT FROM NEW.status AND (NOT NEW.replay OR NEW.status = 'delivered'))
            OR (NOT NEW.replay AND (OLD.last_error IS DISTINCT FROM NEW.last_error
                                    OR OLD.next_attempt_at IS DISTINCT FROM NEW.next_attempt_at)))
        EXECUTE FUNCTION propagator.queue_delivery_receipt()""")
    op.execute(f"""
        INSERT INTO propagator.propagator_outbox (kind, key, type, payload, sequence)
        SELECT 'receipt', d.subject_id, 'delivery.receipt', {RECEIPT}, d.sequence
        FROM propagator.deliveries d
        WHERE d.event_type = 'subject.erasure_requested' OR d.id IN (
            SELECT DISTINCT ON (processor, subject_id) id FROM propagator.deliveries
            WHERE NOT replay ORDER BY processor, subject_id, sequence DESC, created_at DESC)
        OR (d.processor, d.subject_id, d.event_id) IN (  -- what each processor acknowledged
            SELECT processor, subject_id, last_event_id FROM propagator.processor_receipts)
        ORDER BY d.created_at""")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS deliveries_receipt_update ON propagator.deliveries")
    op.execute("DROP TRIGGER IF EXISTS deliveries_receipt_insert ON propagator.deliveries")
    op.execute("DROP FUNCTION IF EXISTS propagator.queue_delivery_receipt()")
    op.execute("DROP TABLE IF EXISTS propagator.propagator_outbox")
