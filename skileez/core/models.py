"""The audit log: one row per state change, written by the transition helper."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from skileez import clock
from skileez.core.types import UTCDateTime
from skileez.extensions import db


class AuditEvent(db.Model):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Null actor means the system (a worker acting on a deadline).
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[int]
    field: Mapped[str] = mapped_column(String(40), default="status")
    from_state: Mapped[str | None] = mapped_column(String(40))
    to_state: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    actor = relationship("User", foreign_keys=[actor_id], lazy="joined")

    __table_args__ = (
        Index("ix_audit_events_object", "object_type", "object_id"),
        # The admin dashboard's latest changes, newest first.
        Index("ix_audit_events_created", "created_at", "id"),
    )

    @property
    def actor_label(self) -> str:
        return self.actor.name if self.actor else "System"
