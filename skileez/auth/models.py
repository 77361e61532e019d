"""People who use Skileez."""

from __future__ import annotations

import secrets
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from skileez import clock
from skileez.core.forms import single_line
from skileez.core.types import UTCDateTime
from skileez.extensions import db

ROLES = ("student", "coach", "admin")
ROLE_LABELS = {"student": "Student", "coach": "Coach", "admin": "Admin"}


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __display_name__ = "account"
    # An account can be switched off and on again by an admin; nothing else.
    __transitions__ = {"status": {"active": {"deactivated"}, "deactivated": {"active"}}}

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased: uniqueness and sign-in are case-insensitive by construction.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Rotated on password change and deactivation: it is what Flask-Login stores
    # in the session and the remember cookie, so rotating it signs out every
    # device that still holds the old value.
    session_token: Mapped[str] = mapped_column(
        String(64), unique=True, default=lambda: secrets.token_urlsafe(32)
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Secret in the private calendar feed URL; regenerating it revokes the old URL.
    calendar_token: Mapped[str | None] = mapped_column(String(64), unique=True)

    __table_args__ = (
        CheckConstraint("role IN ('student', 'coach', 'admin')", name="role_known"),
        CheckConstraint("status IN ('active', 'deactivated')", name="status_known"),
        CheckConstraint("email = lower(email)", name="email_lower_case"),
    )

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email} {self.role}>"

    # Flask-Login ------------------------------------------------------------
    def get_id(self) -> str:
        return self.session_token

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.status == "active"

    # Roles ------------------------------------------------------------------
    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_coach(self) -> bool:
        return self.role == "coach"

    @property
    def is_student(self) -> bool:
        return self.role == "student"

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)

    @property
    def initials(self) -> str:
        parts = [p for p in self.name.split() if p]
        return "".join(p[0] for p in parts[:2]).upper() or "?"

    def rotate_session_token(self) -> None:
        self.session_token = secrets.token_urlsafe(32)

    @staticmethod
    def normalise_email(email: str) -> str:
        """The one spelling of an address: for the lookup and for the sign-in throttle alike.

        It cleans the way the form does (control characters out), so
        ``sam@example.com\\x00`` is the same account, and the same throttle
        counter, as ``sam@example.com``.
        """
        return single_line(email or "").strip().lower()

    @classmethod
    def find_by_email(cls, email: str) -> User | None:
        return db.session.scalar(
            select(cls).where(func.lower(cls.email) == cls.normalise_email(email))
        )
