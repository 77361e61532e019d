"""sweep indexes: sessions by status and end (auto-complete, auto-missed) and by status and
start (reminders)

Without them the sweep's "nothing due" reads scan the whole sessions table: its cost
grew with the table instead of with what is due.

Revision ID: sw3e1a9c0b7d
Revises: poll7f0c2a91
Create Date: 2026-12-03 13:40:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'sw3e1a9c0b7d'
down_revision = 'poll7f0c2a91'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index('ix_sessions_status_end', ['status', 'ends_at'], unique=False)
        batch_op.create_index('ix_sessions_status_start', ['status', 'starts_at'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_status_start')
        batch_op.drop_index('ix_sessions_status_end')
