"""outbox: subject and bodies may be empty until the email is written where it is sent

A batch of notifications (the sweep's) leaves its emails unwritten; the mail worker
writes them from their notification just before sending.

Revision ID: ml4b8d2e6f10
Revises: sw3e1a9c0b7d
Create Date: 2026-12-04 20:30:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'ml4b8d2e6f10'
down_revision = 'sw3e1a9c0b7d'
branch_labels = None
depends_on = None

COLUMNS = (("subject", sa.String(length=200)), ("text_body", sa.Text()),
           ("html_body", sa.Text()))


def upgrade():
    with op.batch_alter_table('outbox_emails', schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.alter_column(name, existing_type=type_, nullable=True)


def downgrade():
    # Rows still unwritten are kept, empty, rather than refused by the old schema.
    for name, _type in COLUMNS:
        op.execute(f"UPDATE outbox_emails SET {name} = '' WHERE {name} IS NULL")
    with op.batch_alter_table('outbox_emails', schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.alter_column(name, existing_type=type_, nullable=False)
