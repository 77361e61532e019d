"""ledger check results off the request path; indexes for the admin lists

The ledger invariant check runs as a job and keeps each run's result in
``ledger_checks``; the admin payments list (newest first) and the dispute lists
(per status, newest first) read a page through an index instead of sorting the table.

Revision ID: adm1c0e4b7f2
Revises: ds5e7a1c2b90
Create Date: 2026-12-03 13:45:00.000000

"""
from alembic import op
import sqlalchemy as sa

import skileez.core.types


# revision identifiers, used by Alembic.
revision = 'adm1c0e4b7f2'
down_revision = 'ds5e7a1c2b90'
branch_labels = None
depends_on = None


def _when(name):
    return sa.Column(name, skileez.core.types.UTCDateTime(timezone=True), nullable=True)


def upgrade():
    op.create_table(
        'ledger_checks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=10), nullable=False),
        sa.Column('requested_by_id', sa.Integer(), nullable=True),
        sa.Column('requested_at', skileez.core.types.UTCDateTime(timezone=True),
                  nullable=False),
        _when('queued_until'),
        _when('claimed_until'),
        _when('started_at'),
        _when('finished_at'),
        sa.Column('duration_ms', sa.Integer(), nullable=True),
        sa.Column('problem_count', sa.Integer(), nullable=True),
        sa.Column('problems', sa.JSON(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.CheckConstraint("source IN ('schedule', 'admin')",
                           name=op.f('ck_ledger_checks_source_known')),
        sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'],
                                name=op.f('fk_ledger_checks_requested_by_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_checks')),
    )
    with op.batch_alter_table('ledger_checks', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_checks_started_at', ['started_at'], unique=False)
        batch_op.create_index('ix_ledger_checks_requested_at', ['requested_at'], unique=False)
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index('ix_payments_created', ['created_at', 'id'], unique=False)
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.create_index('ix_disputes_status_created', ['status', 'created_at'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.drop_index('ix_disputes_status_created')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_created')
    with op.batch_alter_table('ledger_checks', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_checks_requested_at')
        batch_op.drop_index('ix_ledger_checks_started_at')
    op.drop_table('ledger_checks')
