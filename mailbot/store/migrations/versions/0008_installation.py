"""installation: when the daemon first started (mail from before is history, not answered)

A database the daemon has already worked on (it has folder states) gets its first start from
its first mail, so that an upgrade does not take the mail that came during the upgrade for
history.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 21:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('installation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('first_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # The values come from columns of the same type, so they are stored as the models store them.
    op.execute("INSERT INTO installation (id, first_started_at) "
               "SELECT 1, COALESCE((SELECT MIN(received_at) FROM message), MIN(last_contact)) FROM folder_state "
               "HAVING COUNT(*) > 0 AND COALESCE((SELECT MIN(received_at) FROM message), MIN(last_contact)) IS NOT NULL")


def downgrade() -> None:
    op.drop_table('installation')
