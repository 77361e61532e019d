"""What a coach publishes: a profile, offerings, weekly availability and time off."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from skileez import clock
from skileez.core.types import UTCDateTime
from skileez.extensions import db

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class CoachProfile(db.Model):
    """One per coach, created with the account; holds the public text and booking settings."""

    __tablename__ = "coach_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         unique=True)
    headline: Mapped[str] = mapped_column(String(120), default="")
    bio: Mapped[str] = mapped_column(Text, default="")
    buffer_minutes: Mapped[int] = mapped_column(Integer, default=15)
    min_notice_hours: Mapped[int] = mapped_column(Integer, default=12)
    horizon_days: Mapped[int] = mapped_column(Integer, default=60)
    # Filled by ratings (sessions issue); kept here so the directory can sort cheaply.
    rating_average: Mapped[float | None] = mapped_column(db.Float)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    # Stripe Connect (Express) account for payouts; without one, earnings stay payable.
    stripe_account_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    payouts_enabled: Mapped[bool] = mapped_column(db.Boolean, default=False,
                                                  server_default=db.false())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)

    user = relationship("User", backref=db.backref("coach_profile", uselist=False))
    subjects = relationship("CoachSubject", order_by="CoachSubject.name",
                            cascade="all, delete-orphan", back_populates="profile")

    __table_args__ = (
        CheckConstraint("buffer_minutes BETWEEN 0 AND 60", name="buffer_range"),
        CheckConstraint("min_notice_hours BETWEEN 0 AND 168", name="notice_range"),
        CheckConstraint("horizon_days BETWEEN 1 AND 365", name="horizon_range"),
    )

    @property
    def subject_names(self) -> list[str]:
        return [subject.name for subject in self.subjects]


class CoachSubject(db.Model):
    """A subject tag, lower-cased, so the directory can search by subject with an index."""

    __tablename__ = "coach_subjects"

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("coach_profiles.id",
                                                       ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(40), index=True)

    profile = relationship("CoachProfile", back_populates="subjects")

    __table_args__ = (UniqueConstraint("profile_id", "name", name="uq_coach_subjects_name"),)


class Offering(db.Model):
    __tablename__ = "offerings"
    __display_name__ = "offering"
    __transitions__ = {"status": {"active": {"inactive"}, "inactive": {"active"}}}

    id: Mapped[int] = mapped_column(primary_key=True)
    coach_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                          index=True)
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    duration_minutes: Mapped[int] = mapped_column(Integer)
    price_minor: Mapped[int] = mapped_column(db.BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)

    coach = relationship("User")

    __table_args__ = (
        CheckConstraint("duration_minutes BETWEEN 15 AND 240 AND duration_minutes % 5 = 0",
                        name="duration_range"),
        CheckConstraint("price_minor >= 0", name="price_not_negative"),
        CheckConstraint("status IN ('active', 'inactive')", name="status_known"),
        Index("ix_offerings_coach_status", "coach_id", "status"),
    )

    @property
    def is_active(self) -> bool:
        return self.status == "active"


class AvailabilityRule(db.Model):
    """A weekly interval in the coach's own time zone (minutes after local midnight)."""

    __tablename__ = "availability_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    coach_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                          index=True)
    weekday: Mapped[int] = mapped_column(Integer)
    start_minute: Mapped[int] = mapped_column(Integer)
    end_minute: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        CheckConstraint("start_minute >= 0 AND end_minute <= 1440 AND end_minute > start_minute",
                        name="minutes_order"),
    )

    @property
    def weekday_name(self) -> str:
        return WEEKDAYS[self.weekday]

    @staticmethod
    def clock_label(minute: int) -> str:
        return f"{minute // 60:02d}:{minute % 60:02d}" if minute < 1440 else "24:00"

    @property
    def label(self) -> str:
        return f"{self.clock_label(self.start_minute)}–{self.clock_label(self.end_minute)}"


class TimeOff(db.Model):
    __tablename__ = "time_off"

    id: Mapped[int] = mapped_column(primary_key=True)
    coach_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                          index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (CheckConstraint("ends_at > starts_at", name="ends_after_start"),)
