"""indexes for scale: recent mail for the digest, the outbox's last 24 hours and each dossier's
answers of one purpose (the RFC 3834 limits, the reminders)

Without them, at 10,000 dossiers each answer's limit check scanned the whole outbox (SQLite
took the index on `purpose` alone, or none), and the digest walked every sighting of a mailbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 06:00:00.000000
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index('ix_message_received_at', ['received_at'], unique=False)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_outbox_dossier_purpose', ['dossier_id', 'purpose', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_dossier_purpose')
        batch_op.drop_index('ix_outbox_created_at')

    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_received_at')
