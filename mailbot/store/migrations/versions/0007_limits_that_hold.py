"""limits that hold: the outbox's addresses normalised in a table of their own (the limits
counted them by LIKE on the JSON recipients, which never matched a non-ASCII address: it is
stored \\u-escaped), and a dossier's reminders stopped (dormant_since)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 09:00:00.000000
"""
import json

import sqlalchemy as sa
import sqlmodel
from alembic import op

from mailbot.addresses import normalise_address
from mailbot.store.models import UTCDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbox_address',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox_address', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_address_address', ['address', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_address_outbox_id'), ['outbox_id'], unique=False)
    with op.batch_alter_table('dossier', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dormant_since', sa.DateTime(timezone=True), nullable=True))
    _fill_addresses()


def _fill_addresses() -> None:
    """The addresses of the mail already in the outbox (purged ones read "[address removed]":
    not addresses, left out)."""
    bind = op.get_bind()
    outbox = sa.table('outbox', sa.column('id', sa.Integer()), sa.column('recipients', sa.String()),
                      sa.column('cc', sa.String()), sa.column('created_at', UTCDateTime()))
    addresses = sa.table('outbox_address', sa.column('outbox_id', sa.Integer()), sa.column('role', sa.String()),
                         sa.column('address', sa.String()), sa.column('created_at', UTCDateTime()))
    rows = []
    for row in bind.execute(sa.select(outbox)).mappings().all():
        for role, column in (("to", row["recipients"]), ("cc", row["cc"])):
            try:
                values = json.loads(column or "[]")
            except ValueError:
                continue
            for value in dict.fromkeys(normalise_address(v) for v in values if isinstance(v, str) and "@" in v):
                rows.append({"outbox_id": row["id"], "role": role, "address": value, "created_at": row["created_at"]})
        if len(rows) >= 1000:
            bind.execute(addresses.insert(), rows)
            rows = []
    if rows:
        bind.execute(addresses.insert(), rows)


def downgrade() -> None:
    with op.batch_alter_table('dossier', schema=None) as batch_op:
        batch_op.drop_column('dormant_since')
    with op.batch_alter_table('outbox_address', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_address_outbox_id'))
        batch_op.drop_index('ix_outbox_address_address')
    op.drop_table('outbox_address')
