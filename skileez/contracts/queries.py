"""Read-only views of proposals and contracts that other pages (the dashboard) show."""

from __future__ import annotations

from sqlalchemy import or_, select

from skileez.contracts.models import Contract, Proposal
from skileez.extensions import db


def active_contracts(user, limit: int = 5) -> list[Contract]:
    return list(db.session.scalars(
        select(Contract).where(or_(Contract.student_id == user.id, Contract.coach_id == user.id),
                               Contract.status == "active")
        .order_by(Contract.created_at.desc()).limit(limit)))


def pending_proposals(user, limit: int = 5) -> list[Proposal]:
    return list(db.session.scalars(
        select(Proposal).where(or_(Proposal.student_id == user.id, Proposal.coach_id == user.id),
                               Proposal.status == "pending")
        .order_by(Proposal.expires_at).limit(limit)))
