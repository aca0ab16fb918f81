"""Receipts carry what the processor was sent: ``decisions`` (its purposes only; absent for
an erasure) and ``repair``, so the consent service knows what each processor holds (the
drift report) without reading this service's tables.

The last acknowledged delivery of every (processor, subject) is queued once more here, so
the consent service's read model learns the decisions already held on an upgraded install.

Revision ID: p0005
Revises: p0004
Create Date: 2026-12-04
"""

from alembic import op

revision = "p0005"
down_revision = "p0004"
branch_labels = None
depends_on = None

RECEIPT = """
jsonb_build_object(
    'delivery_id', d.id, 'event_id', d.event_id, 'event_type', d.event_type,
    'subject_id', d.subject_id, 'sequence', d.sequence, 'processor', d.processor,
    'status', d.status, 'attempts', d.attempts, 'last_error', d.last_error,
    'response_code', d.response_code, 'replay', d.replay, 'created_at', d.created_at,
    'updated_at', d.updated_at, 'delivered_at', d.delivered_at"""
NEW_FIELDS = """,
    'decisions', d.payload->'decisions',
    'repair', coalesce((d.payload->>'repair')::boolean, false))
"""
RECEIPT += NEW_FIELDS


def _function(receipt: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION propagator.queue_delivery_receipt() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE d propagator.deliveries := NEW;
        BEGIN
            INSERT INTO propagator.propagator_outbox (kind, key, type, payload, sequence)
            VALUES ('receipt', d.subject_id, 'delivery.receipt', {receipt}, d.sequence);
            PERFORM pg_notify('propagator_outbox', '');
            RETURN NULL;
        END $$"""


def upgrade() -> None:
    op.execute(_function(RECEIPT))
    op.execute(f"""
        INSERT INTO propagator.propagator_outbox (kind, key, type, payload, sequence)
        SELECT 'receipt', d.subject_id, 'delivery.receipt', {RECEIPT}, d.sequence
        FROM propagator.deliveries d
        JOIN propagator.processor_receipts r ON r.processor = d.processor
            AND r.subject_id = d.subject_id AND r.last_event_id = d.event_id
        WHERE d.status = 'delivered'
        ORDER BY d.delivered_at""")


def downgrade() -> None:
    op.execute(_function(RECEIPT.replace(NEW_FIELDS, ")")))
