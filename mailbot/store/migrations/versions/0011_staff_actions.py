"""staff actions: what a person did on the staff page, with who and when; the quarantine's index

Revision ID: 0011
Revises: 0010
Create Date: 2027-02-01 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff_action',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('who', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('dossier_id', sa.Integer(), nullable=True),
    sa.Column('message_pk', sa.Integer(), nullable=True),
    sa.Column('outbox_id', sa.Integer(), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['dossier_id'], ['dossier.id'], ),
    sa.ForeignKeyConstraint(['message_pk'], ['message.id'], ),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('staff_action', schema=None) as batch_op:
        batch_op.create_index('ix_staff_action_message', ['message_pk', 'action'], unique=False)
        batch_op.create_index(batch_op.f('ix_staff_action_dossier_id'), ['dossier_id'], unique=False)
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index('ix_message_status', ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_status')
    with op.batch_alter_table('staff_action', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_action_dossier_id'))
        batch_op.drop_index('ix_staff_action_message')
    op.drop_table('staff_action')
