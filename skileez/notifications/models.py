"""Notifications people read in the app, and the emails waiting to be sent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from skileez import clock
from skileez.core.permissions import ALLOWED, Decision, deny
from skileez.core.types import UTCDateTime
from skileez.extensions import db

RETRY_REFUSED = "Only failed emails can be retried."


class Notification(db.Model):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    recipient = relationship("User")

    __table_args__ = (
        Index("ix_notifications_recipient_unread", "recipient_id", "read_at"),
        # The notifications page: one person's, newest first, a page at a time.
        Index("ix_notifications_recipient_created", "recipient_id", "created_at", "id"),
    )

    @property
    def is_read(self) -> bool:
        return self.read_at is not None


class OutboxEmail(db.Model):
    """An email written in the same transaction as the change that caused it.

    If the change rolls back, so does the email; if it commits, the email is
    sent eventually even when Redis or SMTP is down at that moment, because the
    sweep resends whatever is still pending and due.
    """

    __tablename__ = "outbox_emails"
    __display_name__ = "email"
    __transitions__ = {"status": {
        "pending": {"sending", "failed"},
        # A worker that died mid-send leaves 'sending' with an expired claim;
        # the next sweep may take it over ('sending' → 'sending').
        "sending": {"sent", "pending", "failed", "sending"},
        "failed": {"pending"},
        "sent": set(),
    }}

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    notification_id: Mapped[int | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="SET NULL")
    )
    to_address: Mapped[str] = mapped_column(String(254))
    # None until written: a batch's emails are written where they are sent
    # (``compose.write_unwritten``), a single notification's when it is recorded.
    subject: Mapped[str | None] = mapped_column(String(200))
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A delivery job is waiting in a queue until then: the sweep does not queue another.
    queued_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # 'smtp' or 'local' (kept in the local mailbox because no SMTP server is set).
    transport: Mapped[str | None] = mapped_column(String(10))
    message_id: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)

    recipient = relationship("User")

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed')",
                        name="status_known"),
        Index("ix_outbox_emails_due", "status", "next_attempt_at"),
        # The admin mailbox, newest first: all of it, or one status.
        Index("ix_outbox_emails_created", "created_at", "id"),
        Index("ix_outbox_emails_status_created", "status", "created_at", "id"),
    )

    @property
    def subject_shown(self) -> str:
        """The subject, or what the email is about while it waits to be written."""
        if self.subject is not None:
            return self.subject
        return f"{self.kind.replace('_', ' ').capitalize()} (written when it is sent)"

    @property
    def awaits_retry(self) -> bool:
        """A failed attempt was made and the next one is scheduled."""
        return self.status == "pending" and bool(self.attempts)

    def can_retry(self) -> Decision:
        """An admin may send a failed email again; any other is on its way or sent."""
        if self.status != "failed":
            return deny(RETRY_REFUSED)
        return ALLOWED
