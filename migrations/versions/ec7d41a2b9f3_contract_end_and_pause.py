"""contracts: how a contract ended (who, when, why) and the coach's pause on new bookings

Revision ID: ec7d41a2b9f3
Revises: rc1a2b3c4d5e
Create Date: 2026-12-06 21:15:00.000000

"""
import sqlalchemy as sa
from alembic import op

import skileez.core.types

# revision identifiers, used by Alembic.
revision = 'ec7d41a2b9f3'
down_revision = 'rc1a2b3c4d5e'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('contracts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ended_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('ended_at', skileez.core.types.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('end_reason', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('paused', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.add_column(sa.Column('paused_at',
                                      skileez.core.types.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('paused_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_contracts_ended_by_id_users'), 'users',
                                    ['ended_by_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_contracts_paused_by_id_users'), 'users',
                                    ['paused_by_id'], ['id'])


def downgrade():
    with op.batch_alter_table('contracts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_contracts_paused_by_id_users'),
                                 type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_contracts_ended_by_id_users'),
                                 type_='foreignkey')
        batch_op.drop_column('paused_by_id')
        batch_op.drop_column('paused_at')
        batch_op.drop_column('paused')
        batch_op.drop_column('end_reason')
        batch_op.drop_column('ended_at')
        batch_op.drop_column('ended_by_id')
