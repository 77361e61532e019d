"""Sessions: one meeting within a contract, from booking to its final state."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from skileez import clock
from skileez.core.types import UTCDateTime
from skileez.extensions import db

# Statuses whose time no longer blocks the calendar: the slot is free again.
RELEASED_STATUSES = ("cancelled", "expired", "missed")


def new_room_name() -> str:
    """An unguessable meeting room name (Jitsi rooms are public to anyone with the name)."""
    return "skileez-" + secrets.token_urlsafe(18)


class Session(db.Model):
    """A booked meeting.

    Overlaps are refused by the database itself: on PostgreSQL two exclusion
    constraints (see the booking migration) forbid any two blocking sessions of
    one coach whose [starts_at, coach_block_end) ranges overlap — the end is
    padded by the coach's buffer — and of one student whose [starts_at,
    ends_at) overlap. SQLite has no exclusion constraints; there booking runs
    in a ``BEGIN IMMEDIATE`` transaction so the check and the insert cannot
    interleave with another booking.
    """

    __tablename__ = "sessions"
    __display_name__ = "session"
    __transitions__ = {"status": {
        "pending_payment": {"scheduled", "expired"},
        "scheduled": {"in_progress", "reschedule_requested", "cancelled", "completed",
                      "missed"},
        "reschedule_requested": {"scheduled", "cancelled"},
        "in_progress": {"completed", "missed"},
        "completed": set(), "cancelled": set(), "expired": set(), "missed": set(),
    }}

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    coach_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # ends_at + the coach's buffer at booking time: what the coach's calendar blocks.
    coach_block_end: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(24), default="pending_payment")
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    meeting_room: Mapped[str] = mapped_column(String(64), default=new_room_name, unique=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)

    contract = relationship("Contract", backref=db.backref("sessions",
                                                           order_by="Session.starts_at"))
    coach = relationship("User", foreign_keys=[coach_id])
    student = relationship("User", foreign_keys=[student_id])

    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("coach_block_end >= ends_at", name="block_covers_session"),
        CheckConstraint(
            "status IN ('pending_payment', 'scheduled', 'reschedule_requested', "
            "'in_progress', 'completed', 'cancelled', 'expired', 'missed')",
            name="status_known"),
        Index("ix_sessions_coach_time", "coach_id", "starts_at"),
        Index("ix_sessions_student_time", "student_id", "starts_at"),
        Index("ix_sessions_hold", "status", "hold_expires_at"),
    )

    @property
    def duration(self) -> timedelta:
        return self.ends_at - self.starts_at

    @property
    def blocks_calendar(self) -> bool:
        return self.status not in RELEASED_STATUSES

    def is_participant(self, user) -> bool:
        return bool(user and user.is_authenticated and user.id in (self.student_id,
                                                                    self.coach_id))
