"""Every model, imported in one place so the metadata is complete."""

from skileez.auth.models import User
from skileez.coaches.models import AvailabilityRule, CoachProfile, CoachSubject, Offering, TimeOff
from skileez.contracts.models import Contract, Proposal
from skileez.core.models import AuditEvent
from skileez.notifications.models import Notification, OutboxEmail

# Imported for its side effect: the ledger's immutability guards are always registered.
from skileez.payments import ledger as _ledger  # noqa: F401
from skileez.payments.models import (
    Dispute,
    LedgerCheck,
    LedgerEntry,
    LedgerTransaction,
    Payment,
    Payout,
    ReconciliationItem,
    ReconciliationRun,
    Refund,
    WebhookEvent,
)
from skileez.sessions.models import Rating, Reminder, RescheduleRequest, Session

__all__ = [
    "AuditEvent",
    "AvailabilityRule",
    "CoachProfile",
    "CoachSubject",
    "Contract",
    "Dispute",
    "LedgerCheck",
    "LedgerEntry",
    "LedgerTransaction",
    "Notification",
    "Offering",
    "OutboxEmail",
    "Payment",
    "Payout",
    "Proposal",
    "Rating",
    "ReconciliationItem",
    "ReconciliationRun",
    "Refund",
    "Reminder",
    "RescheduleRequest",
    "Session",
    "TimeOff",
    "User",
    "WebhookEvent",
]
