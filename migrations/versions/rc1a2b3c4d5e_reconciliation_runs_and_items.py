"""reconciliation with Stripe: runs of the comparison job and the differences it found

``reconciliation_runs`` keeps each comparison (its window, counts, error) like
``ledger_checks``; ``reconciliation_items`` holds one row per difference, keyed so a
run that sees it again updates it, listed open and newest first on the admin page.

Revision ID: rc1a2b3c4d5e
Revises: dsp2a7c4e9b1
Create Date: 2026-12-06 21:14:30.166324

"""
from alembic import op
import sqlalchemy as sa

import skileez.core.types


# revision identifiers, used by Alembic.
revision = 'rc1a2b3c4d5e'
down_revision = 'dsp2a7c4e9b1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('reconciliation_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('requested_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('queued_until', skileez.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_until', skileez.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', skileez.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', skileez.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('since', skileez.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('charges_compared', sa.Integer(), nullable=True),
    sa.Column('refunds_compared', sa.Integer(), nullable=True),
    sa.Column('transfers_compared', sa.Integer(), nullable=True),
    sa.Column('opened', sa.Integer(), nullable=True),
    sa.Column('closed', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("source IN ('schedule', 'admin')", name=op.f('ck_reconciliation_runs_source_known')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_reconciliation_runs_requested_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_runs'))
    )
    with op.batch_alter_table('reconciliation_runs', schema=None) as batch_op:
        batch_op.create_index('ix_reconciliation_runs_requested_at', ['requested_at'], unique=False)
        batch_op.create_index('ix_reconciliation_runs_started_at', ['started_at'], unique=False)

    op.create_table('reconciliation_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('payout_id', sa.Integer(), nullable=True),
    sa.Column('refund_id', sa.Integer(), nullable=True),
    sa.Column('stripe_id', sa.String(length=255), nullable=True),
    sa.Column('ours', sa.Text(), nullable=False),
    sa.Column('theirs', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('object_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('first_seen_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', skileez.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_by_id', sa.Integer(), nullable=True),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f('ck_reconciliation_items_status_known')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_reconciliation_items_payment_id_payments')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_reconciliation_items_payout_id_payouts')),
    sa.ForeignKeyConstraint(['refund_id'], ['refunds.id'], name=op.f('fk_reconciliation_items_refund_id_refunds')),
    sa.ForeignKeyConstraint(['resolved_by_id'], ['users.id'], name=op.f('fk_reconciliation_items_resolved_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_items')),
    sa.UniqueConstraint('key', name=op.f('uq_reconciliation_items_key'))
    )
    with op.batch_alter_table('reconciliation_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reconciliation_items_payment_id'), ['payment_id'], unique=False)
        batch_op.create_index('ix_reconciliation_items_open_newest', ["status", "first_seen_at"], unique=False)



def downgrade():
    with op.batch_alter_table('reconciliation_items', schema=None) as batch_op:
        batch_op.drop_index('ix_reconciliation_items_open_newest')
        batch_op.drop_index(batch_op.f('ix_reconciliation_items_payment_id'))

    op.drop_table('reconciliation_items')
    with op.batch_alter_table('reconciliation_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_reconciliation_runs_started_at')
        batch_op.drop_index('ix_reconciliation_runs_requested_at')

    op.drop_table('reconciliation_runs')
