"""Account writes. They flush, never commit: the request or job owns the transaction."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError

from skileez import clock
from skileez.auth.models import User
from skileez.auth.passwords import (
    burn_equivalent_time,
    hash_password,
    needs_rehash,
    verify_password,
)
from skileez.core.errors import Conflict, DomainError
from skileez.core.events import announce
from skileez.core.forms import single_line
from skileez.core.permissions import ALLOWED, Decision, deny
from skileez.core.timezones import is_valid_timezone
from skileez.core.transitions import record_creation, transition
from skileez.extensions import db
from skileez.notifications.operations import notify
from skileez.policy import get_policy

DUPLICATE_EMAIL = "An account with this email already exists. Sign in instead?"


def clean_name(name: str) -> str:
    """The name as stored: one line and within the policy's length, whoever calls.

    The forms already say so beside the field; this catches the CLI, the seed
    and any future caller, because a name ends up in table rows and email subjects.
    """
    name = single_line(name or "").strip()
    if not name:
        raise DomainError("Tell us your name.", field="name")
    limit = get_policy().name_max_chars
    if len(name) > limit:
        raise DomainError(f"Keep your name to {limit} characters or fewer.", field="name")
    return name


def create_user(*, name: str, email: str, password: str, role: str,
                timezone: str = "UTC", actor: User | None = None,
                welcome: bool = True) -> User:
    """Create an account and, for people who signed up, greet them.

    The email check before the insert gives a friendly message; the unique
    constraint behind it catches the race of two sign-ups at once.
    """
    if role not in ("student", "coach", "admin"):
        raise DomainError("Choose student or coach.", field="role")
    if not is_valid_timezone(timezone):
        raise DomainError("Choose a time zone from the list.", field="timezone")
    name = clean_name(name)
    email = User.normalise_email(email)
    if User.find_by_email(email) is not None:
        raise DomainError(DUPLICATE_EMAIL, field="email")
    user = User(name=name, email=email, password_hash=hash_password(password),
                role=role, timezone=timezone, status="active")
    try:
        with db.session.begin_nested():
            db.session.add(user)
            db.session.flush()
    except IntegrityError:
        raise DomainError(DUPLICATE_EMAIL, field="email") from None
    record_creation(user, actor=actor or user, reason="account created")
    announce("account_created", user=user)
    if welcome:
        notify(user, "welcome", {"role": user.role})
    return user


def authenticate(email: str, password: str) -> User | None:
    """The account these credentials open, or None; deactivated accounts raise.

    Unknown emails cost the same hashing time as known ones so response times
    do not reveal which addresses have accounts.
    """
    user = User.find_by_email(email)
    if user is None:
        burn_equivalent_time(password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if not user.is_active:
        raise DomainError("This account has been deactivated. Contact support if you "
                          "think this is a mistake.")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = clock.now()
    db.session.flush()
    return user


def update_profile(user: User, *, name: str, timezone: str) -> None:
    if not is_valid_timezone(timezone):
        raise DomainError("Choose a time zone from the list.", field="timezone")
    user.name = clean_name(name)
    user.timezone = timezone
    db.session.flush()


def change_password(user: User, *, current_password: str, new_password: str) -> None:
    """Set a new password and sign out every other device."""
    if not verify_password(user.password_hash, current_password):
        raise DomainError("That is not your current password.", field="current_password")
    if current_password == new_password:
        raise DomainError("Choose a password different from the current one.",
                          field="new_password")
    user.password_hash = hash_password(new_password)
    user.rotate_session_token()
    db.session.flush()


def sign_out_everywhere(user: User) -> None:
    """Invalidate every session and remember cookie this account has handed out."""
    user.rotate_session_token()
    db.session.flush()


def can_set_active(user: User, active: bool, actor: User) -> Decision:
    """Whether the confirmation page may offer the button, and the reason when not."""
    if user.id == actor.id and not active:
        return deny("You cannot deactivate your own account.")
    if user.is_active == active:
        return deny(f"This account is already {user.status}.")
    return ALLOWED


def set_active(user: User, active: bool, *, actor: User, reason: str | None = None) -> None:
    """Deactivate or reactivate an account; a deactivated user is signed out everywhere."""
    decision = can_set_active(user, active, actor)
    if not decision:
        raise Conflict(decision.reason)
    target = "active" if active else "deactivated"
    transition(user, target, actor=actor, reason=reason,
               illegal_message=f"This account is already {user.status}.",
               values=None if active else {"session_token": secrets.token_urlsafe(32)})
