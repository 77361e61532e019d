"""Card disputes at the bank (chargebacks) and transfer reversals (issue 11).

A cardholder can dispute a charge with their bank; Stripe tells us with
``charge.dispute.created``, ``.updated``, ``.funds_withdrawn``, ``.funds_reinstated`` and
``.closed`` events, each carrying the whole dispute. They may arrive twice and in any
order, so every event is read as a report of *facts* about one bank dispute (found by
Stripe's id on its ``Dispute`` row): its status (which never moves back: a late
``created`` does not reopen a ``lost`` dispute), whether the bank took the money, whether
it gave it back. The books then follow what the facts say the bank holds now:

* **Before release** the payment's release is frozen and an in-app dispute (``source
  'stripe'``) waits for an admin. The escrowed money stays in escrow in our books until
  the verdict: *lost* posts it to ``chargebacks`` (``chargeback_withdrawn``), the payment
  becomes ``charged_back`` and the coach is not paid; *won* leaves the admin to decide as
  for any dispute.
* **After release** the admin gets a case (a ``Dispute`` row too, which they cannot
  "decide": the bank does). When the bank takes the money, what the release moved is
  clawed back from the platform's fee and the coach's payable balance
  (``chargeback_withdrawn``), and if the coach's transfer was made it is reversed at
  Stripe by a ``TransferReversal`` job (``transfer_reversal`` posting: the coach's negative
  balance is repaid). A payout not yet transferred waits while the bank holds the
  money. When the bank gives it back (reinstated, or won) ``chargeback_reinstated`` makes
  the coach owed again.

Event order (checked against Stripe's dispute docs): ``funds_withdrawn`` reports the
money taken from the platform's balance, and ``funds_reinstated`` "occurs when funds are
reinstated to your account after a dispute is closed"; the dispute object in every event
lists zero, one or two balance transactions (withdrawn, then reinstated). So a dispute
that closed *won* either never took the money or took it and gave it back: what the bank
holds after a won verdict is nothing, whichever event arrives first. That is why a
``funds_withdrawn`` delivered after the ``closed`` (won) event posts nothing and queues
no reversal (the coach keeps the transfer, the books never moved), and a
``funds_reinstated`` on a dispute whose withdrawal we never booked posts nothing either;
had the withdrawal been booked first, the reinstatement (or the won verdict, whichever
comes first) reverses it exactly once. Lost is the mirror image: a lost verdict means
the bank holds the money even if ``funds_withdrawn`` never arrives. No order loses money
or counts it twice (tests/test_chargebacks.py, the "in any order" tests).

An admin can also reverse a paid transfer with a reason (a fraud finding, say): the
money comes back to the platform's balance as ``reversed_payouts``, owed to no one until
an admin refunds the student or pays the coach by hand.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import exists, or_, select, update

from skileez import clock
from skileez.core.errors import Conflict, DomainError
from skileez.core.money import format_money
from skileez.core.permissions import ALLOWED, Decision, deny
from skileez.core.queue import enqueue_after_commit, job
from skileez.core.transitions import record_creation, record_event, transition
from skileez.extensions import db
from skileez.notifications.operations import notify
from skileez.payments import ledger
from skileez.payments.attempts import ProviderAttempt
from skileez.payments.gateway import get_gateway
from skileez.payments.models import (
    BANK_CLOSED_STATUSES,
    BANK_NEEDS_RESPONSE,
    BANK_UNDER_REVIEW,
    Dispute,
    Payment,
    Payout,
    Repayment,
    TransferReversal,
)


class BankDispute(NamedTuple):
    """What one ``charge.dispute.*`` event says about the bank's dispute (already checked)."""

    id: str
    amount: int | None
    currency: str | None
    reason: str | None
    status: str | None
    due_by: datetime | None


def _rank(status: str | None) -> int:
    """How far along a dispute a status is: later events never move it back."""
    if status in BANK_CLOSED_STATUSES:
        return 3
    if status in BANK_UNDER_REVIEW:
        return 2
    if status in BANK_NEEDS_RESPONSE:
        return 1
    return 0


def _money(minor: int, currency: str) -> str:
    return format_money(minor, currency)


def funds_held_by_bank(payment_id) -> object:
    """SQL: the bank holds this payment's money now (its payout must wait)."""
    return exists().where(Dispute.payment_id == payment_id, Dispute.funds_out.is_(True))


# --- the events --------------------------------------------------------------------------

def apply_bank_dispute(payment: Payment, event_type: str, bank: BankDispute) -> str:
    """Record one event's facts about a bank dispute on ``payment`` and follow them.

    Returns what happened, for logs and tests. The caller (the webhook) has recorded the
    event id in this transaction, so a repeat never gets here.
    """
    if bank.currency and bank.currency.lower() != payment.currency.lower():
        return "ignored: another currency"
    dispute = db.session.scalar(select(Dispute).where(Dispute.stripe_dispute_id == bank.id))
    opened = dispute is None
    if dispute is None:
        dispute = _open_case(payment, bank)
    elif dispute.payment_id != payment.id:
        return "ignored: the dispute is on another payment"
    before = dispute.bank_status
    status = bank.status if _rank(bank.status) >= _rank(before) else before
    withdrew = dispute.bank_withdrew or event_type == "charge.dispute.funds_withdrawn" \
        or status == "lost"
    reinstated = dispute.bank_reinstated or event_type == "charge.dispute.funds_reinstated"
    values = {"bank_status": status, "bank_withdrew": withdrew, "bank_reinstated": reinstated}
    if _rank(bank.status) >= _rank(before):
        values |= {name: value for name, value in (
            ("bank_amount_minor", bank.amount), ("bank_reason", bank.reason),
            ("evidence_due_by", bank.due_by)) if value is not None}
    db.session.execute(update(Dispute).where(Dispute.id == dispute.id).values(**values)
                       .execution_options(synchronize_session=False))
    db.session.refresh(dispute)
    if status != before and not opened:
        record_event(dispute, field="bank_status", from_state=before, to_state=status,
                     reason=f"bank dispute {(status or 'unknown').replace('_', ' ')}")
    outcome = _follow(payment, dispute)
    if status in ("won", "lost") and before not in ("won", "lost"):
        _tell_outcome(payment, dispute)
    return ("opened; " if opened else "") + outcome


def _open_case(payment: Payment, bank: BankDispute) -> Dispute:
    """The in-app dispute for a bank dispute: the open one, if a student opened one (it
    becomes the bank's too), or a new one; the release is frozen if it is still due."""
    if payment.is_in_undisputed_escrow and bank.status not in BANK_CLOSED_STATUSES:
        transition(payment, "disputed", reason="card dispute opened at the bank",
                   expected=payment.status)
    existing = db.session.scalar(select(Dispute).where(Dispute.payment_id == payment.id,
                                                       Dispute.status == "open",
                                                       Dispute.stripe_dispute_id.is_(None)))
    why = f"Card dispute at the bank: {(bank.reason or 'unspecified').replace('_', ' ')}"
    if existing is not None:
        transition(existing, "open", expected="open", reason="the bank disputes it too",
                   values={"stripe_dispute_id": bank.id})
        return existing
    open_now = db.session.scalar(select(Dispute.id).where(Dispute.payment_id == payment.id,
                                                          Dispute.status == "open"))
    # One open dispute per payment: a second bank dispute on it is recorded as decided
    # (for the bank to decide), so the admin's list still shows it.
    item = Dispute(payment_id=payment.id, source="stripe", reason=why,
                   status="open" if open_now is None else "resolved",
                   stripe_dispute_id=bank.id)
    db.session.add(item)
    db.session.flush()
    record_creation(item, reason="card dispute at the bank")
    session = payment.session
    payload = session.notification_payload(reason=why, dispute_id=item.id,
                                           released=not payment.is_in_escrow)
    notify(payment.coach, "chargeback_opened", payload)
    notify(payment.student, "chargeback_opened", payload)
    return item


def _follow(payment: Payment, dispute: Dispute) -> str:
    """Make the books say what the bank holds; queue the transfer reversal it needs."""
    lost = dispute.bank_status == "lost"
    won = dispute.bank_status == "won"
    bank_holds = lost or (dispute.bank_withdrew and not dispute.bank_reinstated and not won)
    if payment.is_in_escrow:
        if won and not payment.is_disputed:
            _close_case(dispute, "bank_won")  # decided before we heard of it: nothing froze
        if not lost:
            return "frozen" if payment.is_disputed else "recorded"
        ledger.post_chargeback_withdrawn(
            payment, memo=f"card dispute {dispute.stripe_dispute_id} lost")
        transition(payment, "charged_back", expected=payment.status,
                   reason="card dispute lost at the bank", values={"release_at": None})
        _set_funds_out(dispute, True)
        _close_case(dispute, "bank_lost")
        return "lost before release: charged back"
    if payment.status != "released":
        return f"recorded ({payment.status.replace('_', ' ')})"
    outcome = "recorded"
    if bank_holds and not dispute.funds_out:
        ledger.post_chargeback_withdrawn(
            payment, memo=f"card dispute {dispute.stripe_dispute_id}: funds withdrawn")
        _set_funds_out(dispute, True)
        outcome = "clawed back" + _reverse_for_chargeback(payment, dispute)
        session = payment.session
        notify(payment.coach, "chargeback_withdrawn", session.notification_payload(
            amount=_money(payment.payout.amount_minor if payment.payout else 0,
                          payment.currency), dispute_id=dispute.id))
    elif not bank_holds and dispute.funds_out:
        ledger.post_chargeback_reinstated(
            payment, memo=f"card dispute {dispute.stripe_dispute_id}: funds reinstated")
        _set_funds_out(dispute, False)
        outcome = "reinstated" + _repay_if_taken_back(payment.payout)
    if lost:
        outcome += _cancel_unpaid_payout(payment.payout)
    if dispute.bank_closed and dispute.is_open:
        _close_case(dispute, "bank_won" if won else "bank_lost")
    return outcome


def _cancel_unpaid_payout(payout: Payout | None) -> str:
    """Lost for good: a payout not transferred yet never will be. Not while a job is
    talking to Stripe for it (that job's transfer is then reversed: ``payout_landed``)."""
    if payout is None or payout.status not in ("pending", "failed", "payable"):
        return ""
    now = clock.now()
    try:
        transition(payout, "reversed", expected=payout.status,
                   reason="card dispute lost at the bank: not paid out",
                   where=(or_(Payout.claimed_until.is_(None), Payout.claimed_until <= now),),
                   values={"next_attempt_at": None, "queued_until": None})
    except Conflict:
        return "; payout held back"
    return "; payout cancelled"


def _set_funds_out(dispute: Dispute, out: bool) -> None:
    db.session.execute(update(Dispute).where(Dispute.id == dispute.id)
                       .values(funds_out=out).execution_options(synchronize_session=False))
    db.session.refresh(dispute)


def _close_case(dispute: Dispute, resolution: str) -> None:
    if not dispute.is_open:
        return
    transition(dispute, "resolved", expected="open",
               reason="the bank decided: " + ("won" if resolution == "bank_won" else "lost"),
               values={"resolution": resolution, "resolved_at": clock.now()})


def _reverse_for_chargeback(payment: Payment, dispute: Dispute) -> str:
    """Queue the reversal of the coach's transfer, if one was made and not reversed yet."""
    payout = payment.payout
    if payout is None or payout.status != "paid" or payout.reversal is not None:
        return "; payout held back" if payout is not None and payout.status != "paid" else ""
    reversal = _new_reversal(payout, kind="chargeback", dispute=dispute,
                             reason=f"card dispute {dispute.stripe_dispute_id}: the bank "
                                    "took the payment back")
    return f"; transfer reversal #{reversal.id} queued"


def payout_landed(payout: Payout) -> None:
    """A transfer was recorded while the bank holds its payment (the job was already
    talking to Stripe when the chargeback came): take it back as well."""
    dispute = db.session.scalar(select(Dispute).where(Dispute.payment_id == payout.payment_id,
                                                      Dispute.funds_out.is_(True)).limit(1))
    if dispute is not None and payout.reversal is None:
        _new_reversal(payout, kind="chargeback", dispute=dispute,
                      reason=f"card dispute {dispute.stripe_dispute_id}: the bank took the "
                             "payment back while it was being paid out")


def _tell_outcome(payment: Payment, dispute: Dispute) -> None:
    session = payment.session
    payload = session.notification_payload(
        won=dispute.bank_status == "won", dispute_id=dispute.id,
        released=payment.status == "released",
        amount=_money(dispute.bank_amount_minor or payment.amount_minor, payment.currency))
    notify(payment.coach, "chargeback_closed", payload)
    notify(payment.student, "chargeback_closed", payload)


# --- transfer reversals ------------------------------------------------------------------

def _new_reversal(payout: Payout, *, kind: str, reason: str, dispute: Dispute | None = None,
                  actor=None) -> TransferReversal:
    reversal = TransferReversal(payout_id=payout.id, dispute_id=getattr(dispute, "id", None),
                                kind=kind, amount_minor=payout.amount_minor,
                                currency=payout.currency, reason=reason[:1000],
                                status="pending", next_attempt_at=clock.now(),
                                created_by_id=getattr(actor, "id", None))
    db.session.add(reversal)
    db.session.flush()
    record_creation(reversal, actor=actor, reason=reason[:255])
    enqueue_after_commit(reverse_transfer, reversal.id, queue="payouts",
                         claim=(TransferReversal, reversal.id))
    return reversal


def can_reverse_payout(payout: Payout) -> Decision:
    """Only a transferred payout, not reversed (or being reversed) already."""
    if payout.reversal is not None:
        return deny("This payout is already reversed or being reversed.")
    if payout.status != "paid" or not payout.transfer_id:
        return deny(f"This payout is {payout.status}; only a transferred payout can be "
                    "reversed.")
    return ALLOWED


def reverse_payout(payout: Payout, admin, *, reason: str) -> TransferReversal:
    """An admin takes a coach's transfer back (after a fraud finding, say), with a reason.

    The money returns to the platform's Stripe balance and sits in ``reversed_payouts``:
    owed to no one until an admin refunds the student or pays the coach. The audit
    event names the admin and the reason; the coach is told when Stripe has done it.
    """
    decision = can_reverse_payout(payout)
    if not decision:
        raise Conflict(decision.reason)
    reason = reason.strip()
    if len(reason) < 5:
        raise DomainError("Say why the payout is reversed (at least 5 characters).",
                          field="reason")
    return _new_reversal(payout, kind="admin", actor=admin,
                         reason=f"reversed by {admin.name}: {reason}")


class ReversalAttempt(ProviderAttempt):
    """A transfer reversal, sent to Stripe with the reversal row as idempotency key."""

    model = TransferReversal
    finished = ("succeeded",)
    failure_reason = "transfer reversal failed"

    def blocked(self, reversal: TransferReversal) -> str | None:
        """A chargeback's reversal not sent before the bank gave the money back is not
        needed any more: the coach keeps their transfer. It stays unsent (no retry)."""
        if reversal.kind != "chargeback" or reversal.dispute_id is None:
            return None
        if db.session.scalar(select(Dispute.funds_out).where(
                Dispute.id == reversal.dispute_id)):
            return None
        db.session.execute(update(TransferReversal).where(TransferReversal.id == reversal.id)
                           .values(next_attempt_at=None, queued_until=None)
                           .execution_options(synchronize_session=False))
        return "not needed: the bank gave the money back"

    def ask(self, reversal: TransferReversal) -> str:
        payout = reversal.payout
        return get_gateway().reverse_transfer(
            transfer_id=payout.transfer_id, amount_minor=reversal.amount_minor,
            idempotency_key=f"transfer-reversal-{reversal.id}",
            metadata={"transfer_reversal_id": str(reversal.id), "payout_id": str(payout.id),
                      "payment_id": str(payout.payment_id)})

    def record(self, reversal: TransferReversal, reversal_id: str, expected: str) -> str:
        transition(reversal, "succeeded", expected=expected, reason="reversed at Stripe",
                   values={"gateway_reversal_id": reversal_id, "last_error": None,
                           "next_attempt_at": None, "claimed_until": None})
        payout = reversal.payout
        transition(payout, "reversed", expected="paid", reason=reversal.reason[:255])
        ledger.post_transfer_reversal(payout, amount_minor=reversal.amount_minor,
                                      to_coach=reversal.kind == "chargeback",
                                      memo=reversal.reason)
        if reversal.kind == "chargeback" and not db.session.scalar(
                select(Dispute.funds_out).where(Dispute.id == reversal.dispute_id)):
            # The bank gave the money back while this reversal was on its way to Stripe:
            # the coach is owed again, so they are paid again.
            _repay(reversal)
        payment = payout.payment
        notify(payout.coach, "payout_reversed", payment.session.notification_payload(
            amount=_money(reversal.amount_minor, reversal.currency),
            chargeback=reversal.kind == "chargeback",
            reason=reversal.reason[:300]))
        return "reversed"


@job
def reverse_transfer(reversal_id: int) -> str:
    """Send a transfer reversal to Stripe, exactly once (see ``ProviderAttempt``)."""
    return ReversalAttempt().run(reversal_id)


# --- paying the coach again after a won chargeback ------------------------------------------

def _repay_if_taken_back(payout: Payout | None) -> str:
    """The bank gave the money back: if the coach's transfer was already taken back, the
    coach is owed again (``chargeback_reinstated``) and is paid again. A reversal not
    sent yet is never sent (``ReversalAttempt.blocked``); one in flight repays when it
    lands (``ReversalAttempt.record``)."""
    reversal = payout.reversal if payout is not None else None
    if reversal is None or reversal.kind != "chargeback" or reversal.status != "succeeded":
        return ""
    repayment = _repay(reversal)
    return f"; repayment #{repayment.id} queued" if repayment is not None else ""


def _repay(reversal: TransferReversal) -> Repayment | None:
    """One repayment per reversal (unique): a repeat finds the first."""
    if reversal.repayment is not None:
        return None
    payout = reversal.payout
    repayment = Repayment(reversal_id=reversal.id, payment_id=payout.payment_id,
                          coach_id=payout.coach_id, amount_minor=reversal.amount_minor,
                          currency=reversal.currency, status="pending",
                          next_attempt_at=clock.now())
    db.session.add(repayment)
    db.session.flush()
    record_creation(repayment, reason="the bank gave the money back: the coach is paid again")
    enqueue_after_commit(repay_coach, repayment.id, queue="payouts",
                         claim=(Repayment, repayment.id))
    return repayment


class RepaymentAttempt(ProviderAttempt):
    """The new transfer to a coach whose transfer a won chargeback had taken back, with
    the repayment row as idempotency key (the payout's own key was used once already)."""

    model = Repayment
    finished = ("paid",)
    failure_reason = "repayment transfer failed"

    def due(self, repayment: Repayment, now: datetime) -> bool:
        return repayment.status == "payable" or super().due(repayment, now)

    def blocked(self, repayment: Repayment) -> str | None:
        """As a payout: without a connected account it waits in the payable balance, and
        while a bank holds the payment again it waits too."""
        from skileez.payments.operations import payout_account

        if db.session.scalar(select(funds_held_by_bank(repayment.payment_id))):
            return "held back: card dispute"
        if payout_account(repayment.coach):
            return None
        if repayment.status != "payable":
            transition(repayment, "payable", reason="coach has no payout account yet",
                       values={"next_attempt_at": None, "queued_until": None})
        return "payable"

    def ask(self, repayment: Repayment) -> str:
        from skileez.payments.operations import payout_account

        payment = repayment.payment
        return get_gateway().create_transfer(
            amount_minor=repayment.amount_minor, currency=repayment.currency,
            destination=payout_account(repayment.coach),
            transfer_group=f"session-{payment.session_id}", source_transaction=None,
            idempotency_key=f"repayment-{repayment.id}",
            metadata={"repayment_id": str(repayment.id), "payment_id": str(payment.id)})

    def record(self, repayment: Repayment, transfer_id: str, expected: str) -> str:
        transition(repayment, "paid", expected=expected, reason="transferred again",
                   values={"transfer_id": transfer_id, "paid_at": clock.now(),
                           "last_error": None, "next_attempt_at": None,
                           "claimed_until": None})
        ledger.post_repayment(repayment)
        return "paid"


@job
def repay_coach(repayment_id: int) -> str:
    """Transfer a won chargeback's coach their share again, exactly once."""
    return RepaymentAttempt().run(repayment_id)


def repayment_words(repayment: Repayment) -> str:
    """Where a repayment after a won chargeback stands, for the admin's payment page."""
    amount = _money(repayment.amount_minor, repayment.currency)
    return {"paid": f"{amount} paid to the coach again after the bank decided for them.",
            "payable": f"{amount} owed to the coach again; transferred once their Stripe "
                       "account can receive payouts.",
            "failed": f"{amount} to pay the coach again: the transfer failed and is retried "
                      "automatically."}.get(repayment.status,
                                            f"{amount} being transferred to the coach again.")


# --- evidence for the bank -----------------------------------------------------------------

def _utc(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def session_summary(payment: Payment, history) -> str:
    """The session's record as plain text for the bank: times (UTC), who joined when, the
    start, completion or missed events, both people's notes and the timeline."""
    session = payment.session
    lines = [
        f"Session: {session.contract.title} #{session.number}, coach {payment.coach.name}, "
        f"student {payment.student.name}.",
        f"Booked for {_utc(session.starts_at)} to {_utc(session.ends_at)}; "
        f"status {session.status.replace('_', ' ')}.",
        f"Paid: {_money(payment.amount_minor, payment.currency)} on {_utc(payment.paid_at)}.",
        f"Started: {_utc(session.started_at)}"
        + (f" by {session.started_by.name}" if session.started_by else "") + ".",
        f"{payment.student.name} joined: "
        + (_utc(session.student_joined_at) if session.student_joined_at else "never") + ".",
        f"{payment.coach.name} joined: "
        + (_utc(session.coach_joined_at) if session.coach_joined_at else "never") + ".",
        f"Completed: {_utc(session.completed_at)}"
        + (f" by {session.completed_by.name}" if session.completed_by else "") + ".",
    ]
    if session.missed_by:
        lines.append(f"Missed: by the {session.missed_by}"
                     + (f" ({session.missed_reason})" if session.missed_reason else "") + ".")
    if session.coach_notes:
        lines.append(f"Coach's notes: {session.coach_notes}")
    if session.student_notes:
        lines.append(f"Student's notes: {session.student_notes}")
    lines.append("Timeline:")
    for event in history:
        what = (event.reason or str(event.to_state or "").replace("_", " "))
        who = f" ({event.actor.name})" if event.actor is not None else ""
        lines.append(f"- {_utc(event.created_at)}: {what}{who}")
    return "\n".join(lines)


#: Stripe's limit on the combined length of the text evidence fields.
EVIDENCE_LIMIT = 20000


def can_submit_evidence(dispute: Dispute) -> Decision:
    if not dispute.is_bank_dispute:
        return deny("This dispute was not opened at the bank; there is nothing to send.")
    if dispute.evidence_submitted_at is not None:
        return deny("Evidence was already submitted; the bank is reviewing it.")
    if not dispute.awaits_evidence:
        return deny(f"The bank no longer takes evidence (the dispute is "
                    f"{(dispute.bank_status or 'unknown').replace('_', ' ')}).")
    return ALLOWED


def evidence_problem(text: str, summary: str | None) -> DomainError | None:
    """What is wrong with the evidence before anything is sent (None: nothing)."""
    if not text.strip():
        return DomainError("Write what the bank should know.", field="text")
    if len(text.strip()) + len(summary or "") > EVIDENCE_LIMIT:
        return DomainError(f"Stripe takes at most {EVIDENCE_LIMIT} characters of text "
                           "evidence with the session's record; shorten it.", field="text")
    return None


def submit_evidence(dispute: Dispute, admin, *, text: str, summary: str | None) -> str:
    """Send the admin's text (and the session's summary) to the bank through Stripe.

    A network call: run it inside ``attempts.provider_call()``. The idempotency key is
    the dispute row, so a double click sends it once. What was sent is recorded on the
    dispute, with the status Stripe answered.
    """
    decision = can_submit_evidence(dispute)
    if not decision:
        raise Conflict(decision.reason)
    problem = evidence_problem(text, summary)
    if problem is not None:
        raise problem
    text = text.strip()
    payment = dispute.payment
    evidence = {"uncategorized_text": text,
                "product_description": f"Coaching session: {payment.session.contract.title}",
                "customer_name": payment.student.name,
                "customer_email_address": payment.student.email,
                "service_date": payment.session.starts_at.strftime("%Y-%m-%d")}
    if summary:
        evidence["access_activity_log"] = summary
    status = get_gateway().submit_dispute_evidence(
        dispute_id=dispute.stripe_dispute_id, evidence=evidence,
        idempotency_key=f"dispute-evidence-{dispute.id}")
    status = status if _rank(status) >= _rank(dispute.bank_status) else dispute.bank_status
    if dispute.is_open:
        transition(dispute, "open", expected="open", actor=admin,
                   reason="evidence sent to the bank",
                   values={"evidence_text": text, "evidence_summary": summary,
                           "evidence_submitted_at": clock.now(), "bank_status": status})
    else:
        _record_evidence(dispute, admin, text, summary, status)
    return status


def _record_evidence(dispute: Dispute, admin, text: str, summary: str | None,
                     status: str | None) -> None:
    """A case already decided in the app (a second bank dispute) still takes evidence."""
    db.session.execute(update(Dispute).where(Dispute.id == dispute.id).values(
        evidence_text=text, evidence_summary=summary, evidence_submitted_at=clock.now(),
        bank_status=status).execution_options(synchronize_session=False))
    record_event(dispute, field="evidence", from_state=None, to_state="submitted",
                 actor=admin, reason="evidence sent to the bank")
    db.session.refresh(dispute)


# --- what the coach reads on their earnings page ---------------------------------------------

def chargeback_words(dispute: Dispute) -> str:
    """Where the coach's money stands after a card dispute, in one or two sentences."""
    payment = dispute.payment
    payout = payment.payout
    cur = payment.currency
    share = _money(payout.amount_minor if payout else payment.coach_net_minor, cur)
    reversal = payout.reversal if payout is not None else None
    if payment.status == "charged_back":
        return ("The bank gave the payment back to the student before it was released; "
                "nothing of it is paid to you.")
    if dispute.bank_status == "lost":
        if reversal is not None and reversal.status == "succeeded":
            return (f"The bank decided for the cardholder: your share of {share} was taken "
                    "back from your Stripe account (the transfer was reversed).")
        if reversal is not None:
            return (f"The bank decided for the cardholder; your share of {share} is being "
                    f"taken back from your Stripe account. Until then your balance shows "
                    f"−{share}.")
        return f"The bank decided for the cardholder; your share of {share} is not paid to you."
    if dispute.funds_out:
        if reversal is not None and reversal.status == "succeeded":
            return (f"The bank took the payment back, so your share of {share} was taken back "
                    "from your Stripe account (the transfer was reversed). If the bank "
                    "decides for you, it is owed to you again.")
        if reversal is not None:
            return (f"The bank took the payment back; your share of {share} is being taken "
                    f"back from your Stripe account. Until then your balance shows −{share}.")
        return (f"The bank took the payment back; your payout of {share} waits until the bank "
                "decides.")
    if dispute.bank_withdrew and (dispute.bank_reinstated or dispute.bank_status == "won"):
        if reversal is not None and reversal.status == "succeeded":
            repayment = reversal.repayment
            if repayment is not None and repayment.status == "paid":
                return (f"Paid again after the bank decided for you: {share} was transferred "
                        "to your Stripe account again.")
            if repayment is not None and repayment.status == "payable":
                return (f"The bank decided for you and returned the money: {share} is owed to "
                        "you again, and is transferred once your Stripe account can receive "
                        "payouts.")
            return (f"The bank decided for you and returned the money: {share} is owed to "
                    "you again and is being transferred to you.")
        return "The bank returned the money before anything was taken from you."
    if dispute.bank_status == "won":
        return "The bank decided for you; nothing was taken."
    if dispute.bank_status in BANK_CLOSED_STATUSES:
        return "The bank closed the dispute."
    return "The bank is reviewing the dispute; nothing has been taken from you yet."
