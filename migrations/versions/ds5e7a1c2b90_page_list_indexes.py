"""indexes the page plans asked for: notifications per person, newest first; the audit log
and the outbox, newest first (the outbox also per status)

Each list reads one page of rows through an index in the order it shows them, instead of
sorting every row of the person (a busy student has thousands of notifications) or of the
table (the admin dashboard's audit log, the mailbox). Found by EXPLAIN in bench_pages on
the large data set.

Revision ID: ds5e7a1c2b90
Revises: 7b2e4f9a1c3d
Create Date: 2026-12-03 13:50:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = 'ds5e7a1c2b90'
down_revision = '7b2e4f9a1c3d'
branch_labels = None
depends_on = None

INDEXES = (
    ('notifications', 'ix_notifications_recipient_created', ['recipient_id', 'created_at', 'id']),
    ('audit_events', 'ix_audit_events_created', ['created_at', 'id']),
    ('outbox_emails', 'ix_outbox_emails_created', ['created_at', 'id']),
    ('outbox_emails', 'ix_outbox_emails_status_created', ['status', 'created_at', 'id']),
)


def upgrade():
    for table, name, columns in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)


def downgrade():
    for table, name, _columns in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
