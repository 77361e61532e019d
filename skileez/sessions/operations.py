"""Session writes: booking (race-free), hold expiry, completion."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from skileez import clock
from skileez.coaches.availability import coach_open_slots
from skileez.coaches.operations import profile_for
from skileez.contracts.models import Contract
from skileez.core.db import serialized_write
from skileez.core.errors import Conflict
from skileez.core.transitions import record_creation, transition
from skileez.extensions import db
from skileez.policy import get_policy
from skileez.sessions.models import RELEASED_STATUSES, Session

SLOT_TAKEN = "This time was just taken — pick another."


def booked_count(contract_id: int) -> int:
    """Sessions that use up the contract: everything not cancelled, expired or missed."""
    return db.session.scalar(select(func.count()).select_from(Session).where(
        Session.contract_id == contract_id, Session.status.not_in(RELEASED_STATUSES))) or 0


def book(student, contract_id: int, starts_at: datetime) -> Session:
    """Create a session awaiting payment, holding the slot for the policy's payment hold.

    Three layers keep two people from getting one slot: the slot is re-checked
    against the live calendar; the write is serialized (SQLite) or the contract
    row is locked (PostgreSQL) so the count of booked sessions cannot be raced;
    and the database refuses an overlapping insert (exclusion constraints on
    PostgreSQL, the serialized transaction on SQLite). Whoever loses sees
    ``SLOT_TAKEN`` and nothing is created.
    """
    serialized_write()
    contract = db.session.scalar(select(Contract).where(Contract.id == contract_id)
                                 .with_for_update())
    if contract is None or contract.student_id != student.id:
        raise LookupError(contract_id)
    if contract.status != "active":
        raise Conflict(f"This contract is {contract.status}; no more sessions can be booked.")
    if booked_count(contract.id) >= contract.total_sessions:
        raise Conflict(f"All {contract.total_sessions} sessions of this contract are already "
                       "booked. A cancelled or missed session frees its place again.")
    policy = get_policy()
    now = clock.now()
    expire_stale_holds(coach_id=contract.coach_id, student_id=student.id)
    duration = timedelta(minutes=contract.duration_minutes)
    open_now = coach_open_slots(contract.coach, duration, starts_at,
                                starts_at + timedelta(seconds=1), student_id=student.id)
    if starts_at not in open_now:
        raise Conflict(SLOT_TAKEN)
    buffer = timedelta(minutes=profile_for(contract.coach).buffer_minutes)
    number = (db.session.scalar(select(func.max(Session.number))
                                .where(Session.contract_id == contract.id)) or 0) + 1
    session = Session(contract_id=contract.id, number=number, coach_id=contract.coach_id,
                      student_id=student.id, starts_at=starts_at, ends_at=starts_at + duration,
                      coach_block_end=starts_at + duration + buffer, status="pending_payment",
                      hold_expires_at=now + policy.payment_hold, created_at=now)
    try:
        with db.session.begin_nested():
            db.session.add(session)
            db.session.flush()
    except IntegrityError:
        raise Conflict(SLOT_TAKEN) from None
    record_creation(session, actor=student, reason="booked, awaiting payment")
    from skileez.payments.operations import create_payment

    create_payment(session, contract)
    return session


def expire_hold(session: Session) -> None:
    """The student did not pay in time: free the slot."""
    transition(session, "expired", reason="payment hold expired",
               where=(Session.hold_expires_at <= clock.now(),),
               values={"hold_expires_at": None})
    from skileez.payments.operations import payment_abandoned

    if session.payment is not None:
        payment_abandoned(session.payment)


def expire_stale_holds(*, coach_id: int | None = None, student_id: int | None = None,
                       limit: int = 200) -> int:
    """Expire unpaid holds that ran out, so they stop blocking the calendar right away."""
    conditions = [Session.status == "pending_payment", Session.hold_expires_at <= clock.now()]
    people = []
    if coach_id is not None:
        people.append(Session.coach_id == coach_id)
    if student_id is not None:
        people.append(Session.student_id == student_id)
    if people:
        conditions.append(or_(*people))
    stale = db.session.scalars(select(Session).where(*conditions)
                               .order_by(Session.hold_expires_at).limit(limit)).all()
    expired = 0
    for session in stale:
        try:
            with db.session.begin_nested():
                expire_hold(session)
            expired += 1
        except Conflict:
            continue
    return expired


def complete(session: Session, *, actor=None, reason: str = "session completed") -> None:
    """Mark a session done and start the escrow clock (release after the policy delay)."""
    now = clock.now()
    transition(session, "completed", actor=actor, reason=reason,
               values={"completed_at": now},
               illegal_message=f"This session is {session.status.replace('_', ' ')} and "
                               "cannot be completed.")
    from skileez.payments.operations import schedule_release

    if session.payment is not None:
        schedule_release(session.payment, completed_at=now)


def blocking_sessions(coach_id: int, student_id: int | None) -> list:
    """Busy intervals for the slot engine: the coach's and the student's live sessions."""
    from skileez.coaches.slots import Interval

    now = clock.now()
    people = [Session.coach_id == coach_id]
    if student_id is not None:
        people.append(Session.student_id == student_id)
    rows = db.session.execute(
        select(Session.starts_at, Session.ends_at).where(
            or_(*people), Session.ends_at > now - timedelta(days=1),
            Session.status.not_in(RELEASED_STATUSES),
            # An unpaid hold that ran out no longer blocks, even before the sweep sees it.
            or_(Session.status != "pending_payment", Session.hold_expires_at > now))
    ).all()
    return [Interval(start, end) for start, end in rows]
