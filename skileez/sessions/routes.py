"""Booking a session, and the session pages."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from flask import abort, make_response, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import inspect, or_, select
from sqlalchemy.orm import joinedload, selectinload

from skileez import clock
from skileez.auth.models import User
from skileez.coaches.availability import coach_next_open_slot, coach_open_slots
from skileez.coaches.operations import profile_for
from skileez.contracts.models import Contract
from skileez.core.http import is_htmx
from skileez.core.models import AuditEvent
from skileez.core.money import share
from skileez.core.permissions import deny
from skileez.core.timezones import localize, zone
from skileez.core.unit_of_work import see_other, submit
from skileez.core.web import render_error
from skileez.extensions import db
from skileez.policy import get_policy
from skileez.sessions import lifecycle, operations
from skileez.sessions.blueprint import bp, participant_session
from skileez.sessions.forms import BookForm
from skileez.sessions.models import Session


def session_history(session: Session) -> list[AuditEvent]:
    """The session's audit trail, its reschedule requests and payment included, oldest first.

    The payment's own events say what the session's do not: a declined card, a
    refund, the release to the coach. Its "held" event is left out because the
    session's "paid" event already says it.
    """
    request_ids = [item.id for item in session.reschedule_requests]
    payment_id = session.payment.id if session.payment is not None else -1
    sources = [
        (AuditEvent.object_type == "sessions") & (AuditEvent.object_id == session.id),
        (AuditEvent.object_type == "reschedule_requests")
        & AuditEvent.object_id.in_(request_ids or [-1]),
        (AuditEvent.object_type == "payments") & (AuditEvent.object_id == payment_id)
        & (AuditEvent.field == "status") & (AuditEvent.to_state != "held")]
    if session.payment is not None:
        sources.append(_dispute_answers(session.payment))
    return list(db.session.scalars(select(AuditEvent).where(or_(*sources))
                                   .order_by(AuditEvent.created_at, AuditEvent.id)))


def _dispute_answers(payment):
    """The coach's answers to the payment's disputes, which both sides should see come in.

    A dispute's opening and decision already show as the payment's own events; only the
    answers (open → open) are the dispute's. The dispute model is the payments layer's,
    above this one, so it is reached through the payment's ``disputes`` relationship
    rather than imported; the subquery keeps the page at one statement for its history.
    """
    dispute = inspect(type(payment)).relationships["disputes"].mapper.class_
    return (AuditEvent.object_type == "disputes") & AuditEvent.object_id.in_(
        select(dispute.id).where(dispute.payment_id == payment.id)) \
        & (AuditEvent.from_state == "open") & (AuditEvent.to_state == "open")


# What the session page shows besides the session, loaded with it.
SESSION_PAGE_LOADS = (joinedload(Session.contract), joinedload(Session.payment),
                      joinedload(Session.coach).joinedload(User.coach_profile),
                      joinedload(Session.student),
                      # A session has a few of each: joined, not one more query apiece.
                      joinedload(Session.reschedule_requests), joinedload(Session.ratings))


@bp.get("/<int:session_id>")
def detail(session_id: int):
    session = participant_session(session_id, options=SESSION_PAGE_LOADS)
    return render_template("sessions/detail.html", session=session,
                           history=session_history(session), policy=get_policy())


# --- booking --------------------------------------------------------------------------

def _student_contract(contract_id: int) -> Contract:
    # The coach with their profile (notice, horizon, buffer) come with the contract: the
    # booking pages and the slot engine read both. The contract's sessions (places taken)
    # too when a page will be shown; a booking POST leaves them to ``operations.book``,
    # which counts places under the contract's row lock.
    loads = [joinedload(Contract.coach).joinedload(User.coach_profile)]
    if request.method == "GET":
        loads.append(selectinload(Contract.sessions))
    contract = db.session.get(Contract, contract_id, options=loads)
    if contract is None or not contract.is_participant(current_user):
        abort(404)
    if current_user.id != contract.student_id:
        abort(403, "Only the student books sessions on a contract.")
    return contract


def _week_start(text: str | None, tz: str, last: date | None = None) -> date:
    """The Monday of the week asked for, kept between this week and ``last``.

    Anything a browser can send is answered with a week: unreadable text means
    this week, and a date outside the range (year 1, year 9999) is brought back
    inside it before any arithmetic could overflow.
    """
    today = localize(clock.now(), tz).date()
    this_week = today - timedelta(days=today.weekday())
    try:
        chosen = date.fromisoformat(text.strip()) if text else this_week
    except ValueError:
        chosen = this_week
    if last is not None:
        chosen = min(chosen, last)
    chosen = max(chosen, this_week)
    return chosen - timedelta(days=chosen.weekday())


@bp.get("/book/<int:contract_id>")
def book(contract_id: int):
    contract = _student_contract(contract_id)
    tz = current_user.timezone
    profile = contract.coach.coach_profile or profile_for(contract.coach)
    horizon_end = clock.now() + timedelta(days=profile.horizon_days)
    can_book = contract.can_book(current_user)
    if not can_book:
        # Every place is taken (or the contract ended): say so, and offer no times.
        context = {"contract": contract, "can_book": can_book, "days": {},
                   "week": _week_start(None, tz), "prev_week": None, "next_week": None,
                   "booked": contract.booked_sessions, "slot_count": 0}
        if is_htmx():
            return render_template("sessions/_week.html", **context)
        return render_template("sessions/book.html", **context)
    requested = request.args.get("week")
    if not requested:
        # Open on the week of the first free time rather than on an empty week.
        first = coach_next_open_slot(contract.coach,
                                     timedelta(minutes=contract.duration_minutes))
        requested = localize(first, tz).date().isoformat() if first else None
    week = _week_start(requested, tz, last=localize(horizon_end, tz).date())
    start = datetime.combine(week, time(0), tzinfo=zone(tz)).astimezone(UTC)
    end = datetime.combine(week + timedelta(days=7), time(0), tzinfo=zone(tz)).astimezone(UTC)
    slots = coach_open_slots(contract.coach, timedelta(minutes=contract.duration_minutes),
                             start, end, student_id=current_user.id)
    days = {week + timedelta(days=n): [] for n in range(7)}
    for slot in slots:
        days.setdefault(localize(slot, tz).date(), []).append(slot)
    context = {"contract": contract, "can_book": can_book, "days": days, "week": week,
               "prev_week": week - timedelta(days=7) if week > _week_start(None, tz) else None,
               "next_week": week + timedelta(days=7) if end < horizon_end else None,
               "booked": contract.booked_sessions,
               "slot_count": len(slots)}
    if is_htmx():
        return render_template("sessions/_week.html", **context)
    return render_template("sessions/book.html", **context)


def _unreadable(message: str):
    """Stop with 400 and say what was wrong (the generic 400 page hides the reason)."""
    abort(make_response(render_error(400, message)))


def _parse_start(text: str | None) -> datetime:
    """A start time from the query or the form; 400 with the reason for anything else.

    Converting to UTC can overflow at the edges of the calendar (year 1 with a
    positive offset, year 9999 with a negative one); that is unreadable input
    too, not a server error.
    """
    try:
        value = datetime.fromisoformat((text or "").strip())
    except ValueError:
        _unreadable("That start time could not be read.")
    if value.tzinfo is None:
        _unreadable("That start time has no time zone.")
    try:
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):
        _unreadable("That start time is outside the booking horizon.")
    now = clock.now()
    if not now - timedelta(days=1) <= value <= now + timedelta(days=400):
        _unreadable("That start time is outside the booking horizon.")
    return value


def _own_hold(contract, starts_at: datetime) -> Session | None:
    """The student's own unpaid booking of this very time, if they can still pay it.

    Read from ``contract.sessions``, which ``can_book`` has loaded already.
    """
    return next((s for s in contract.sessions if s.starts_at == starts_at
                 and s.blocks_calendar and lifecycle.can_pay(s, current_user)), None)


def _booking_state(contract, starts_at: datetime, refusal: str | None = None) -> dict:
    """Whether the page offers to book this time, and if not why: the student holds it
    already (then it points at paying), or the contract has no place, or ``refusal``
    (what the booking that was just refused said)."""
    can_book = contract.can_book(current_user)
    own_hold = _own_hold(contract, starts_at)
    conflict = refusal or (None if can_book else can_book.reason)
    if own_hold is not None:
        # Booking it again would only be refused as taken: point at paying instead.
        conflict = "You already hold this time. Pay for it to keep it."
        can_book = deny(conflict)
    return {"can_book": can_book, "own_hold": own_hold, "conflict": conflict}


@bp.route("/book/<int:contract_id>/confirm", methods=["GET", "POST"])
def confirm(contract_id: int):
    """The confirmation page, and booking from it.

    A POST goes straight to ``operations.book``, which decides under its locks whether
    the time and a place are still free; what the page says
    about it (held already, fully booked) is worked out only when a page is shown.
    """
    contract = _student_contract(contract_id)
    form = BookForm()
    starts_at = _parse_start(form.starts_at.data if request.method == "POST"
                             else request.args.get("start"))
    form.starts_at.data = starts_at.isoformat()
    policy = get_policy()
    fee = share(contract.price_minor, policy.platform_fee)
    context = {"contract": contract, "form": form, "starts_at": starts_at,
               "ends_at": starts_at + timedelta(minutes=contract.duration_minutes),
               "fee": fee, "net": contract.price_minor - fee, "policy": policy,
               "free_until": starts_at - policy.late_cancellation_window}

    def page() -> str:
        # A refusal is said once, beside the booking it refuses (not also as a flash).
        context.update(_booking_state(contract, starts_at,
                                      form.form_errors[-1] if form.form_errors else None))
        return render_template("sessions/confirm.html", **context)

    def book_it() -> int:
        try:
            session = operations.book(current_user, contract.id, starts_at)
        except LookupError:
            abort(404)
        # Taken before the commit, which would expire the session and cost two reloads.
        return session.payment.id

    # Serialized: the check that the slot is free and the insert are one decision.
    return submit(form, book_it, page=page, serialized=True,
                  done=lambda payment_id: see_other(url_for("payments.pay",
                                                            payment_id=payment_id)))
