"""Proposals from students, and the contracts accepted proposals become."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from skileez import clock
from skileez.core.permissions import ALLOWED, Decision, deny
from skileez.core.timezones import format_local
from skileez.core.types import UTCDateTime
from skileez.core.words import duration_words
from skileez.extensions import db
from skileez.policy import get_policy


class Proposal(db.Model):
    __tablename__ = "proposals"
    __display_name__ = "proposal"
    __transitions__ = {"status": {
        "pending": {"accepted", "declined", "withdrawn", "expired"},
        "accepted": set(), "declined": set(), "withdrawn": set(), "expired": set(),
    }}

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                            index=True)
    coach_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                          index=True)
    offering_id: Mapped[int] = mapped_column(ForeignKey("offerings.id"), index=True)
    sessions_count: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, default="")
    response_message: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)

    student = relationship("User", foreign_keys=[student_id])
    coach = relationship("User", foreign_keys=[coach_id])
    offering = relationship("Offering")
    contract = relationship("Contract", back_populates="proposal", uselist=False)

    __table_args__ = (
        CheckConstraint("sessions_count BETWEEN 1 AND 50", name="sessions_range"),
        CheckConstraint(
            "status IN ('pending', 'accepted', 'declined', 'withdrawn', 'expired')",
            name="status_known"),
        # One pending proposal per student per offering, enforced by the database.
        Index("uq_proposals_one_pending", "student_id", "offering_id", unique=True,
              postgresql_where=text("status = 'pending'"),
              sqlite_where=text("status = 'pending'")),
        Index("ix_proposals_due", "status", "expires_at"),
    )

    def is_participant(self, user) -> bool:
        return bool(user and user.is_authenticated and user.id in (self.student_id,
                                                                    self.coach_id))

    @property
    def is_pending(self) -> bool:
        """Still waiting for the coach's answer."""
        return self.status == "pending"

    def _still_pending(self) -> Decision:
        if not self.is_pending:
            return deny(f"This proposal is {self.status}; nothing more can be done with it.")
        return ALLOWED

    def can_answer(self, user) -> Decision:
        """Accept or decline: only the coach it was sent to, only while pending."""
        if not (user and user.is_authenticated) or user.id != self.coach_id:
            return deny("Only the coach this proposal was sent to can answer it.")
        decision = self._still_pending()
        if decision:
            return Decision(True, "Answer by "
                            f"{format_local(self.expires_at, user.timezone)}; after that the "
                            "proposal expires.")
        return decision

    def can_withdraw(self, user) -> Decision:
        if not (user and user.is_authenticated) or user.id != self.student_id:
            return deny("Only the student who sent this proposal can withdraw it.")
        return self._still_pending()


def fully_booked_message(total_sessions: int) -> str:
    """What a student reads when every place is taken, and what frees one (from policy)."""
    hold = duration_words(get_policy().payment_hold)
    return (f"Every place is booked: all {total_sessions} sessions of this contract are "
            "taken. A place frees up when a session is cancelled, when one is missed, or "
            f"when a booking is left unpaid for {hold} (its payment hold runs out).")


#: The longest reason a participant may give for ending a contract (the column's size).
END_REASON_MAX_CHARS = 500
PAUSED_FOR_STUDENT = ("The coach has paused new bookings on this contract. Sessions already "
                      "booked go ahead as planned.")


class Contract(db.Model):
    """An agreement for N sessions, with the offering as it was when accepted."""

    __tablename__ = "contracts"
    __display_name__ = "contract"
    __transitions__ = {"status": {
        "active": {"completed", "cancelled"}, "completed": set(), "cancelled": set(),
    }, "paused": {False: {True}, True: {False}}}

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique: however many accepts race, one proposal yields at most one contract.
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"), unique=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                            index=True)
    coach_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                          index=True)
    offering_id: Mapped[int] = mapped_column(ForeignKey("offerings.id"))
    title: Mapped[str] = mapped_column(String(120))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    price_minor: Mapped[int] = mapped_column(db.BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    total_sessions: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # How it ended, when a participant ended it (a contract completed by its last
    # session has none of these).
    ended_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(END_REASON_MAX_CHARS))
    # The coach's pause on new bookings; sessions already booked are not affected.
    paused: Mapped[bool] = mapped_column(db.Boolean, default=False, server_default=db.false())
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)

    proposal = relationship("Proposal", back_populates="contract")
    student = relationship("User", foreign_keys=[student_id])
    coach = relationship("User", foreign_keys=[coach_id])
    ended_by = relationship("User", foreign_keys=[ended_by_id])
    paused_by = relationship("User", foreign_keys=[paused_by_id])
    offering = relationship("Offering")

    __table_args__ = (
        CheckConstraint("total_sessions BETWEEN 1 AND 50", name="sessions_range"),
        CheckConstraint("status IN ('active', 'completed', 'cancelled')", name="status_known"),
    )

    def is_participant(self, user) -> bool:
        return bool(user and user.is_authenticated and user.id in (self.student_id,
                                                                    self.coach_id))

    @property
    def is_active(self) -> bool:
        """Open for booking, as opposed to completed or cancelled."""
        return self.status == "active"

    def other_party(self, user):
        return self.coach if user.id == self.student_id else self.student

    @property
    def completed_sessions(self) -> int:
        return sum(1 for session in self.sessions if session.status == "completed")

    @property
    def booked_sessions(self) -> int:
        """Sessions using up the contract: all but cancelled, expired and missed ones."""
        return sum(1 for session in self.sessions if session.holds_place)

    def can_book(self, user) -> Decision:
        if not (user and user.is_authenticated) or user.id != self.student_id:
            return deny("Only the student books sessions on this contract.")
        if not self.is_active:
            return deny(f"This contract is {self.status}.")
        if self.paused:
            return deny(PAUSED_FOR_STUDENT)
        if self.booked_sessions >= self.total_sessions:
            return deny(fully_booked_message(self.total_sessions))
        return ALLOWED

    def can_end(self, user) -> Decision:
        """Either participant may end an active contract (the confirm page shows the cost)."""
        if not self.is_participant(user):
            return deny("Only the coach and the student of this contract can end it.")
        if not self.is_active:
            return deny(f"This contract is already {self.status}; it cannot be ended again.")
        return ALLOWED

    def can_pause(self, user) -> Decision:
        """Only the coach stops new bookings, and only on an active contract."""
        if not (user and user.is_authenticated) or user.id != self.coach_id:
            return deny("Only the coach can pause new bookings on this contract.")
        if not self.is_active:
            return deny(f"This contract is {self.status}.")
        if self.paused:
            return deny("New bookings are already paused.")
        return Decision(True, f"{self.student.name} will not be able to book new sessions "
                              "until you resume; sessions already booked go ahead.")

    def can_resume(self, user) -> Decision:
        if not (user and user.is_authenticated) or user.id != self.coach_id:
            return deny("Only the coach can resume bookings on this contract.")
        if not self.is_active:
            return deny(f"This contract is {self.status}.")
        if not self.paused:
            return deny("New bookings are not paused.")
        return Decision(True, f"{self.student.name} can book sessions again.")

    @property
    def ended_early(self) -> bool:
        """Ended by a participant (rather than completed by its last session)."""
        return self.ended_at is not None

    def place_numbers(self) -> dict[int, int]:
        """``{session_id: n}`` for "session n of total", by start time.

        Only sessions that use up a place are numbered (all but cancelled, expired
        and missed ones), so n never exceeds the total however many bookings were
        cancelled and re-made. It is computed when shown rather than stored at
        booking: a stored number would go stale (or collide) as soon as an earlier
        session is cancelled or a later one is moved before it.
        """
        live = [s for s in self.sessions if s.holds_place]
        live.sort(key=lambda s: (s.starts_at, s.id))
        return {s.id: n for n, s in enumerate(live, start=1)}

    @property
    def remaining_sessions(self) -> int:
        return self.total_sessions - self.completed_sessions

    @property
    def progress_percent(self) -> int:
        return round(100 * self.completed_sessions / self.total_sessions)
