"""Proposal and contract writes: each through the transition helper, each telling the other side."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from skileez import clock
from skileez.coaches.models import Offering
from skileez.contracts.models import Contract, Proposal
from skileez.core.errors import Conflict, DomainError
from skileez.core.transitions import record_creation, transition
from skileez.extensions import db
from skileez.notifications.operations import mark_read_about, notify
from skileez.policy import get_policy

ONE_PENDING = ("You already have a pending proposal for this offering. Wait for the coach's "
               "answer, or withdraw it to send a new one.")


def _payload(proposal: Proposal, **extra) -> dict:
    return {"proposal_id": proposal.id, "offering_title": proposal.offering.title,
            "student_name": proposal.student.name, "coach_name": proposal.coach.name,
            "sessions_count": proposal.sessions_count, **extra}


def propose(student, offering: Offering, *, sessions_count: int, message: str) -> Proposal:
    if not student.is_student:
        raise Conflict("Only students can propose contracts.")
    if not offering.is_active or not offering.coach.is_active:
        raise Conflict("This offering is not available any more.")
    policy = get_policy()
    if not policy.proposal_sessions_min <= sessions_count <= policy.proposal_sessions_max:
        raise DomainError(f"Choose between {policy.proposal_sessions_min} and "
                          f"{policy.proposal_sessions_max} sessions.", field="sessions_count")
    if len(message) > policy.proposal_message_max_chars:
        raise DomainError(f"Keep the message under {policy.proposal_message_max_chars} "
                          "characters.", field="message")
    existing = db.session.scalar(select(Proposal.id).where(
        Proposal.student_id == student.id, Proposal.offering_id == offering.id,
        Proposal.status == "pending"))
    if existing:
        raise Conflict(ONE_PENDING)
    now = clock.now()
    proposal = Proposal(student_id=student.id, coach_id=offering.coach_id,
                        offering_id=offering.id, sessions_count=sessions_count,
                        message=message.strip(), status="pending",
                        expires_at=now + policy.proposal_expiry, created_at=now)
    try:
        with db.session.begin_nested():
            db.session.add(proposal)
            db.session.flush()
    except IntegrityError:
        raise Conflict(ONE_PENDING) from None
    record_creation(proposal, actor=student, reason="proposal sent")
    notify(proposal.coach, "proposal_received",
           _payload(proposal, expires_at=proposal.expires_at.isoformat(),
                    message=proposal.message[:300]))
    return proposal


def accept(proposal: Proposal, coach, *, response_message: str = "") -> Contract:
    """Accept and create the contract, with the offering as it is right now.

    The compare-and-set on the proposal lets exactly one of two racing accepts
    through; the unique proposal_id on contracts is the second line of defence.
    """
    if coach.id != proposal.coach_id:
        raise Conflict(proposal.can_answer(coach).reason)
    transition(proposal, "accepted", actor=coach, reason="accepted by the coach",
               values={"decided_at": clock.now(), "response_message":
                       response_message.strip() or None},
               illegal_message=f"This proposal was already {proposal.status}, so it can "
                               "no longer be accepted.")
    offering = proposal.offering
    contract = Contract(proposal_id=proposal.id, student_id=proposal.student_id,
                        coach_id=proposal.coach_id, offering_id=offering.id,
                        title=offering.title, duration_minutes=offering.duration_minutes,
                        price_minor=offering.price_minor, currency=offering.currency,
                        total_sessions=proposal.sessions_count, status="active",
                        created_at=clock.now())
    db.session.add(contract)
    try:
        db.session.flush()
    except IntegrityError:
        raise Conflict("This proposal has already become a contract.") from None
    record_creation(contract, actor=coach, reason=f"from proposal #{proposal.id}")
    mark_read_about(coach, "proposal_received", proposal_id=proposal.id)
    notify(proposal.student, "proposal_accepted",
           _payload(proposal, contract_id=contract.id,
                    response=proposal.response_message or ""))
    return contract


def decline(proposal: Proposal, coach, *, response_message: str = "") -> None:
    if coach.id != proposal.coach_id:
        raise Conflict(proposal.can_answer(coach).reason)
    transition(proposal, "declined", actor=coach, reason="declined by the coach",
               values={"decided_at": clock.now(), "response_message":
                       response_message.strip() or None},
               illegal_message=f"This proposal was already {proposal.status}, so it can "
                               "no longer be declined.")
    mark_read_about(coach, "proposal_received", proposal_id=proposal.id)
    notify(proposal.student, "proposal_declined",
           _payload(proposal, response=response_message.strip()))


def withdraw(proposal: Proposal, student) -> None:
    if student.id != proposal.student_id:
        raise Conflict(proposal.can_withdraw(student).reason)
    transition(proposal, "withdrawn", actor=student, reason="withdrawn by the student",
               values={"decided_at": clock.now()},
               illegal_message=f"This proposal was already {proposal.status}, so it can "
                               "no longer be withdrawn.")
    notify(proposal.coach, "proposal_withdrawn", _payload(proposal))


def expire(proposal: Proposal) -> None:
    """Called by the sweep when a pending proposal's week is up."""
    transition(proposal, "expired", reason="no answer within the expiry period",
               where=(Proposal.expires_at <= clock.now(),),
               values={"decided_at": clock.now()})
    for person in (proposal.student, proposal.coach):
        notify(person, "proposal_expired", _payload(proposal))


def _contract_payload(contract: Contract, **extra) -> dict:
    return {"contract_id": contract.id, "contract_title": contract.title,
            "coach_name": contract.coach.name, "student_name": contract.student.name, **extra}


def pause_bookings(contract: Contract, coach) -> None:
    """The coach stops new bookings; sessions already booked (or awaiting payment) go on."""
    decision = contract.can_pause(coach)
    if not decision:
        raise Conflict(decision.reason)
    transition(contract, True, field="paused", actor=coach,
               reason="new bookings paused by the coach",
               where=(Contract.status == "active",),
               values={"paused_at": clock.now(), "paused_by_id": coach.id},
               illegal_message="New bookings are already paused.")
    notify(contract.student, "contract_paused", _contract_payload(contract))


def resume_bookings(contract: Contract, coach) -> None:
    decision = contract.can_resume(coach)
    if not decision:
        raise Conflict(decision.reason)
    transition(contract, False, field="paused", actor=coach,
               reason="new bookings resumed by the coach",
               where=(Contract.status == "active",),
               values={"paused_at": None, "paused_by_id": None},
               illegal_message="New bookings are not paused.")
    notify(contract.student, "contract_resumed", _contract_payload(contract))
