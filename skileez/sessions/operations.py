"""Session writes: booking (race-free), hold expiry, completion."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import joinedload

from skileez import clock
from skileez.coaches.availability import (
    busy_window,
    calendar_arguments,
    coach_open_slots,
    open_starts,
)
from skileez.coaches.models import CoachProfile
from skileez.coaches.slots import Interval
from skileez.contracts.models import PAUSED_FOR_STUDENT, Contract, fully_booked_message
from skileez.core.db import among, is_lock_conflict, lock_coach_calendar
from skileez.core.deadlines import due
from skileez.core.errors import Conflict, DomainError
from skileez.core.events import announce
from skileez.core.money import format_money
from skileez.core.transitions import (
    record_creation,
    record_event,
    transition,
    transition_many,
)
from skileez.core.words import duration_words
from skileez.extensions import db
from skileez.notifications.operations import notify, notify_many
from skileez.policy import get_policy
from skileez.sessions import lifecycle
from skileez.sessions.models import RELEASED_STATUSES, Rating, RescheduleRequest, Session

SLOT_TAKEN = "This time was just taken — pick another."
# What a write to a session that bypasses the transition helper sets ``version`` to.
NEXT_VERSION = Session.version + 1


def _places_taken_and_last_number(contract_id: int) -> tuple[int, int]:
    """The contract's places in use (every session not cancelled, expired or missed) and
    its highest session number, in one statement: booking asks both under the lock."""
    taken, last = db.session.execute(
        select(func.count().filter(Session.status.not_in(RELEASED_STATUSES)),
               func.max(Session.number)).where(Session.contract_id == contract_id)).one()
    return taken or 0, last or 0


def book(student, contract_id: int, starts_at: datetime) -> Session:
    """Create a session awaiting payment, holding the slot for the policy's payment hold.

    Three layers keep two people from getting one slot: the slot is re-checked
    against the live calendar; the contract row is locked (PostgreSQL) or the write
    serialized (SQLite) so the count of booked places cannot be raced; and the
    database refuses an overlapping insert (exclusion constraints on PostgreSQL, the
    serialized transaction on SQLite). Whoever loses sees ``SLOT_TAKEN`` and nothing
    is created. On SQLite the caller runs this in a serialized transaction
    (``core.unit_of_work.transaction(serialized=True)``).

    Every booking of one coach waits for that coach's calendar lock, so it is taken
    last, just before the insert: it is there so that racing inserts queue instead of
    deadlocking inside the exclusion constraints (``lock_coach_calendar``), not to
    make the re-check exact, which the constraints already are. Under it run only
    the inserts and the commit. A refused insert is not wrapped in a savepoint:
    ``Conflict`` ends the unit of work, which rolls everything back.
    """
    contract = db.session.get(Contract, contract_id)
    if contract is None or contract.student_id != student.id:
        raise LookupError(contract_id)
    # Read under the row lock, not from the contract the page loaded: a contract ended a
    # moment ago is seen as ended.
    status, paused = db.session.execute(
        select(Contract.status, Contract.paused).where(Contract.id == contract_id)
        .with_for_update()).one()
    if status != "active":
        raise Conflict(f"This contract is {status}; no more sessions can be booked.")
    if paused:
        raise Conflict(PAUSED_FOR_STUDENT)
    duration = timedelta(minutes=contract.duration_minutes)
    calendar = calendar_arguments(contract.coach, duration)
    # Holds that ran out free their calendar time and their place in the contract first.
    expire_stale_holds(coach_id=contract.coach_id, student_id=student.id)
    taken, last_number = _places_taken_and_last_number(contract.id)
    if taken >= contract.total_sessions:
        raise Conflict(fully_booked_message(contract.total_sessions))
    end_of_check = starts_at + timedelta(seconds=1)
    blocking = blocking_sessions(contract.coach_id, student.id,
                                 within=busy_window(calendar, starts_at, end_of_check))
    if starts_at not in open_starts(calendar, blocking, starts_at, end_of_check):
        raise Conflict(SLOT_TAKEN)
    now = clock.now()
    lock_coach_calendar(contract.coach_id)
    session = Session(contract_id=contract.id, number=last_number + 1,
                      coach_id=contract.coach_id, student_id=student.id, starts_at=starts_at,
                      ends_at=starts_at + duration,
                      coach_block_end=starts_at + duration + calendar["buffer"],
                      status="pending_payment",
                      hold_expires_at=now + get_policy().payment_hold, created_at=now)
    db.session.add(session)
    try:
        db.session.flush()
    except IntegrityError:
        raise Conflict(SLOT_TAKEN) from None
    except OperationalError as error:
        if is_lock_conflict(error):
            raise Conflict(SLOT_TAKEN) from None
        raise
    record_creation(session, actor=student, reason="booked, awaiting payment")
    announce("session_booked", session=session, contract=contract)
    return session


def expire_hold(session: Session) -> None:
    """The student did not pay in time: free the slot."""
    transition(session, "expired", reason="payment hold expired",
               where=(Session.hold_expires_at <= clock.now(),),
               values={"hold_expires_at": None})
    announce("holds_expired", sessions=[session])


def release_hold(session: Session, coach, *, reason: str) -> None:
    """The coach is away at an unpaid booking's time: end its hold now, before it is paid.

    A payment racing this loses at the compare-and-set (or, if Stripe already took
    the money, the webhook refunds a payment for a session that is not held any more).
    """
    _require(lifecycle.can_release_hold(session, coach))
    transition(session, "expired", actor=coach, reason=reason, expected="pending_payment",
               values={"hold_expires_at": None})
    announce("holds_expired", sessions=[session], notice="booking_released")


def expire_stale_holds(*, coach_id: int | None = None, student_id: int | None = None) -> int:
    """Expire one batch of unpaid holds that ran out, so they stop blocking the calendar.

    Set-based: one compare-and-set for the batch (``transition_many``); a hold that
    was paid or released a moment ago is not among the winners and is left alone.
    Returns how many expired.
    """
    now = clock.now()
    conditions = [Session.status == "pending_payment", Session.hold_expires_at <= now]
    people = []
    if coach_id is not None:
        people.append(Session.coach_id == coach_id)
    if student_id is not None:
        people.append(Session.student_id == student_id)
    if people:
        conditions.append(or_(*people))
    ids = due(select(Session.id).where(*conditions).order_by(Session.hold_expires_at))
    won = transition_many(Session, ids, "expired", expected="pending_payment",
                          reason="payment hold expired",
                          where=(Session.hold_expires_at <= now,),
                          values={"hold_expires_at": None})
    if won:
        announce("holds_expired", sessions=sessions_for_notices(won))
    return len(won)


def sessions_for_notices(ids: list[int]) -> list[Session]:
    """The sessions of ``ids`` with what their notification payloads name, in two queries."""
    return list(db.session.scalars(
        select(Session).where(among(Session.id, ids)).order_by(Session.id)
        .options(joinedload(Session.contract), joinedload(Session.coach),
                 joinedload(Session.student))))


def _still_blocking() -> list:
    """Sessions that keep their time busy now: live ones, not an unpaid hold that ran out
    (even before the sweep sees it), and not long over."""
    now = clock.now()
    return [Session.ends_at > now - timedelta(days=1), Session.status.not_in(RELEASED_STATUSES),
            or_(Session.status != "pending_payment", Session.hold_expires_at > now)]


def blocking_sessions(coach_id: int, student_id: int | None,
                      exclude_session_id: int | None = None,
                      within: Interval | None = None) -> list:
    """Busy intervals for the slot engine: the coach's and the student's live sessions,
    those overlapping ``within`` only when it is given."""
    people = [Session.coach_id == coach_id]
    if student_id is not None:
        people.append(Session.student_id == student_id)
    conditions = []
    if exclude_session_id is not None:
        conditions.append(Session.id != exclude_session_id)
    if within is not None:
        # The lower bound on the start lets the (person, starts_at) indexes bound the scan;
        # no session lasts a day (offerings are 15 to 240 minutes, a check constraint).
        conditions += [Session.starts_at < within.end, Session.ends_at > within.start,
                       Session.starts_at > within.start - timedelta(days=1)]
    rows = db.session.execute(
        select(Session.starts_at, Session.ends_at).where(
            or_(*people), *conditions, *_still_blocking())).all()
    return [Interval(start, end) for start, end in rows]


def blocking_sessions_of_coaches(coach_ids: list[int]) -> dict[int, list]:
    """``blocking_sessions`` of many coaches in one query, by coach."""
    found: dict[int, list] = {coach_id: [] for coach_id in coach_ids}
    for coach_id, start, end in db.session.execute(
            select(Session.coach_id, Session.starts_at, Session.ends_at).where(
                Session.coach_id.in_(coach_ids), *_still_blocking())):
        found[coach_id].append(Interval(start, end))
    return found


# --- the life cycle after payment ------------------------------------------------------

def _other(session: Session, user):
    return session.coach if user.id == session.student_id else session.student


def _require(decision) -> None:
    if not decision:
        raise Conflict(decision.reason)


def meeting_url(session: Session) -> str:
    from flask import current_app

    return f"{current_app.config['MEETING_BASE_URL']}/{session.meeting_room}"


def confirm(session: Session, coach) -> None:
    _require(lifecycle.can_confirm(session, coach))
    transition(session, True, field="confirmed_by_coach", actor=coach,
               reason="confirmed by the coach",
               illegal_message="This session is already confirmed.")
    notify(session.student, "session_confirmed", session.notification_payload())


def start(session: Session, user) -> None:
    """Open the meeting room; whoever starts is present, the other person is told."""
    now = clock.now()
    _require(lifecycle.can_start(session, user, now))
    role = lifecycle.role_of(session, user)
    transition(session, "in_progress", actor=user, reason=f"started by the {role}",
               values={"started_at": now, "started_by_id": user.id,
                       f"{role}_joined_at": now})
    notify(_other(session, user), "session_started",
           session.notification_payload(started_by=user.name))


def join(session: Session, user) -> str:
    """Record attendance (first join only) and return the meeting room URL."""
    _require(lifecycle.can_join(session, user))
    role = lifecycle.role_of(session, user)
    column = getattr(Session, f"{role}_joined_at")
    result = db.session.execute(
        update(Session).where(Session.id == session.id, column.is_(None))
        .values({column.key: clock.now(), "version": NEXT_VERSION})
        .execution_options(synchronize_session=False))
    if result.rowcount:
        record_event(session, field=f"{role}_joined_at", from_state=None, to_state="joined",
                     actor=user, reason=f"{role} joined the meeting")
        db.session.expire(session, [column.key, "version"])
    return meeting_url(session)


def _slot_is_free(session: Session, starts_at: datetime) -> bool:
    # Unpaid holds that ran out no longer block anyone; clear them so the database agrees.
    expire_stale_holds(coach_id=session.coach_id, student_id=session.student_id)
    duration = session.ends_at - session.starts_at
    open_now = coach_open_slots(session.coach, duration, starts_at,
                                starts_at + timedelta(seconds=1),
                                student_id=session.student_id, exclude_session_id=session.id,
                                ignore_notice=True)
    return starts_at in open_now


def reschedule_problems(session: Session, *, new_start: datetime | None, reason: str,
                        now: datetime | None = None) -> list[DomainError]:
    """Everything wrong with a reschedule request, one error per field, all at once.

    The form shows them together, so a person fixes the reason and the time in
    one go instead of meeting the second problem only after fixing the first.
    """
    policy = get_policy()
    now = now or clock.now()
    problems = []
    reason = reason.strip()
    if not policy.reschedule_reason_min_chars <= len(reason) <= \
            policy.reschedule_reason_max_chars:
        problems.append(DomainError(f"Give a reason of {policy.reschedule_reason_min_chars} "
                                    f"to {policy.reschedule_reason_max_chars} characters.",
                                    field="reason"))
    if new_start is None:
        problems.append(DomainError("Choose one of the open times.", field="new_start"))
    elif new_start < now + policy.reschedule_new_time_min_lead:
        problems.append(DomainError("Choose a new time at least "
                                    f"{duration_words(policy.reschedule_new_time_min_lead)} "
                                    "from now.", field="new_start"))
    elif new_start == session.starts_at:
        problems.append(DomainError("Choose a time different from the current one.",
                                    field="new_start"))
    elif not _slot_is_free(session, new_start):
        problems.append(DomainError("That time is not free for both of you. Choose one of "
                                    "the open times listed.", field="new_start"))
    return problems


def request_reschedule(session: Session, user, *, new_start: datetime,
                       reason: str) -> RescheduleRequest:
    now = clock.now()
    _require(lifecycle.can_request_reschedule(session, user, now))
    reason = reason.strip()
    problems = reschedule_problems(session, new_start=new_start, reason=reason, now=now)
    if problems:
        raise problems[0]
    notice = lifecycle.reschedule_notice(session, user, now)
    request = RescheduleRequest(
        session_id=session.id, requested_by_id=user.id, original_start=session.starts_at,
        proposed_start=new_start, reason=reason, status="pending", late=notice.late,
        deadline=lifecycle.reschedule_deadline(session, now), created_at=now)
    try:
        with db.session.begin_nested():
            db.session.add(request)
            db.session.flush()
    except IntegrityError:
        raise Conflict("A reschedule request is already waiting for an answer.") from None
    transition(session, "reschedule_requested", actor=user,
               reason="late reschedule requested" if notice.late else "reschedule requested")
    record_creation(request, actor=user, reason=f"asked to move it: {reason}")
    notify(_other(session, user), "reschedule_requested",
           session.notification_payload(requested_by=user.name,
                                        proposed_start=new_start.isoformat(), reason=reason,
                                        deadline=request.deadline.isoformat(),
                                        request_id=request.id))
    return request


def _move(session: Session, new_start: datetime, *, actor, reason: str) -> None:
    """Move the session (and so its escrowed payment, which follows the session)."""
    duration = session.ends_at - session.starts_at
    buffer = session.coach_block_end - session.ends_at
    lock_coach_calendar(session.coach_id)
    try:
        with db.session.begin_nested():
            transition(session, "scheduled", actor=actor, reason=reason,
                       expected="reschedule_requested",
                       values={"starts_at": new_start, "ends_at": new_start + duration,
                               "coach_block_end": new_start + duration + buffer})
    except IntegrityError:
        raise Conflict("That time was just taken. Choose another open time.") from None
    except OperationalError as error:
        if is_lock_conflict(error):
            raise Conflict("That time was just taken. Choose another open time.") from None
        raise


def approve_reschedule(request: RescheduleRequest, user, *,
                       chosen_start: datetime | None = None, note: str = "") -> None:
    now = clock.now()
    _require(lifecycle.can_answer_reschedule(request, user, now))
    session = request.session
    start_at = chosen_start or request.proposed_start
    if start_at < now + get_policy().reschedule_new_time_min_lead:
        raise DomainError("Choose a time at least "
                          f"{duration_words(get_policy().reschedule_new_time_min_lead)} "
                          "from now.", field="new_start")
    if not _slot_is_free(session, start_at):
        raise Conflict("That time is no longer free for both of you. Choose another open "
                       "time or decline.")
    transition(request, "approved", actor=user, reason="approved",
               values={"decided_by_id": user.id, "decided_at": now,
                       "approved_start": start_at, "note": note.strip() or None})
    _move(session, start_at, actor=user, reason="rescheduled")
    notify(request.requested_by, "reschedule_approved",
           session.notification_payload(new_start=start_at.isoformat(), decided_by=user.name,
                                        note=note.strip()))


def decline_reschedule(request: RescheduleRequest, user, *, note: str = "") -> None:
    now = clock.now()
    _require(lifecycle.can_answer_reschedule(request, user, now))
    transition(request, "declined", actor=user, reason="declined",
               values={"decided_by_id": user.id, "decided_at": now,
                       "note": note.strip() or None})
    transition(request.session, "scheduled", actor=user, reason="reschedule declined",
               expected="reschedule_requested")
    notify(request.requested_by, "reschedule_declined",
           request.session.notification_payload(decided_by=user.name, note=note.strip()))


def withdraw_reschedule(request: RescheduleRequest, user) -> None:
    _require(lifecycle.can_withdraw_reschedule(request, user))
    transition(request, "withdrawn", actor=user, reason="withdrawn",
               values={"decided_at": clock.now()})
    transition(request.session, "scheduled", actor=user, reason="reschedule withdrawn",
               expected="reschedule_requested")
    notify(_other(request.session, user), "reschedule_withdrawn",
           request.session.notification_payload(requested_by=user.name))


def auto_decide_reschedule(request: RescheduleRequest) -> str:
    """At the deadline: approve if the proposed time is still free for both, else decline."""
    now = clock.now()
    session = request.session
    free = request.proposed_start >= now + get_policy().reschedule_new_time_min_lead \
        and _slot_is_free(session, request.proposed_start)
    outcome = "auto_approved" if free else "auto_declined"
    why = ("No answer by the deadline and the time was still free for both."
           if free else "No answer by the deadline and the proposed time is no longer free.")
    transition(request, outcome, reason=why, where=(RescheduleRequest.deadline <= now,),
               values={"decided_at": now,
                       "approved_start": request.proposed_start if free else None})
    if free:
        _move(session, request.proposed_start, actor=None, reason="rescheduled automatically")
    else:
        transition(session, "scheduled", reason="reschedule declined automatically",
                   expected="reschedule_requested")
    for person in (session.student, session.coach):
        notify(person, "reschedule_auto_decided",
               session.notification_payload(outcome=outcome, why=why,
                                            new_start=session.starts_at.isoformat()))
    return outcome


def cancel(session: Session, user, *, reason: str = "", now: datetime | None = None,
           tell_other: bool = True) -> int:
    """Cancel, refunding by policy: the terms shown before confirming are the ones applied.

    Returns the amount refunded (minor units). Ending a contract cancels each of its
    booked sessions through here, at one ``now``, and tells both people once itself
    (``tell_other=False``) instead of once per session.
    """
    now = now or clock.now()
    terms = lifecycle.cancel_terms(session, user, now)
    if not terms.allowed:
        raise Conflict(terms.reason)
    role = lifecycle.role_of(session, user)
    for request in session.reschedule_requests:
        if request.status == "pending":
            transition(request, "withdrawn", actor=user, reason="session cancelled",
                       values={"decided_at": now})
    transition(session, "cancelled", actor=user, expected=session.status,
               reason=f"{'late ' if terms.late else ''}cancellation by the {role}",
               values={"cancelled_by_id": user.id, "cancelled_at": now, "late": terms.late,
                       "reason": reason.strip() or None})
    payment = session.payment
    refunded = _close(session, terms.refund_share, actor=user,
                      reason=f"session cancelled by the {role}"
                      + (" (late)" if terms.late else ""),
                      release_from=max(now, session.starts_at))
    if tell_other:
        amount = _money_text(refunded, payment) if payment else ""
        notify(_other(session, user), "session_cancelled",
               session.notification_payload(cancelled_by=user.name, late=terms.late,
                                            refund=amount, reason=reason.strip()))
    return refunded


def _money_text(minor: int, payment) -> str:
    return format_money(minor, payment.currency)


def _close(session: Session, refund_share, *, actor, reason: str,
           release_from: datetime) -> int:
    """Tell payments the session is over and what share of escrow goes back to the student.

    Payments sit above sessions (a payment belongs to a session), so the money is
    moved by their listener (``skileez.payments.listeners``): the refund now, what
    remains released to the coach on the normal schedule from ``release_from``.
    Returns the amount refunded, in minor units.
    """
    return sum(announce("sessions_closed", sessions=[session], refund_share=refund_share,
                        actor=actor, reason=reason, release_from=release_from))


def complete(session: Session, *, actor=None, notes: str = "",
             reason: str = "session completed") -> None:
    """Done: notes under the writer's role, escrow release scheduled, both asked to rate."""
    now = clock.now()
    if actor is not None:
        _require(lifecycle.can_complete(session, actor, now))
    values = {"completed_at": now, "completed_by_id": getattr(actor, "id", None)}
    notes = notes.strip()
    if notes and actor is not None:
        values[f"{lifecycle.role_of(session, actor)}_notes"] = notes[
            :get_policy().completion_notes_max_chars]
    transition(session, "completed", actor=actor, reason=reason, expected=session.status,
               values=values,
               illegal_message=f"This session is {session.status.replace('_', ' ')} and "
                               "cannot be completed.")
    _close(session, Decimal(0), actor=actor, reason=reason, release_from=now)
    contract = session.contract
    if contract.status == "active" and contract.completed_sessions >= contract.total_sessions:
        transition(contract, "completed", actor=actor, reason="all sessions completed")
    for person in (session.student, session.coach):
        notify(person, "session_completed", session.notification_payload())


def add_notes(session: Session, user, notes: str) -> None:
    _require(lifecycle.can_add_notes(session, user))
    notes = notes.strip()
    if not notes:
        raise DomainError("Write something, or leave the page.", field="notes")
    limit = get_policy().completion_notes_max_chars
    if len(notes) > limit:
        raise DomainError(f"Keep notes under {limit} characters.", field="notes")
    role = lifecycle.role_of(session, user)
    column = getattr(Session, f"{role}_notes")
    result = db.session.execute(update(Session).where(Session.id == session.id,
                                                      column.is_(None))
                                .values({column.key: notes, "version": NEXT_VERSION})
                                .execution_options(synchronize_session=False))
    if not result.rowcount:
        raise Conflict("You have already written your notes.")
    db.session.expire(session, [column.key, "version"])
    record_event(session, field=column.key, from_state=None, to_state="written", actor=user,
                 reason=f"{role} added notes")


MISSED_REFUND = {"student": "refund_missed_by_student", "coach": "refund_missed_by_coach",
                 "unattended": "refund_missed_unattended"}


def mark_missed(session: Session, *, missed_by: str, reason: str, actor=None) -> None:
    """A no-show: record who missed it and refund the student by policy."""
    if missed_by not in MISSED_REFUND:
        raise DomainError("Say who did not attend.", field="missed_by")
    now = clock.now()
    if actor is not None:
        _require(lifecycle.can_mark_missed(session, actor, now))
    transition(session, "missed", actor=actor, expected=session.status,
               reason=f"missed by the {missed_by}" if missed_by != "unattended"
               else "nobody started the session",
               values={"missed_by": missed_by, "missed_reason": reason.strip() or None,
                       "marked_missed_by_id": getattr(actor, "id", None)})
    _close(session, getattr(get_policy(), MISSED_REFUND[missed_by]), actor=actor,
           reason=f"session missed by the {missed_by}" if missed_by != "unattended"
           else "session not attended", release_from=now)
    payload = session.notification_payload(missed_by=missed_by, reason=reason.strip())
    if actor is None:
        for person in (session.student, session.coach):
            notify(person, "session_missed", payload)
    else:
        notify(_other(session, actor), "session_missed", payload)


UNATTENDED_REASON = "Nobody started the session."


def mark_unattended(session_ids: list[int]) -> list[int]:
    """The sweep's no-show: scheduled sessions nobody started, as a batch.

    ``mark_missed`` for ``missed_by="unattended"`` in a few statements per batch: one
    compare-and-set over the sessions, the escrow settled for the winners at once,
    both people told in one batch of notifications. A session someone moved a moment
    ago is not among the winners; a payment changed meanwhile raises ``Conflict``
    (the caller then goes row by row). Returns the ids marked missed.
    """
    now = clock.now()
    won = transition_many(Session, session_ids, "missed", expected="scheduled",
                          reason="nobody started the session",
                          values={"missed_by": "unattended", "missed_reason": UNATTENDED_REASON,
                                  "marked_missed_by_id": None})
    if not won:
        return won
    sessions = sessions_for_notices(won)
    announce("sessions_closed", sessions=sessions,
             refund_share=getattr(get_policy(), MISSED_REFUND["unattended"]), actor=None,
             reason="session not attended", release_from=now)
    notify_many("session_missed", [
        (person, session.notification_payload(missed_by="unattended",
                                              reason=UNATTENDED_REASON))
        for session in sessions for person in (session.student, session.coach)])
    return won


def rate(session: Session, user, *, stars: int, feedback: str, public: bool,
         would_recommend: bool, tags: list[str]) -> Rating:
    _require(lifecycle.can_rate(session, user))
    if not 1 <= stars <= 5:
        raise DomainError("Choose from 1 to 5 stars.", field="stars")
    limit = get_policy().rating_feedback_max_chars
    if len(feedback) > limit:
        raise DomainError(f"Keep feedback under {limit} characters.", field="feedback")
    rating = Rating(session_id=session.id, rater_id=user.id, ratee_id=_other(session, user).id,
                    stars=stars, feedback=feedback.strip(), public=public,
                    would_recommend=would_recommend, tags=tags, created_at=clock.now())
    try:
        with db.session.begin_nested():
            db.session.add(rating)
            db.session.flush()
    except IntegrityError:
        raise Conflict("You have already rated this session.") from None
    # The session page no longer offers this person a rating: it has changed.
    db.session.execute(update(Session).where(Session.id == session.id)
                       .values(version=NEXT_VERSION)
                       .execution_options(synchronize_session=False))
    db.session.expire(session, ["version"])
    if user.id == session.student_id:
        _refresh_coach_rating(session.coach_id)
    return rating


def _refresh_coach_rating(coach_id: int) -> None:
    """The coach's public average: students' ratings of them only."""
    average, count = db.session.execute(
        select(func.avg(Rating.stars), func.count(Rating.id))
        .join(Session, Session.id == Rating.session_id)
        .where(Rating.ratee_id == coach_id, Rating.rater_id == Session.student_id)).one()
    db.session.execute(update(CoachProfile).where(CoachProfile.user_id == coach_id)
                       .values(rating_average=float(average) if average is not None else None,
                               rating_count=count)
                       .execution_options(synchronize_session=False))


def normalise_tags(text: str) -> list[str]:
    """'Patient, clear ,PATIENT' → ['patient', 'clear']: lower-case, unique, ≤ 10 of ≤ 30."""
    tags: list[str] = []
    for raw in (text or "").split(","):
        tag = " ".join(raw.split()).lower()
        if not tag:
            continue
        if len(tag) > 30:
            raise DomainError("Keep each tag under 30 characters.", field="tags")
        if tag not in tags:
            tags.append(tag)
    if len(tags) > 10:
        raise DomainError("Use at most 10 tags.", field="tags")
    return tags
