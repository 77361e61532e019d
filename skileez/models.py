"""Every model, imported in one place so the metadata is complete."""

from skileez.auth.models import User
from skileez.core.models import AuditEvent
from skileez.notifications.models import Notification, OutboxEmail

__all__ = ["AuditEvent", "Notification", "OutboxEmail", "User"]
