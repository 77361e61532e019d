"""job claims (queued_until / claimed_until) on outbox, payouts and refunds; webhook outcome

A job is claimed in the database before it is queued, so the sweep re-queues a row only
once its claim has expired; a refused webhook event is recorded with why.

Revision ID: 7b2e4f9a1c3d
Revises: 19229d704448
Create Date: 2026-12-02 18:20:00.000000

"""
from alembic import op
import sqlalchemy as sa

import skileez.core.types


# revision identifiers, used by Alembic.
revision = '7b2e4f9a1c3d'
down_revision = '19229d704448'
branch_labels = None
depends_on = None


def _when(name):
    return sa.Column(name, skileez.core.types.UTCDateTime(timezone=True), nullable=True)


def upgrade():
    with op.batch_alter_table('outbox_emails', schema=None) as batch_op:
        batch_op.add_column(_when('queued_until'))
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.add_column(_when('queued_until'))
        batch_op.add_column(_when('claimed_until'))
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.add_column(_when('queued_until'))
        batch_op.add_column(_when('claimed_until'))
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outcome', sa.String(length=255), nullable=True))


def downgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_column('outcome')
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('queued_until')
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('queued_until')
    with op.batch_alter_table('outbox_emails', schema=None) as batch_op:
        batch_op.drop_column('queued_until')
