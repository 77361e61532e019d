"""The coach directory and profiles (public), and the pages coaches manage themselves."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Blueprint, abort, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from skileez import clock
from skileez.auth.models import User
from skileez.coaches import operations
from skileez.coaches.availability import coach_open_slots
from skileez.coaches.directory import (
    SORTS,
    DirectoryFilters,
    active_offerings,
    coach_cards,
    directory_statement,
)
from skileez.coaches.forms import OfferingForm, ProfileForm, RuleForm, TimeOffForm
from skileez.coaches.models import WEEKDAYS, AvailabilityRule, CoachProfile, Offering, TimeOff
from skileez.contracts.models import Contract
from skileez.core.access import public, require_login, role_route
from skileez.core.forms import Form
from skileez.core.http import choice_arg, is_htmx, text_arg
from skileez.core.money import SUPPORTED_CURRENCIES, MoneyError, input_value, parse_amount
from skileez.core.pagination import paginate
from skileez.core.timezones import localize, zone
from skileez.core.unit_of_work import see_other, submit, transaction
from skileez.extensions import db
from skileez.sessions import lifecycle
from skileez.sessions.models import Session
from skileez.sessions.operations import cancel, release_hold
from skileez.sessions.reviews import public_reviews

bp = require_login(Blueprint("coaches", __name__, url_prefix="/coaches"))

PREVIEW_DAYS = 14


# --- public directory and profiles -------------------------------------------------

@bp.get("/")
@public
def index():
    filters = DirectoryFilters(query=text_arg("q"),
                               currency=choice_arg("currency", SUPPORTED_CURRENCIES),
                               sort=choice_arg("sort", SORTS) or "name")
    price_errors = []
    for name in ("min_price", "max_price"):
        raw = text_arg(name, 20)
        if not raw:
            continue
        if not filters.currency:
            price_errors.append("Coaches set prices in different currencies: choose a "
                                "currency beside the price to filter by it. Until then, "
                                "coaches are shown at any price.")
            break
        try:
            setattr(filters, name, parse_amount(raw, filters.currency))
        except MoneyError as error:
            price_errors.append(f"{'Minimum' if name == 'min_price' else 'Maximum'} price: "
                                f"{error}")
    page = paginate(directory_statement(filters), per_page=12)
    cards = coach_cards(page.items, filters.currency)
    template = "coaches/_results.html" if is_htmx() else "coaches/index.html"
    return render_template(template, page=page, cards=cards, filters=filters, sorts=SORTS,
                           currencies=SUPPORTED_CURRENCIES, price_errors=price_errors,
                           oob=is_htmx(),
                           min_price=text_arg("min_price", 20),
                           max_price=text_arg("max_price", 20))


def _listed_coach(coach_id: int) -> User:
    coach = db.session.get(User, coach_id, options=[
        joinedload(User.coach_profile).selectinload(CoachProfile.subjects)])
    if coach is None or not coach.is_coach or not coach.is_active:
        abort(404)
    return coach


def _bookable_contract(coach: User):
    """The signed-in student's active contract with this coach, if any (the oldest)."""
    if not (current_user.is_authenticated and current_user.is_student):
        return None
    return db.session.scalar(select(Contract).where(
        Contract.student_id == current_user.id, Contract.coach_id == coach.id,
        Contract.status == "active").order_by(Contract.created_at, Contract.id).limit(1))


@bp.get("/<int:coach_id>")
@public
def profile(coach_id: int):
    coach = _listed_coach(coach_id)
    offerings = active_offerings(coach.id)
    preview = []
    contract = _bookable_contract(coach)
    now = clock.now()
    if contract is not None:
        # Times this student can book on their contract: its length, their calendar too.
        preview = coach_open_slots(coach, timedelta(minutes=contract.duration_minutes), now,
                                   now + timedelta(days=PREVIEW_DAYS),
                                   student_id=current_user.id)[:12]
    elif offerings:
        shortest = min(o.duration_minutes for o in offerings)
        preview = coach_open_slots(coach, timedelta(minutes=shortest), now,
                                   now + timedelta(days=PREVIEW_DAYS))[:12]
    return render_template("coaches/profile.html", coach=coach, contract=contract,
                           profile=coach.coach_profile or operations.profile_for(coach),
                           offerings=offerings,
                           preview=preview, preview_days=PREVIEW_DAYS,
                           reviews=public_reviews(coach.id))


# --- the coach's own pages ----------------------------------------------------------

coach_page = role_route(bp, "coach")


@coach_page("/me/profile", methods=["GET", "POST"])
def edit_profile():
    profile = operations.profile_for(current_user)
    # Never ``obj=profile``: WTForms would prefer the ``subjects`` relationship (a list of
    # rows) over the text given here and render their repr into the field.
    form = ProfileForm(data={
        "headline": profile.headline, "bio": profile.bio,
        "subjects": ", ".join(profile.subject_names),
        "buffer_minutes": profile.buffer_minutes,
        "min_notice_hours": profile.min_notice_hours, "horizon_days": profile.horizon_days})
    return submit(form, lambda: operations.update_profile(
        current_user, headline=form.headline.data, bio=form.bio.data or "",
        subjects=form.subjects.data or "", buffer_minutes=form.buffer_minutes.data,
        min_notice_hours=form.min_notice_hours.data, horizon_days=form.horizon_days.data),
        page=lambda: render_template("coaches/edit_profile.html", form=form, profile=profile),
        done=lambda _: see_other(url_for("coaches.edit_profile"),
                                 "Your coach profile has been saved."))


@coach_page("/me/offerings")
def offerings():
    items = db.session.scalars(select(Offering).where(Offering.coach_id == current_user.id)
                               .order_by(Offering.status, Offering.created_at)).all()
    return render_template("coaches/offerings.html", offerings=items, form=Form())


def _own_offering(offering_id: int) -> Offering:
    offering = db.session.get(Offering, offering_id)
    if offering is None or offering.coach_id != current_user.id:
        abort(404)
    return offering


@coach_page("/me/offerings/new", methods=["GET", "POST"], endpoint="new_offering")
@coach_page("/me/offerings/<int:offering_id>/edit", methods=["GET", "POST"],
            endpoint="edit_offering")
def offering_form(offering_id: int | None = None):
    """Publishing an offering and editing one are the same form with the same rules."""
    offering = _own_offering(offering_id) if offering_id is not None else None
    if offering is None:
        form = OfferingForm()
    else:
        form = OfferingForm(obj=offering, data=None if request.method == "POST" else {
            "price": input_value(offering.price_minor, offering.currency)})

    def save() -> None:
        terms = {"title": form.title.data, "description": form.description.data or "",
                 "duration_minutes": form.duration_minutes.data,
                 "price_minor": form.price_minor, "currency": form.currency.data}
        if offering is None:
            operations.create_offering(current_user, **terms)
        else:
            operations.update_offering(offering, **terms)

    return submit(form, save,
                  page=lambda: render_template("coaches/offering_form.html", form=form,
                                               offering=offering),
                  done=lambda _: see_other(url_for("coaches.offerings"),
                                           f"“{form.title.data.strip()}” is published."
                                           if offering is None else
                                           "The offering has been updated. Contracts already "
                                           "agreed keep their terms."))


@coach_page("/me/offerings/<int:offering_id>/<any(activate, deactivate):action>",
            methods=["POST"])
def set_offering_status(offering_id: int, action: str):
    offering = _own_offering(offering_id)
    if not Form().validate_on_submit():
        abort(400)
    active = action == "activate"
    with transaction():
        operations.set_offering_active(offering, active, actor=current_user)
    return see_other(url_for("coaches.offerings"),
                     f"“{offering.title}” is {'active again' if active else 'deactivated'}: "
                     f"{'students can propose to it' if active else 'no new proposals'}.")


# --- availability -------------------------------------------------------------------

def _availability_context(rule_form=None, time_off_form=None):
    rules = db.session.scalars(select(AvailabilityRule)
                               .where(AvailabilityRule.coach_id == current_user.id)
                               .order_by(AvailabilityRule.weekday,
                                         AvailabilityRule.start_minute)).all()
    by_day = {day: [r for r in rules if r.weekday == day] for day in range(7)}
    time_off = db.session.scalars(select(TimeOff).where(
        TimeOff.coach_id == current_user.id, TimeOff.ends_at > clock.now())
        .order_by(TimeOff.starts_at)).all()
    return {"rules_by_day": by_day, "weekdays": WEEKDAYS, "time_off": time_off,
            "rule_form": rule_form or RuleForm(), "time_off_form": time_off_form or TimeOffForm(),
            # Through the relationship, so the preview's slot engine finds it loaded.
            "delete_form": Form(),
            "profile": current_user.coach_profile or operations.profile_for(current_user)}


def _availability_page(rule_form=None, time_off_form=None, **context) -> str:
    return render_template("coaches/availability.html",
                           **_availability_context(rule_form, time_off_form),
                           **_preview_context(), **context)


def _weekly_rules(rule_form=None):
    """The weekly-rules fragment htmx swaps in; the preview beside it reloads on the trigger."""
    return render_template("coaches/_weekly_rules.html",
                           **_availability_context(rule_form=rule_form))


def _rules_changed(message: str):
    if is_htmx():
        return _weekly_rules(), 200, {"HX-Trigger": "availability-changed"}
    return see_other(url_for("coaches.availability"), message)


@coach_page("/me/availability")
def availability():
    return _availability_page()


@coach_page("/me/availability/rules", methods=["POST"])
def add_rule():
    form = RuleForm()
    return submit(form, lambda: operations.add_rule(current_user,
                                                    weekday=int(form.weekday.data),
                                                    start_minute=form.start_minute,
                                                    end_minute=form.end_minute),
                  page=lambda: _weekly_rules(form) if is_htmx()
                  else _availability_page(rule_form=form),
                  done=lambda _: _rules_changed("Availability added."))


@coach_page("/me/availability/rules/<int:rule_id>/delete", methods=["POST"])
def delete_rule(rule_id: int):
    if not Form().validate_on_submit():
        abort(400)
    with transaction():
        try:
            operations.remove_rule(current_user, rule_id)
        except LookupError:
            abort(404)
    return _rules_changed("Availability removed.")


def _coach_local_to_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=zone(current_user.timezone)).astimezone(zone("UTC"))


@coach_page("/me/availability/time-off", methods=["POST"])
def add_time_off():
    form = TimeOffForm()
    choice = request.form.get("on_overlap", "")  # the overlap warning's two buttons

    def add():
        """Add the period, unless it covers booked sessions and the coach has not said
        what happens to them: then nothing is written, and the page asks."""
        starts_at = _coach_local_to_utc(form.starts_at.data)
        ends_at = _coach_local_to_utc(form.ends_at.data)
        overlapping = _sessions_overlapping(starts_at, ends_at)
        if overlapping and choice not in ("cancel", "keep"):
            return overlapping, None
        operations.add_time_off(current_user, starts_at=starts_at, ends_at=ends_at,
                                note=form.note.data or "")
        return overlapping, _cancel_for_time_off(overlapping) if choice == "cancel" else []

    def done(outcome):
        overlapping, cancelled = outcome
        if cancelled is None:
            return _availability_page(time_off_form=form, overlapping=overlapping)
        return see_other(url_for("coaches.availability"),
                         _time_off_added(bool(overlapping), len(cancelled)))

    return submit(form, add, page=lambda: _availability_page(time_off_form=form), done=done)


def _time_off_added(overlapped: bool, cancelled: int) -> str:
    message = "Time off added: no one can book you then."
    if cancelled:
        message += (f" {cancelled} session{'s' if cancelled != 1 else ''} "
                    "cancelled; the students are told and refunded as the "
                    "coach-cancellation terms say (an unpaid booking is released).")
    elif overlapped:
        message += " The sessions already booked in it stay booked."
    return message


def _sessions_overlapping(starts_at: datetime, ends_at: datetime) -> list:
    """The coach's live sessions inside a period, with the cancel terms each would get."""
    sessions = db.session.scalars(select(Session).where(
        Session.coach_id == current_user.id, Session.starts_at < ends_at,
        Session.ends_at > starts_at,
        Session.status.in_(lifecycle.GOING_AHEAD)).order_by(Session.starts_at)).all()
    return [(session, lifecycle.can_release_hold(session, current_user)
             if lifecycle.awaits_payment(session)
             else lifecycle.cancel_terms(session, current_user)) for session in sessions]


def _cancel_for_time_off(overlapping: list) -> list:
    """Cancel the booked sessions (refunded as the coach-cancellation terms say) and
    release the unpaid bookings, so none of them can be paid for afterwards."""
    cancelled = []
    for session, terms in overlapping:
        if not terms.allowed:
            continue
        if lifecycle.awaits_payment(session):
            release_hold(session, current_user, reason="The coach is away (time off).")
        else:
            cancel(session, current_user, reason="The coach is away (time off).")
        cancelled.append(session)
    return cancelled


@coach_page("/me/availability/time-off/<int:time_off_id>/delete", methods=["POST"])
def delete_time_off(time_off_id: int):
    if not Form().validate_on_submit():
        abort(400)
    with transaction():
        try:
            operations.remove_time_off(current_user, time_off_id)
        except LookupError:
            abort(404)
    return see_other(url_for("coaches.availability"), "Time off removed.")


def _preview_context() -> dict:
    """Open slots for the next two weeks in the coach's zone, grouped by local day."""
    offerings = active_offerings(current_user.id)
    duration = min((o.duration_minutes for o in offerings), default=60)
    now = clock.now()
    slots = coach_open_slots(current_user, timedelta(minutes=duration), now,
                             now + timedelta(days=PREVIEW_DAYS))
    days: dict = {}
    for slot in slots:
        days.setdefault(localize(slot, current_user.timezone).date(), []).append(slot)
    return {"preview_by_day": days, "preview_duration": duration,
            "preview_days": PREVIEW_DAYS, "has_offerings": bool(offerings)}


@coach_page("/me/availability/preview")
def availability_preview():
    return render_template("coaches/_preview.html", **_preview_context())
