"""chargebacks: bank disputes on Dispute rows, transfer reversals, two ledger accounts

A card dispute (``charge.dispute.*``) is kept on the Dispute row it opened, found by
Stripe's dispute id, with the bank's status, amount, reason and evidence deadline. A
coach's transfer is taken back through a ``transfer_reversals`` row sent by an
idempotent job. The ledger gains ``chargebacks`` (money the bank took back) and
``reversed_payouts`` (reversed transfers owed to no one yet); a payment lost at the bank
before release is ``charged_back``.

Revision ID: cb7d1e4a2f90
Revises: bk1c4d7e2a90
Create Date: 2026-12-06 21:20:00.000000

"""
import sqlalchemy as sa
from alembic import op

import skileez.core.types

# revision identifiers, used by Alembic.
revision = 'cb7d1e4a2f90'
down_revision = 'bk1c4d7e2a90'
branch_labels = None
depends_on = None

PAYMENT_STATES = ("'pending', 'held', 'released', 'refunded', 'partially_refunded', "
                  "'disputed', 'failed'")
ACCOUNTS = ("'student_funding', 'escrow', 'coach_payable', 'platform_revenue', 'refunds', "
            "'paid_out'")


def upgrade():
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe_dispute_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('bank_status', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('bank_amount_minor', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('bank_reason', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('evidence_due_by',
                                      skileez.core.types.UTCDateTime(timezone=True),
                                      nullable=True))
        for name in ('bank_withdrew', 'bank_reinstated', 'funds_out'):
            batch_op.add_column(sa.Column(name, sa.Boolean(), nullable=False,
                                          server_default=sa.false()))
        batch_op.add_column(sa.Column('evidence_text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('evidence_summary', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('evidence_submitted_at',
                                      skileez.core.types.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_disputes_stripe_dispute_id'),
                                          ['stripe_dispute_id'])
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_payments_status_known'), type_='check')
        batch_op.create_check_constraint(
            batch_op.f('ck_payments_status_known'),
            f"status IN ({PAYMENT_STATES}, 'charged_back')")
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_ledger_entries_account_known'), type_='check')
        batch_op.create_check_constraint(
            batch_op.f('ck_ledger_entries_account_known'),
            f"account IN ({ACCOUNTS}, 'chargebacks', 'reversed_payouts')")
    op.create_table(
        'transfer_reversals',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('payout_id', sa.Integer(), nullable=False),
        sa.Column('dispute_id', sa.Integer(), nullable=True),
        sa.Column('kind', sa.String(length=12), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('gateway_reversal_id', sa.String(length=255), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', skileez.core.types.UTCDateTime(timezone=True),
                  nullable=True),
        sa.Column('queued_until', skileez.core.types.UTCDateTime(timezone=True),
                  nullable=True),
        sa.Column('claimed_until', skileez.core.types.UTCDateTime(timezone=True),
                  nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint('amount_minor > 0',
                           name=op.f('ck_transfer_reversals_amount_positive')),
        sa.CheckConstraint("kind IN ('chargeback', 'admin')",
                           name=op.f('ck_transfer_reversals_kind_known')),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')",
                           name=op.f('ck_transfer_reversals_status_known')),
        sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'],
                                name=op.f('fk_transfer_reversals_payout_id_payouts')),
        sa.ForeignKeyConstraint(['dispute_id'], ['disputes.id'],
                                name=op.f('fk_transfer_reversals_dispute_id_disputes')),
        sa.ForeignKeyConstraint(['created_by_id'], ['users.id'],
                                name=op.f('fk_transfer_reversals_created_by_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_transfer_reversals')),
        sa.UniqueConstraint('payout_id', name=op.f('uq_transfer_reversals_payout_id')),
        sa.UniqueConstraint('gateway_reversal_id',
                            name=op.f('uq_transfer_reversals_gateway_reversal_id')),
    )
    op.create_index('ix_transfer_reversals_due', 'transfer_reversals',
                    ['status', 'next_attempt_at'], unique=False)


def downgrade():
    op.drop_index('ix_transfer_reversals_due', table_name='transfer_reversals')
    op.drop_table('transfer_reversals')
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_ledger_entries_account_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_ledger_entries_account_known'),
                                         f"account IN ({ACCOUNTS})")
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_payments_status_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_payments_status_known'),
                                         f"status IN ({PAYMENT_STATES})")
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_disputes_stripe_dispute_id'), type_='unique')
        for name in ('evidence_submitted_at', 'evidence_summary', 'evidence_text', 'funds_out',
                     'bank_reinstated', 'bank_withdrew', 'evidence_due_by', 'bank_reason',
                     'bank_amount_minor', 'bank_status', 'stripe_dispute_id'):
            batch_op.drop_column(name)
