"""payout repayments: a coach paid again after a won chargeback

When the bank took a released payment back the coach's transfer was reversed; when it
gives the money back the coach is owed again, and ``payout_repayments`` is the new
transfer (``payouts.payment_id`` stays unique), sent by an idempotent job.

Revision ID: cf3a9d2e7b41
Revises: cb7d1e4a2f90
Create Date: 2026-12-06 22:20:00.000000

"""
import sqlalchemy as sa
from alembic import op

import skileez.core.types

# revision identifiers, used by Alembic.
revision = 'cf3a9d2e7b41'
down_revision = 'cb7d1e4a2f90'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'payout_repayments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('reversal_id', sa.Integer(), nullable=False),
        sa.Column('payment_id', sa.Integer(), nullable=False),
        sa.Column('coach_id', sa.Integer(), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('transfer_id', sa.String(length=255), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', skileez.core.types.UTCDateTime(timezone=True),
                  nullable=True),
        sa.Column('queued_until', skileez.core.types.UTCDateTime(timezone=True),
                  nullable=True),
        sa.Column('claimed_until', skileez.core.types.UTCDateTime(timezone=True),
                  nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('paid_at', skileez.core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint('amount_minor > 0',
                           name=op.f('ck_payout_repayments_amount_positive')),
        sa.CheckConstraint("status IN ('pending', 'paid', 'payable', 'failed')",
                           name=op.f('ck_payout_repayments_status_known')),
        sa.ForeignKeyConstraint(['reversal_id'], ['transfer_reversals.id'],
                                name=op.f('fk_payout_repayments_reversal_id_transfer_reversals')),
        sa.ForeignKeyConstraint(['payment_id'], ['payments.id'],
                                name=op.f('fk_payout_repayments_payment_id_payments')),
        sa.ForeignKeyConstraint(['coach_id'], ['users.id'],
                                name=op.f('fk_payout_repayments_coach_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_repayments')),
        sa.UniqueConstraint('reversal_id', name=op.f('uq_payout_repayments_reversal_id')),
        sa.UniqueConstraint('transfer_id', name=op.f('uq_payout_repayments_transfer_id')),
    )
    op.create_index('ix_payout_repayments_due', 'payout_repayments',
                    ['status', 'next_attempt_at'], unique=False)
    op.create_index(op.f('ix_payout_repayments_payment_id'), 'payout_repayments',
                    ['payment_id'], unique=False)
    op.create_index(op.f('ix_payout_repayments_coach_id'), 'payout_repayments',
                    ['coach_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_payout_repayments_coach_id'), table_name='payout_repayments')
    op.drop_index(op.f('ix_payout_repayments_payment_id'), table_name='payout_repayments')
    op.drop_index('ix_payout_repayments_due', table_name='payout_repayments')
    op.drop_table('payout_repayments')
