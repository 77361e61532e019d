"""Deadline handler: pending proposals nobody answered in time expire."""

from __future__ import annotations

from sqlalchemy import select

from skileez import clock
from skileez.contracts.models import Proposal
from skileez.contracts.operations import expire
from skileez.core.deadlines import act_on_each, deadline_handler, due


@deadline_handler("expire_proposals")
def expire_proposals() -> int:
    return act_on_each(due(
        select(Proposal).where(Proposal.status == "pending",
                               Proposal.expires_at <= clock.now())
        .order_by(Proposal.expires_at)), expire)
