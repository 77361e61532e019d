"""Money: payments held in escrow, payouts to coaches, refunds, disputes, Stripe events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from skileez import clock
from skileez.core.types import UTCDateTime
from skileez.extensions import db


class Payment(db.Model):
    """What the student pays for one session; held until released to the coach."""

    __tablename__ = "payments"
    __display_name__ = "payment"
    __transitions__ = {"status": {
        "pending": {"held", "failed"},
        # A declined card can be retried while the hold lasts.
        "failed": {"held", "failed"},
        "held": {"released", "refunded", "partially_refunded", "disputed", "charged_back"},
        "partially_refunded": {"released", "refunded", "partially_refunded", "disputed",
                               "charged_back"},
        "disputed": {"released", "refunded", "partially_refunded", "charged_back"},
        "released": set(),
        "refunded": set(),
        # A card dispute lost at the bank before release: the escrowed money went to the
        # bank (a chargeback posting), so nothing is released or refunded. The bank's
        # verdict may arrive before the dispute itself, so undisputed escrow may go here too.
        "charged_back": set(),
    }}
    # Named sets of states, used by queries, rules and templates alike.
    # The money reached escrow (a hold was posted): everything but an unpaid payment.
    FUNDED_STATES = ("held", "partially_refunded", "disputed", "released", "refunded",
                     "charged_back")
    # The money, less refunds, is still in escrow.
    ESCROW_STATES = ("held", "partially_refunded", "disputed")
    # In escrow and not frozen by a dispute: the rules may release, refund or dispute it.
    UNDISPUTED_ESCROW_STATES = ("held", "partially_refunded")

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), unique=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    coach_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    fee_minor: Mapped[int] = mapped_column(BigInteger)
    coach_net_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(24), default="pending")
    gateway: Mapped[str] = mapped_column(String(10))  # 'stripe' or 'test'
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    client_secret: Mapped[str | None] = mapped_column(String(255))
    charge_id: Mapped[str | None] = mapped_column(String(255))
    failure_message: Mapped[str | None] = mapped_column(Text)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    release_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)

    session = relationship("Session", backref=db.backref("payment", uselist=False))
    student = relationship("User", foreign_keys=[student_id])
    coach = relationship("User", foreign_keys=[coach_id])

    __table_args__ = (
        CheckConstraint("amount_minor >= 0 AND fee_minor >= 0 AND coach_net_minor >= 0 "
                        "AND fee_minor + coach_net_minor = amount_minor", name="split_adds_up"),
        CheckConstraint("refunded_minor >= 0 AND refunded_minor <= amount_minor",
                        name="refund_within_amount"),
        CheckConstraint("status IN ('pending', 'held', 'released', 'refunded', "
                        "'partially_refunded', 'disputed', 'failed')", name="status_known"),
        Index("ix_payments_release", "status", "release_at"),
        # The admin list, newest first, a page at a time.
        Index("ix_payments_created", "created_at", "id"),
    )

    @property
    def remaining_minor(self) -> int:
        """What is still in escrow for this payment (after refunds)."""
        return self.amount_minor - self.refunded_minor

    @property
    def net_paid_minor(self) -> int:
        """What the student paid, less every refund on record: the receipt's total.

        Not ``remaining_minor``: a refund made in Stripe after release is on record
        (the card got the money back) before the books can take it, and the student's
        receipt must not claim they still paid it.
        """
        return self.amount_minor - sum(item.amount_minor for item in self.refunds)

    def is_participant(self, user) -> bool:
        return bool(user and user.is_authenticated and user.id in (self.student_id,
                                                                    self.coach_id))

    @property
    def is_funded(self) -> bool:
        """Paid: there is a receipt, and nothing more to pay."""
        return self.status in self.FUNDED_STATES

    @property
    def is_in_escrow(self) -> bool:
        return self.status in self.ESCROW_STATES

    @property
    def is_in_undisputed_escrow(self) -> bool:
        return self.status in self.UNDISPUTED_ESCROW_STATES

    @property
    def is_disputed(self) -> bool:
        return self.status == "disputed"

    @property
    def is_awaited(self) -> bool:
        """Not paid, and its session still waits for it: a payment may still arrive."""
        return not self.is_funded and self.session.status == "pending_payment"


class ProviderAttempted:
    """The columns of a row that an idempotent job sends to Stripe (a payout, a refund, a
    saved-card charge, a transfer reversal or a repayment): how often it was tried and when
    next, the queue and call claims that keep two jobs from calling out at once, and the
    last error (see ``payments.attempts.ProviderAttempt``)."""

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A job for this row is waiting in a queue until then: the sweep does not queue another.
    queued_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A job is talking to Stripe for this row until then: no other job may call out.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)


class Payout(ProviderAttempted, db.Model):
    """The coach's share of one released payment. Unique per payment: never paid twice."""

    __tablename__ = "payouts"
    __display_name__ = "payout"
    __transitions__ = {"status": {
        # → reversed without a transfer: a card dispute lost at the bank before the coach
        # was paid (payments/chargebacks.py); nothing was posted, nothing is owed.
        "pending": {"paid", "payable", "failed", "reversed"},
        "failed": {"paid", "failed", "payable", "reversed"},
        # A balance owed because the coach had no connected account; paid once they have one.
        "payable": {"paid", "failed", "reversed"},
        "paid": {"reversed"},
        "reversed": set(),
    }}

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), unique=True)
    coach_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    transfer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    payment = relationship("Payment", backref=db.backref("payout", uselist=False))
    coach = relationship("User")

    __table_args__ = (
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
        CheckConstraint("status IN ('pending', 'paid', 'payable', 'failed', 'reversed')",
                        name="status_known"),
        Index("ix_payouts_due", "status", "next_attempt_at"),
    )


class Refund(ProviderAttempted, db.Model):
    """Money going back to the student; executed at Stripe by an idempotent job."""

    __tablename__ = "refunds"
    __display_name__ = "refund"
    __transitions__ = {"status": {
        "pending": {"succeeded", "failed"},
        "failed": {"succeeded", "failed"},
        "succeeded": set(),
    }}

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    gateway_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    payment = relationship("Payment", backref=db.backref("refunds", order_by="Refund.id"))

    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_known"),
        Index("ix_refunds_due", "status", "next_attempt_at"),
    )


class SavedCard(db.Model):
    """A student's card kept at the provider for later payments (one per student).

    The card itself stays at Stripe: we keep the customer and payment method ids and
    what the student needs to recognise it (brand, last four digits, expiry). Removing
    it detaches it at Stripe and keeps the row as ``removed`` (the customer is reused
    when a card is saved again).
    """

    __tablename__ = "saved_cards"
    __display_name__ = "saved card"
    __transitions__ = {"status": {"saved": {"saved", "removed"}, "removed": {"saved"}}}

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                            unique=True)
    gateway: Mapped[str] = mapped_column(String(10))
    customer_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(10), default="removed")
    payment_method_id: Mapped[str | None] = mapped_column(String(255))
    brand: Mapped[str | None] = mapped_column(String(20))
    last4: Mapped[str | None] = mapped_column(String(4))
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)

    student = relationship("User")

    __table_args__ = (
        CheckConstraint("status IN ('saved', 'removed')", name="status_known"),
    )

    @property
    def is_saved(self) -> bool:
        return self.status == "saved" and bool(self.payment_method_id)

    @property
    def label(self) -> str:
        """'Visa •••• 4242', as the pay button and the pages name the card."""
        brand = (self.brand or "card").replace("_", " ")
        return f"{brand[:1].upper()}{brand[1:]} •••• {self.last4 or '????'}"

    @property
    def expiry(self) -> str:
        return f"{self.exp_month or 0:02d}/{self.exp_year or 0}"


class SavedCardCharge(ProviderAttempted, db.Model):
    """One off-session charge of a saved card for a payment, made by an idempotent job.

    ``needs_action`` (the bank wants the student: SCA) and ``declined`` are final for
    the job: the payment stays unpaid and the student was told, with a link to pay.
    ``cancelled``: the payment was settled (or its hold ended) before the job ran.
    """

    __tablename__ = "saved_card_charges"
    __display_name__ = "saved card charge"
    __transitions__ = {"status": {
        "pending": {"succeeded", "needs_action", "declined", "failed", "cancelled"},
        "failed": {"succeeded", "needs_action", "declined", "failed", "cancelled"},
        "succeeded": set(), "needs_action": set(), "declined": set(), "cancelled": set(),
    }}
    FINISHED = ("succeeded", "needs_action", "declined", "cancelled")

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), unique=True)
    saved_card_id: Mapped[int] = mapped_column(ForeignKey("saved_cards.id"), index=True)
    payment_method_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    intent_id: Mapped[str | None] = mapped_column(String(255))

    payment = relationship("Payment", backref=db.backref("saved_card_charge",
                                                         uselist=False))
    saved_card = relationship("SavedCard")

    @property
    def is_waiting(self) -> bool:
        """Not answered yet: paying the payment another way now could charge twice."""
        return self.status == "pending"

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'succeeded', 'needs_action', 'declined', "
                        "'failed', 'cancelled')", name="status_known"),
        Index("ix_saved_card_charges_due", "status", "next_attempt_at"),
    )


class Dispute(db.Model):
    """A student's (or the card network's) objection to a payment, decided by an admin.

    The coach may answer while it is open; the admin reads both sides and decides.
    """

    __tablename__ = "disputes"
    __display_name__ = "dispute"
    # open → open: the coach wrote or edited their answer (a compare-and-set on "still
    # open", so an answer never lands on a dispute the admin has just decided).
    __transitions__ = {"status": {"open": {"open", "resolved"}, "resolved": set()}}

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    opened_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    source: Mapped[str] = mapped_column(String(10), default="student")  # or 'stripe'
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="open")
    resolution: Mapped[str | None] = mapped_column(String(24))
    refund_minor: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    # The coach's side, shown to the admin and the student; editable until the decision.
    coach_answer: Mapped[str | None] = mapped_column(Text)
    coach_answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # --- a card dispute at the bank (source 'stripe'); see payments/chargebacks.py ---
    # Stripe's dispute id (du_/dp_…): every charge.dispute.* event finds its row by it.
    stripe_dispute_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Stripe's dispute status (needs_response, under_review, won, lost, …), never moved
    # back by a late event; amount and reason as the bank states them.
    bank_status: Mapped[str | None] = mapped_column(String(32))
    bank_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    bank_reason: Mapped[str | None] = mapped_column(String(64))
    evidence_due_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Stripe said the bank took the money (funds_withdrawn, or a lost verdict) / gave it
    # back (funds_reinstated, or a won verdict): the facts the postings follow.
    bank_withdrew: Mapped[bool] = mapped_column(default=False)
    bank_reinstated: Mapped[bool] = mapped_column(default=False)
    # What our books say the bank holds right now (a chargeback_withdrawn posting not
    # yet undone by a chargeback_reinstated one). A payout of this payment waits meanwhile.
    funds_out: Mapped[bool] = mapped_column(default=False)
    # What the admin sent the bank, and when.
    evidence_text: Mapped[str | None] = mapped_column(Text)
    evidence_summary: Mapped[str | None] = mapped_column(Text)
    evidence_submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now,
                                                 onupdate=clock.now)

    payment = relationship("Payment", backref=db.backref("disputes", order_by="Dispute.id"))
    opened_by = relationship("User", foreign_keys=[opened_by_id])
    resolved_by = relationship("User", foreign_keys=[resolved_by_id])

    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status_known"),
        # The admin's open and resolved lists, newest first.
        Index("ix_disputes_status_created", "status", "created_at"),
        Index("uq_disputes_one_open", "payment_id", unique=True,
              postgresql_where=text("status = 'open'"), sqlite_where=text("status = 'open'")),
    )

    @property
    def is_open(self) -> bool:
        """Still waiting for an admin's decision."""
        return self.status == "open"

    @property
    def is_bank_dispute(self) -> bool:
        """Opened by the cardholder's bank (a chargeback), known to Stripe by its id."""
        return self.stripe_dispute_id is not None

    @property
    def bank_closed(self) -> bool:
        return self.bank_status in BANK_CLOSED_STATUSES

    @property
    def awaits_evidence(self) -> bool:
        """Stripe still takes evidence for it (it has not been submitted or decided)."""
        return self.is_bank_dispute and self.bank_status in BANK_NEEDS_RESPONSE


#: Stripe's dispute statuses, in the order a dispute moves through them.
BANK_NEEDS_RESPONSE = ("warning_needs_response", "needs_response")
BANK_UNDER_REVIEW = ("warning_under_review", "under_review")
BANK_CLOSED_STATUSES = ("won", "lost", "warning_closed", "charge_refunded", "prevented")


class TransferReversal(ProviderAttempted, db.Model):
    """Taking a coach's transfer back from their connected account, exactly once.

    Made when the bank withdraws a disputed payment after its payout was transferred
    (``kind='chargeback'``: the money repays the coach's negative balance), or by an
    admin with a reason (``kind='admin'``: the money returns to the platform, owed to
    no one until an admin refunds the student or pays the coach). Sent to Stripe by an
    idempotent job (``chargebacks.ReversalAttempt``) keyed by this row; one per payout.
    """

    __tablename__ = "transfer_reversals"
    __display_name__ = "transfer reversal"
    __transitions__ = {"status": {
        "pending": {"succeeded", "failed"},
        "failed": {"succeeded", "failed"},
        "succeeded": set(),
    }}

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"), unique=True)
    dispute_id: Mapped[int | None] = mapped_column(ForeignKey("disputes.id"))
    kind: Mapped[str] = mapped_column(String(12))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    gateway_reversal_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    payout = relationship("Payout", backref=db.backref("reversal", uselist=False))
    created_by = relationship("User")

    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("kind IN ('chargeback', 'admin')", name="kind_known"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_known"),
        Index("ix_transfer_reversals_due", "status", "next_attempt_at"),
    )


class Repayment(ProviderAttempted, db.Model):
    """Paying a coach again what a won chargeback made them owed, exactly once.

    When the bank took a released payment back, the coach's transfer was reversed
    (``TransferReversal``); when the bank then gives the money back (reinstated, or won),
    the coach is owed their share again. ``payouts.payment_id`` is unique (a payment is
    paid out once), so the new transfer is this row, one per reversal, sent by an
    idempotent job (``chargebacks.RepaymentAttempt``) with its own idempotency key and
    the payout's failure and retry rules (no connected account: ``payable``).
    """

    __tablename__ = "payout_repayments"
    __display_name__ = "repayment"
    __transitions__ = {"status": {
        "pending": {"paid", "payable", "failed"},
        "failed": {"paid", "failed", "payable"},
        "payable": {"paid", "failed"},
        "paid": set(),
    }}

    id: Mapped[int] = mapped_column(primary_key=True)
    reversal_id: Mapped[int] = mapped_column(ForeignKey("transfer_reversals.id"), unique=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    coach_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    transfer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    reversal = relationship("TransferReversal",
                            backref=db.backref("repayment", uselist=False))
    payment = relationship("Payment")
    coach = relationship("User")

    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("status IN ('pending', 'paid', 'payable', 'failed')",
                        name="status_known"),
        Index("ix_payout_repayments_due", "status", "next_attempt_at"),
    )


class WebhookEvent(db.Model):
    """Every Stripe event id we processed: a repeat finds its row and changes nothing."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    # Set when the event was refused (say, "rejected: metadata is not an object").
    outcome: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class LedgerTransaction(db.Model):
    """One money movement. Immutable: a correction is a new transaction."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"), index=True)
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"), index=True)
    memo: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    entries = relationship("LedgerEntry", back_populates="transaction",
                           order_by="LedgerEntry.id")

    __table_args__ = (
        # A payment is held once and released once; a payout is posted once. The database
        # refuses a second posting even if two workers race past every other check.
        Index("uq_ledger_one_hold", "payment_id", unique=True,
              postgresql_where=text("kind = 'payment_held'"),
              sqlite_where=text("kind = 'payment_held'")),
        Index("uq_ledger_one_release", "payment_id", unique=True,
              postgresql_where=text("kind = 'release'"), sqlite_where=text("kind = 'release'")),
        Index("uq_ledger_one_payout", "payout_id", unique=True,
              postgresql_where=text("kind = 'payout'"), sqlite_where=text("kind = 'payout'")),
    )


ACCOUNTS = ("student_funding", "escrow", "coach_payable", "platform_revenue", "refunds",
            "paid_out", "chargebacks", "reversed_payouts")


class LedgerEntry(db.Model):
    """A signed amount on one account; the entries of a transaction sum to zero."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"),
                                                index=True)
    account: Mapped[str] = mapped_column(String(30))
    # Which coach a coach_payable / paid_out entry belongs to.
    coach_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))

    transaction = relationship("LedgerTransaction", back_populates="entries")

    __table_args__ = (
        CheckConstraint("account IN ('student_funding', 'escrow', 'coach_payable', "
                        "'platform_revenue', 'refunds', 'paid_out', 'chargebacks', "
                        "'reversed_payouts')", name="account_known"),
        Index("ix_ledger_entries_account", "account", "currency"),
    )


class RequestedRun:
    """The columns of a run that the sweep or an admin asks for and one job then claims
    and runs (a ledger check, a reconciliation): who asked and when, the queue and run
    claims, and when it started, finished or failed."""

    # 'schedule' (the sweep) or 'admin' (someone pressed the page's button).
    source: Mapped[str] = mapped_column(String(10))
    requested_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    # A job for this row is waiting in a queue until then (see core.queue.claim_queued).
    queued_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A job is running it until then; only that job may write the result.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The run itself could not finish (the database or Stripe went away, say).
    error: Mapped[str | None] = mapped_column(Text)

    @declared_attr
    def requested_by(cls):
        return relationship("User")

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None


class LedgerCheck(RequestedRun, db.Model):
    """One run of the ledger invariant check: asked for, then run once by a job.

    The check reads the whole ledger, so it runs off the request path (on the sweep's
    schedule, or when an admin asks) and the money page shows the last result. Each run
    has its own row and writes its result once, so two checks at once never overwrite
    each other: the page shows whichever finished last.
    """

    __tablename__ = "ledger_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    # How many problems were found; ``problems`` keeps the first few (a JSON list).
    problem_count: Mapped[int | None] = mapped_column(Integer)
    problems: Mapped[list | None] = mapped_column(db.JSON)

    __table_args__ = (
        CheckConstraint("source IN ('schedule', 'admin')", name="source_known"),
        Index("ix_ledger_checks_started_at", "started_at"),
        Index("ix_ledger_checks_requested_at", "requested_at"),
    )

    @property
    def passed(self) -> bool:
        return self.is_finished and self.error is None and self.problem_count == 0

    @property
    def problems_left_out(self) -> int:
        """Problems found but not kept (only the first few are stored and shown)."""
        return max((self.problem_count or 0) - len(self.problems or ()), 0)


class ReconciliationRun(RequestedRun, db.Model):
    """One comparison of our payments, refunds and payouts with what Stripe holds.

    Asked for by the sweep each night or by an admin, run once by a job that claims the
    row first, like a ledger check. ``since`` is how far back it asked Stripe: what was
    created since the previous successful run started, less an overlap (see
    ``payments.reconciliation.window_start``).
    """

    __tablename__ = "reconciliation_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    charges_compared: Mapped[int | None] = mapped_column(Integer)
    refunds_compared: Mapped[int | None] = mapped_column(Integer)
    transfers_compared: Mapped[int | None] = mapped_column(Integer)
    # Differences this run found new (or again after they had been closed), and closed.
    opened: Mapped[int | None] = mapped_column(Integer)
    closed: Mapped[int | None] = mapped_column(Integer)
    # Set when there was nothing to compare (the test gateway moves no money).
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("source IN ('schedule', 'admin')", name="source_known"),
        Index("ix_reconciliation_runs_requested_at", "requested_at"),
        Index("ix_reconciliation_runs_started_at", "started_at"),
    )

    @property
    def succeeded(self) -> bool:
        return self.is_finished and self.error is None


class ReconciliationItem(db.Model):
    """One difference between our records and Stripe's, with what to do about it.

    ``key`` names the difference (its kind and the object it is about), so a run that
    finds it again updates this row instead of adding one; a run that compares the
    object and finds no difference any more closes it. An admin who handled it closes
    it with a note.
    """

    __tablename__ = "reconciliation_items"
    __display_name__ = "difference"
    __transitions__ = {"status": {"open": {"resolved"}, "resolved": {"open"}}}

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(30))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    stripe_id: Mapped[str | None] = mapped_column(String(255))
    ours: Mapped[str] = mapped_column(Text)
    theirs: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="open")
    # When the object it is about was created: a run compares only objects created
    # within its window, so only those can close it automatically.
    object_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id",
                                                                  ondelete="SET NULL"))
    # The admin's note, or why a run closed it.
    resolution: Mapped[str | None] = mapped_column(Text)

    resolved_by = relationship("User")

    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status_known"),
        Index("ix_reconciliation_items_open_newest", "status", "first_seen_at"),
    )

    @property
    def is_open(self) -> bool:
        return self.status == "open"
