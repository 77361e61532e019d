"""Deadline handler: pending proposals nobody answered in time expire."""

from __future__ import annotations

from sqlalchemy import select

from skileez import clock
from skileez.contracts.models import Proposal
from skileez.contracts.operations import expire
from skileez.core.deadlines import deadline_handler
from skileez.core.errors import Conflict
from skileez.extensions import db

BATCH = 200


@deadline_handler("expire_proposals")
def expire_proposals() -> int:
    due = db.session.scalars(
        select(Proposal).where(Proposal.status == "pending",
                               Proposal.expires_at <= clock.now())
        .order_by(Proposal.expires_at).limit(BATCH)
    ).all()
    expired = 0
    for proposal in due:
        try:
            with db.session.begin_nested():
                expire(proposal)
            expired += 1
        except Conflict:
            continue  # answered or expired by someone else a moment ago
    return expired
