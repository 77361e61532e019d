"""Ending a contract early: what it would do (the preview a person confirms), and doing it.

Either participant can end an active contract. Every session booked after now is
cancelled by the ordinary ``operations.cancel`` in the ender's name, so each gets
exactly the refund a one-by-one cancellation by the same person would give (the
policy's early/late line, who cancels). Bookings still waiting for payment are
released as an expired hold is (their payments abandoned). A session that has
started but is not finished makes the ending wait: its outcome (completed, missed)
decides money the ending must not guess.

The preview and the ending are the same computation. The page carries the
preview's fingerprint; the POST recomputes it under the contract's row lock and
refuses (409) when it differs, so the money applied is always the money shown.
This lives in ``sessions`` rather than ``contracts`` because it acts on sessions
(contracts sit below sessions in the layers).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from skileez import clock
from skileez.contracts.models import END_REASON_MAX_CHARS, Contract
from skileez.core.errors import Conflict, DomainError
from skileez.core.events import announce
from skileez.core.money import format_money, share
from skileez.core.permissions import Decision, deny
from skileez.core.timezones import format_local
from skileez.core.transitions import transition, transition_many
from skileez.extensions import db
from skileez.notifications.operations import notify
from skileez.policy import get_policy
from skileez.sessions import lifecycle
from skileez.sessions.lifecycle import CancelTerms
from skileez.sessions.models import Session
from skileez.sessions.operations import cancel

STALE = ("Things changed since you opened this page (a session was booked, paid, moved or "
         "cancelled, or a refund would now be different). Review again before ending the "
         "contract.")
IN_PROGRESS = ("{label} has started and is not finished yet. Finish it, or mark the session "
               "in progress as completed or missed first, then end the contract.")
# A tester read "has started" about a session nobody had started: its time has come, and
# until it has an outcome its money cannot be reckoned.
NO_OUTCOME_YET = ("{label} was due to start and has no outcome yet, so its payment cannot be "
                  "settled by ending the contract. It is completed or marked missed on its "
                  "session page (missed from {missed_from}), or settled automatically "
                  "{close_after} minutes after its end; then you can end the contract.")


@dataclass(frozen=True)
class CancelLine:
    """One booked session the ending cancels, with the terms the ender would get."""

    session: Session
    terms: CancelTerms
    currency: str
    paid: int | None  # what escrow holds for it now; None when nothing is held to refund
    refund: int | None
    disputed: bool = False

    @property
    def kept(self) -> int | None:
        return None if self.paid is None else self.paid - (self.refund or 0)


@dataclass
class EndPreview:
    contract: Contract
    ender: object
    now: datetime
    cancelled: list[CancelLine] = field(default_factory=list)
    released: list[Session] = field(default_factory=list)  # unpaid bookings let go
    unfinished: list[Session] = field(default_factory=list)  # started, outcome open
    # Places no session was using when the preview was made; released with the contract.
    unbooked_places: int = 0

    @property
    def outcome(self) -> str:
        """``completed`` when every place of the contract was used by a completed session."""
        done = sum(1 for s in self.contract.sessions if lifecycle.is_completed(s))
        return "completed" if done >= self.contract.total_sessions else "cancelled"

    @property
    def total_refund(self) -> int:
        return sum(line.refund or 0 for line in self.cancelled)

    @property
    def currency(self) -> str:
        return self.contract.currency

    @property
    def decision(self) -> Decision:
        allowed = self.contract.can_end(self.ender)
        if not allowed:
            return allowed
        if self.unfinished:
            session = self.unfinished[0]
            if session.status == "in_progress":
                return deny(IN_PROGRESS.format(label=_label(session, self.ender)))
            policy = get_policy()
            return deny(NO_OUTCOME_YET.format(
                label=_label(session, self.ender),
                missed_from=format_local(session.starts_at + policy.mark_missed_after_start,
                                         self.ender.timezone, "time"),
                close_after=int(policy.auto_close_after_end.total_seconds() // 60)))
        return allowed

    def fingerprint(self) -> str:
        """What the money and the sessions touched depend on, hashed: equal fingerprints
        mean the ending would do exactly what the page showed."""
        parts = [f"c{self.contract.id}:{self.contract.status}:{self.ender.id}"]
        parts += [f"s{line.session.id}:{line.session.version}:{line.terms.late}:"
                  f"{line.terms.refund_share}:{line.paid}:{line.refund}"
                  for line in self.cancelled]
        parts += [f"r{s.id}:{s.version}" for s in self.released]
        parts += [f"u{s.id}:{s.version}" for s in self.unfinished]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _label(session: Session, viewer) -> str:
    return f"The session of {format_local(session.starts_at, viewer.timezone)}"


def _line(session: Session, ender, now: datetime) -> CancelLine:
    terms = lifecycle.cancel_terms(session, ender, now)
    payment = getattr(session, "payment", None)
    currency = payment.currency if payment is not None else session.contract.currency
    if payment is None or not payment.is_in_undisputed_escrow:
        return CancelLine(session, terms, currency, None, None,
                          disputed=payment is not None and payment.status == "disputed")
    paid = payment.remaining_minor
    return CancelLine(session, terms, currency, paid, share(paid, terms.refund_share))


def preview(contract: Contract, ender, now: datetime | None = None) -> EndPreview:
    """What ending ``contract`` now, as ``ender``, would cancel, release and refund."""
    now = now or clock.now()
    result = EndPreview(contract=contract, ender=ender, now=now, unbooked_places=max(
        contract.total_sessions - contract.booked_sessions, 0))
    for session in sorted(contract.sessions, key=lambda s: (s.starts_at, s.id)):
        if lifecycle.is_final(session):
            continue
        if lifecycle.awaits_payment(session):
            result.released.append(session)
        elif lifecycle.is_in_progress(session) or session.starts_at <= now:
            result.unfinished.append(session)
        else:
            result.cancelled.append(_line(session, ender, now))
    return result


def _locked(contract: Contract) -> Contract:
    """The contract and its sessions as they are now, the contract row locked (PostgreSQL;
    on SQLite the caller's serialized transaction holds the write lock): a booking racing
    the ending waits for it, then finds the contract ended."""
    db.session.refresh(contract, with_for_update=True)
    db.session.execute(select(Session).where(Session.contract_id == contract.id)
                       .execution_options(populate_existing=True)).all()
    db.session.expire(contract, ["sessions"])
    return contract


def check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Say why you are ending the contract; both of you will see it.",
                          field="reason")
    if len(reason) > END_REASON_MAX_CHARS:
        raise DomainError(f"Keep the reason under {END_REASON_MAX_CHARS} characters.",
                          field="reason")
    return reason


def end_contract(contract: Contract, ender, *, reason: str, fingerprint: str) -> EndPreview:
    """End the contract as its preview with ``fingerprint`` said, or refuse with nothing
    changed: 409 when it is no longer active, when a session is under way, or when the
    preview went stale."""
    reason = check_reason(reason)
    contract = _locked(contract)
    plan = preview(contract, ender)
    decision = plan.decision
    if not decision:
        raise Conflict(decision.reason)
    if plan.fingerprint() != fingerprint:
        raise Conflict(STALE)
    role = "coach" if ender.id == contract.coach_id else "student"
    now = plan.now
    refunds = []
    for line in plan.cancelled:
        refunded = cancel(line.session, ender, reason=f"Contract ended: {reason}", now=now,
                          tell_other=False)
        if refunded != (line.refund or 0):  # cannot happen under the lock; never silently
            raise Conflict(STALE)
        refunds.append({"starts_at": line.session.starts_at.isoformat(), "late": line.terms.late,
                        "refund": format_money(refunded, line.currency) if line.paid is not None
                        else ""})
    if plan.released:
        won = transition_many(Session, [s.id for s in plan.released], "expired",
                              expected="pending_payment", actor=ender,
                              reason=f"contract ended by the {role} before payment",
                              values={"hold_expires_at": None})
        if len(won) != len(plan.released):
            raise Conflict(STALE)
        announce("holds_expired", sessions=plan.released, notice="contract_ended")
    outcome = plan.outcome
    transition(contract, outcome, actor=ender, expected="active",
               reason=f"ended by the {role}: {reason}",
               values={"ended_by_id": ender.id, "ended_at": now, "end_reason": reason},
               illegal_message=f"This contract is already {contract.status}; it cannot be "
                               "ended again.")
    payload = {"contract_id": contract.id, "contract_title": contract.title,
               "ended_by": ender.name, "ended_by_id": ender.id, "ender_role": role,
               "reason": reason, "outcome": outcome, "refunds": refunds,
               "total_refund": format_money(plan.total_refund, plan.currency),
               "released": len(plan.released), "unbooked_places": plan.unbooked_places,
               "coach_name": contract.coach.name, "student_name": contract.student.name}
    for person in (contract.student, contract.coach):
        notify(person, "contract_ended", payload)
    return plan
