"""saved cards and their off-session charges

A student may keep one card at Stripe (customer + payment method; we store only the ids,
brand, last four digits and expiry) and book the rest of a contract at once; each booked
session's payment is then charged off-session by a job, one row per payment.

Revision ID: bk1c4d7e2a90
Revises: ec7d41a2b9f3
Create Date: 2026-12-06 21:11:48.943998

"""
import sqlalchemy as sa
from alembic import op

import skileez.core.types


# revision identifiers, used by Alembic.
revision = 'bk1c4d7e2a90'
down_revision = 'ec7d41a2b9f3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('saved_cards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('student_id', sa.Integer(), nullable=False),
    sa.Column('gateway', sa.String(length=10), nullable=False),
    sa.Column('customer_id', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('payment_method_id', sa.String(length=255), nullable=True),
    sa.Column('brand', sa.String(length=20), nullable=True),
    sa.Column('last4', sa.String(length=4), nullable=True),
    sa.Column('exp_month', sa.Integer(), nullable=True),
    sa.Column('exp_year', sa.Integer(), nullable=True),
    sa.Column('created_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('saved', 'removed')", name=op.f('ck_saved_cards_status_known')),
    sa.ForeignKeyConstraint(['student_id'], ['users.id'], name=op.f('fk_saved_cards_student_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saved_cards')),
    sa.UniqueConstraint('student_id', name=op.f('uq_saved_cards_student_id'))
    )
    op.create_table('saved_card_charges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=False),
    sa.Column('saved_card_id', sa.Integer(), nullable=False),
    sa.Column('payment_method_id', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('intent_id', sa.String(length=255), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', skileez.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('queued_until', skileez.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_until', skileez.core.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', skileez.core.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'needs_action', 'declined', 'failed', 'cancelled')", name=op.f('ck_saved_card_charges_status_known')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_saved_card_charges_payment_id_payments')),
    sa.ForeignKeyConstraint(['saved_card_id'], ['saved_cards.id'], name=op.f('fk_saved_card_charges_saved_card_id_saved_cards')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saved_card_charges')),
    sa.UniqueConstraint('payment_id', name=op.f('uq_saved_card_charges_payment_id'))
    )
    with op.batch_alter_table('saved_card_charges', schema=None) as batch_op:
        batch_op.create_index('ix_saved_card_charges_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_saved_card_charges_saved_card_id'), ['saved_card_id'], unique=False)



def downgrade():
    with op.batch_alter_table('saved_card_charges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_saved_card_charges_saved_card_id'))
        batch_op.drop_index('ix_saved_card_charges_due')

    op.drop_table('saved_card_charges')
    op.drop_table('saved_cards')
