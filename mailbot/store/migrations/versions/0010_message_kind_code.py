"""message kind code: which test gave a mail its kind (mail/kinds.py KindCode), so that what
is shown of it (the digest's reasons, in each team's language) is decided on the code, never on
the kind's text for people

Revision ID: 0010
Revises: 0009
Create Date: 2027-01-20 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind_code', sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_column('kind_code')
