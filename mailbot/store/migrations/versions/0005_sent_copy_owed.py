"""sent copy owed: an outbox mail sent while the sent folder's server failed keeps a flag until
its copy is appended (before, the copy was only logged as missing and never tried again)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('copy_owed', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index('ix_outbox_copy_owed', ['copy_owed'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_copy_owed')
        batch_op.drop_column('copy_owed')
