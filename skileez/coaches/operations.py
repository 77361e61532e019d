"""Writes for coaches: profile, offerings, availability. They flush; the caller commits."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select

from skileez import clock
from skileez.coaches.models import (
    AvailabilityRule,
    CoachProfile,
    CoachSubject,
    Offering,
    TimeOff,
)
from skileez.core.errors import DomainError
from skileez.core.money import SUPPORTED_CURRENCIES, exponent, format_money
from skileez.core.transitions import record_creation, transition
from skileez.extensions import db
from skileez.policy import get_policy

MAX_SUBJECTS = 10
MAX_SUBJECT_CHARS = 40


def profile_for(coach) -> CoachProfile:
    """The coach's profile, created on first use so every coach has one."""
    profile = db.session.scalar(select(CoachProfile).where(CoachProfile.user_id == coach.id))
    if profile is None:
        profile = CoachProfile(user_id=coach.id, headline="", bio="")
        db.session.add(profile)
        db.session.flush()
    return profile


def parse_subjects(text: str) -> list[str]:
    """'Python, Data science ,python' → ['data science', 'python']: lower-cased, unique."""
    names = []
    for raw in re.split(r"[,\n]", text or ""):
        name = " ".join(raw.split()).lower()
        if not name:
            continue
        if len(name) > MAX_SUBJECT_CHARS:
            raise DomainError(f"Keep each subject under {MAX_SUBJECT_CHARS} characters "
                              f"(“{name[:20]}…” is longer).", field="subjects")
        if name not in names:
            names.append(name)
    if len(names) > MAX_SUBJECTS:
        raise DomainError(f"List at most {MAX_SUBJECTS} subjects.", field="subjects")
    return sorted(names)


def update_profile(coach, *, headline: str, bio: str, subjects: str,
                   buffer_minutes: int, min_notice_hours: int, horizon_days: int) -> None:
    profile = profile_for(coach)
    profile.headline = headline.strip()
    profile.bio = bio.strip()
    _replace_subjects(profile, parse_subjects(subjects))
    profile.buffer_minutes = buffer_minutes
    profile.min_notice_hours = min_notice_hours
    profile.horizon_days = horizon_days
    db.session.flush()


def _replace_subjects(profile: CoachProfile, names: list[str]) -> None:
    """Keep the rows that stay, delete the removed ones first, then add the new ones.

    Assigning a fresh list would insert the new rows before deleting the old ones, and a
    name the coach already had would hit the (profile, name) unique constraint.
    """
    wanted = set(names)
    removed = [s for s in profile.subjects if s.name not in wanted]
    for subject in removed:
        profile.subjects.remove(subject)
    if removed:
        db.session.flush()
    have = {s.name for s in profile.subjects}
    for name in names:
        if name not in have:
            profile.subjects.append(CoachSubject(name=name))


def _check_price(price_minor: int, currency: str) -> None:
    low, high = get_policy().offering_price_bounds(currency)
    scale = 10 ** exponent(currency)
    if not low * scale <= price_minor <= high * scale:
        raise DomainError(f"Choose a price from {format_money(low * scale, currency)} to "
                          f"{format_money(high * scale, currency)} per session.",
                          field="price")


def _check_offering(duration_minutes: int, currency: str, price_minor: int) -> None:
    if not 15 <= duration_minutes <= 240 or duration_minutes % 5:
        raise DomainError("Choose a duration from 15 to 240 minutes, in 5-minute steps.",
                          field="duration_minutes")
    if currency not in SUPPORTED_CURRENCIES:
        raise DomainError("Choose a currency from the list.", field="currency")
    _check_price(price_minor, currency)


def create_offering(coach, *, title: str, description: str, duration_minutes: int,
                    price_minor: int, currency: str) -> Offering:
    if not coach.is_coach:
        raise DomainError("Only coaches can publish offerings.")
    _check_offering(duration_minutes, currency, price_minor)
    offering = Offering(coach_id=coach.id, title=title.strip(),
                        description=description.strip(), duration_minutes=duration_minutes,
                        price_minor=price_minor, currency=currency, status="active")
    db.session.add(offering)
    db.session.flush()
    record_creation(offering, actor=coach, reason="offering published")
    return offering


def update_offering(offering: Offering, *, title: str, description: str,
                    duration_minutes: int, price_minor: int, currency: str) -> None:
    """Edit an offering; contracts already agreed keep their own snapshot."""
    _check_offering(duration_minutes, currency, price_minor)
    offering.title = title.strip()
    offering.description = description.strip()
    offering.duration_minutes = duration_minutes
    offering.price_minor = price_minor
    offering.currency = currency
    db.session.flush()


def set_offering_active(offering: Offering, active: bool, *, actor) -> None:
    transition(offering, "active" if active else "inactive", actor=actor,
               illegal_message="This offering is already "
                               f"{'active' if offering.is_active else 'inactive'}.")


def add_rule(coach, *, weekday: int, start_minute: int, end_minute: int) -> AvailabilityRule:
    if not 0 <= weekday <= 6:
        raise DomainError("Choose a day of the week.", field="weekday")
    if not 0 <= start_minute < 1440 or not 0 < end_minute <= 1440:
        raise DomainError("Enter times between 00:00 and 24:00.", field="start")
    if end_minute <= start_minute:
        raise DomainError("The end must be after the start.", field="end")
    for existing in db.session.scalars(select(AvailabilityRule).where(
            AvailabilityRule.coach_id == coach.id, AvailabilityRule.weekday == weekday)):
        if start_minute < existing.end_minute and end_minute > existing.start_minute:
            raise DomainError(
                f"This overlaps {existing.weekday_name} {existing.label}. "
                "Change or remove that interval first.", field="start")
    rule = AvailabilityRule(coach_id=coach.id, weekday=weekday, start_minute=start_minute,
                            end_minute=end_minute)
    db.session.add(rule)
    db.session.flush()
    return rule


def remove_rule(coach, rule_id: int) -> None:
    rule = db.session.get(AvailabilityRule, rule_id)
    if rule is None or rule.coach_id != coach.id:
        raise LookupError(rule_id)
    db.session.delete(rule)
    db.session.flush()


def add_time_off(coach, *, starts_at: datetime, ends_at: datetime, note: str = "") -> TimeOff:
    """Block a period (given in UTC; the form converts from the coach's zone)."""
    if ends_at <= starts_at:
        raise DomainError("The end must be after the start.", field="ends_at")
    if ends_at <= clock.now():
        raise DomainError("This period is already over; time off only matters in the future.",
                          field="ends_at")
    time_off = TimeOff(coach_id=coach.id, starts_at=starts_at, ends_at=ends_at,
                       note=note.strip())
    db.session.add(time_off)
    db.session.flush()
    return time_off


def remove_time_off(coach, time_off_id: int) -> None:
    time_off = db.session.get(TimeOff, time_off_id)
    if time_off is None or time_off.coach_id != coach.id:
        raise LookupError(time_off_id)
    db.session.delete(time_off)
    db.session.flush()
