"""sessions.version: a counter every change to what the session page shows moves on

The session page's status poll answers "unchanged" (304) from this one column instead of
drawing the fragment again; every write to a session adds one to it in the same statement.

Revision ID: poll7f0c2a91
Revises: adm1c0e4b7f2
Create Date: 2026-12-03 13:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'poll7f0c2a91'
down_revision = 'adm1c0e4b7f2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default=sa.text('1'),
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('version')
