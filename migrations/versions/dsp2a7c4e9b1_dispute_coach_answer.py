"""disputes: the coach's answer, written before the admin decides

The admin reads both sides of a dispute; the coach may edit their answer until the
dispute is resolved, so the time of the last edit is kept beside it.

Revision ID: dsp2a7c4e9b1
Revises: ml4b8d2e6f10
Create Date: 2026-12-04 21:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

import skileez.core.types

# revision identifiers, used by Alembic.
revision = 'dsp2a7c4e9b1'
down_revision = 'ml4b8d2e6f10'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('coach_answer', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('coach_answered_at',
                                      skileez.core.types.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade():
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.drop_column('coach_answered_at')
        batch_op.drop_column('coach_answer')
