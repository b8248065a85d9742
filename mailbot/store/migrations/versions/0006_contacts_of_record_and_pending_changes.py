"""contacts of record and held changes: a contact is linked for disclosure only when it wrote
(the sender, a colleague) or a person confirmed it; a later form changing payment details or
contacts is held in pending_change until a person confirms it

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-04 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('linked', sa.Boolean(), nullable=False, server_default=sa.false()))
    # Before, every contact was linked; from now on only those who wrote: the addresses an order
    # form named become contacts of record.
    op.execute("UPDATE contact SET linked = 1 WHERE role IN ('sender', 'colleague')")
    op.create_table(
        'pending_change',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('dossier_id', sa.Integer(), nullable=False),
        sa.Column('message_pk', sa.Integer(), nullable=False),
        sa.Column('form_check_id', sa.Integer(), nullable=False),
        sa.Column('base_form_check_id', sa.Integer(), nullable=True),
        sa.Column('fields', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(['dossier_id'], ['dossier.id']),
        sa.ForeignKeyConstraint(['message_pk'], ['message.id']),
        sa.ForeignKeyConstraint(['form_check_id'], ['form_check.id']),
        sa.ForeignKeyConstraint(['base_form_check_id'], ['form_check.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_pending_change_dossier_state', 'pending_change', ['dossier_id', 'state'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_pending_change_dossier_state', table_name='pending_change')
    op.drop_table('pending_change')
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_column('linked')
