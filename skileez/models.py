"""Every model, imported in one place so the metadata is complete."""

from skileez.auth.models import User
from skileez.coaches.models import AvailabilityRule, CoachProfile, CoachSubject, Offering, TimeOff
from skileez.contracts.models import Contract, Proposal
from skileez.core.models import AuditEvent
from skileez.notifications.models import Notification, OutboxEmail

__all__ = [
    "AuditEvent",
    "AvailabilityRule",
    "CoachProfile",
    "CoachSubject",
    "Contract",
    "Notification",
    "Offering",
    "OutboxEmail",
    "Proposal",
    "TimeOff",
    "User",
]
