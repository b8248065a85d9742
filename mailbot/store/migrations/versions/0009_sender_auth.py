"""sender authentication on each message: whether the receiving server (or the Sent folder it
was found in) vouches for its From address, and why, so that staff see why a mail changed nothing

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-04 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sender_auth', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('sender_authenticated', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('sender_auth_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_column('sender_auth_reason')
        batch_op.drop_column('sender_authenticated')
        batch_op.drop_column('sender_auth')
