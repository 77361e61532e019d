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
        # → pending_payment: a saved card could not be charged; the pay window restarts.
        "pending_payment": {"scheduled", "expired", "pending_payment"},
        "scheduled": {"in_progress", "reschedule_requested", "cancelled", "completed",
                      "missed"},
        "reschedule_requested": {"scheduled", "cancelled"},
        "in_progress": {"completed", "missed"},
        "completed": set(), "cancelled": set(), "expired": set(), "missed": set(),
    }, "confirmed_by_coach": {False: {True}, True: set()}}

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
    confirmed_by_coach: Mapped[bool] = mapped_column(db.Boolean, default=False,
                                                     server_default=db.false())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    student_joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    coach_joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # None when a worker completed it automatically.
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    student_notes: Mapped[str | None] = mapped_column(db.Text)
    coach_notes: Mapped[str | None] = mapped_column(db.Text)
    missed_by: Mapped[str | None] = mapped_column(String(12))  # student | coach | unattended
    missed_reason: Mapped[str | None] = mapped_column(db.Text)
    marked_missed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    late: Mapped[bool] = mapped_column(db.Boolean, default=False, server_default=db.false())
    reason: Mapped[str | None] = mapped_column(db.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)
    # One more on every write to the session, in the same statement (the transition helper
    # and the attendance and notes updates do it): the session page's status poll answers
    # "unchanged" from this column alone. A clock cannot serve: two writes in one frozen or
    # coarse instant would look like none.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=db.text("1"))

    contract = relationship("Contract", backref=db.backref("sessions",
                                                           order_by="Session.starts_at"))
    coach = relationship("User", foreign_keys=[coach_id])
    student = relationship("User", foreign_keys=[student_id])
    started_by = relationship("User", foreign_keys=[started_by_id])
    completed_by = relationship("User", foreign_keys=[completed_by_id])
    cancelled_by = relationship("User", foreign_keys=[cancelled_by_id])

    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("missed_by IS NULL OR missed_by IN ('student', 'coach', 'unattended')",
                        name="missed_by_known"),
        CheckConstraint("coach_block_end >= ends_at", name="block_covers_session"),
        CheckConstraint(
            "status IN ('pending_payment', 'scheduled', 'reschedule_requested', "
            "'in_progress', 'completed', 'cancelled', 'expired', 'missed')",
            name="status_known"),
        Index("ix_sessions_coach_time", "coach_id", "starts_at"),
        Index("ix_sessions_student_time", "student_id", "starts_at"),
        Index("ix_sessions_hold", "status", "hold_expires_at"),
        # What the sweep reads when nothing is due: sessions to close, sessions to remind.
        Index("ix_sessions_status_end", "status", "ends_at"),
        Index("ix_sessions_status_start", "status", "starts_at"),
    )

    @property
    def duration(self) -> timedelta:
        return self.ends_at - self.starts_at

    @property
    def blocks_calendar(self) -> bool:
        return self.status not in RELEASED_STATUSES

    @property
    def holds_place(self) -> bool:
        """Uses up one of the contract's sessions now: an unpaid hold that ran out does not,
        even before the sweep has marked it expired (booking expires it first anyway)."""
        if self.status == "pending_payment" and self.hold_expires_at is not None \
                and self.hold_expires_at <= clock.now():
            return False
        return self.blocks_calendar

    def is_participant(self, user) -> bool:
        return bool(user and user.is_authenticated and user.id in (self.student_id,
                                                                    self.coach_id))

    def notification_payload(self, **extra) -> dict:
        """What every notification about this session carries, plus ``extra`` for its kind.

        A payload is stored with the notification and rendered later (in the list, in the
        email), so it holds the words as they were when it was sent: a coach renamed
        since does not rewrite old notifications, and nothing is loaded to show them.
        """
        return {"session_id": self.id, "contract_title": self.contract.title,
                "starts_at": self.starts_at.isoformat(), "coach_name": self.coach.name,
                "student_name": self.student.name, **extra}

    @property
    def place_number(self) -> int | None:
        """Its place among the contract's sessions that use one (see Contract.place_numbers).

        ``number`` stays the booking's fixed reference; this is what "n of total"
        means, and released sessions (cancelled, expired, missed) have none.
        """
        return self.contract.place_numbers().get(self.id)

    @property
    def place_label(self) -> str:
        """'Session 3 of 5', or what became of a booking that no longer holds a place."""
        return self.place_label_among(self.contract.place_numbers())

    def place_label_among(self, place_numbers: dict[int, int]) -> str:
        """``place_label`` from the contract's ``place_numbers()`` worked out once, for a
        list of many of its sessions (a feed would otherwise sort the contract per row)."""
        place = place_numbers.get(self.id)
        if place is not None:
            return f"Session {place} of {self.contract.total_sessions}"
        return {"cancelled": "Cancelled session", "expired": "Expired booking",
                "pending_payment": "Expired booking",  # its hold ran out unpaid
                "missed": "Missed session"}.get(self.status, "Session")


class RescheduleRequest(db.Model):
    """One participant asks to move a scheduled session; the other answers, or a worker does."""

    __tablename__ = "reschedule_requests"
    __display_name__ = "reschedule request"
    __transitions__ = {"status": {
        "pending": {"approved", "declined", "auto_approved", "auto_declined", "withdrawn"},
        "approved": set(), "declined": set(), "auto_approved": set(), "auto_declined": set(),
        "withdrawn": set(),
    }}

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    original_start: Mapped[datetime] = mapped_column(UTCDateTime)
    proposed_start: Mapped[datetime] = mapped_column(UTCDateTime)
    # The start actually chosen (the approver may pick another open slot).
    approved_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(db.Text)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    late: Mapped[bool] = mapped_column(db.Boolean, default=False, server_default=db.false())
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(db.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)

    session = relationship("Session", backref=db.backref(
        "reschedule_requests", order_by="RescheduleRequest.created_at"))
    requested_by = relationship("User", foreign_keys=[requested_by_id])
    decided_by = relationship("User", foreign_keys=[decided_by_id])

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'approved', 'declined', 'auto_approved', "
                        "'auto_declined', 'withdrawn')", name="status_known"),
        # One pending request per session, enforced by the database.
        Index("uq_reschedule_one_pending", "session_id", unique=True,
              postgresql_where=db.text("status = 'pending'"),
              sqlite_where=db.text("status = 'pending'")),
        Index("ix_reschedule_due", "status", "deadline"),
    )


class Rating(db.Model):
    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    ratee_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    stars: Mapped[int] = mapped_column(Integer)
    feedback: Mapped[str] = mapped_column(db.Text, default="")
    public: Mapped[bool] = mapped_column(db.Boolean, default=False)
    would_recommend: Mapped[bool] = mapped_column(db.Boolean, default=True)
    tags: Mapped[list] = mapped_column(db.JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    session = relationship("Session", backref=db.backref("ratings", order_by="Rating.id"))
    rater = relationship("User", foreign_keys=[rater_id])
    ratee = relationship("User", foreign_keys=[ratee_id])

    __table_args__ = (
        CheckConstraint("stars BETWEEN 1 AND 5", name="stars_range"),
        db.UniqueConstraint("session_id", "rater_id", name="uq_ratings_once_per_person"),
    )


class Reminder(db.Model):
    """A reminder that went out: unique per session, kind and start, so it is sent once.

    The start is part of the key so a session rescheduled into the window gets
    reminders for its new time, but never a second one for the same time.
    """

    __tablename__ = "reminders"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # e.g. "24h", "1h"
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    __table_args__ = (db.UniqueConstraint("session_id", "kind", "starts_at",
                                          name="uq_reminders_once"),)
