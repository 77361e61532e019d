"""Read-only views of proposals and contracts that other pages (the dashboard) show."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload, raiseload, selectinload

from skileez.contracts.models import Contract, Proposal
from skileez.extensions import db


def listed_contracts(statement):
    """What a list of contracts shows of each (the other person, the progress bar, which
    counts the sessions), loaded with the list instead of once per contract; anything
    else is refused (``raiseload``) rather than loaded row by row."""
    return statement.options(joinedload(Contract.student), joinedload(Contract.coach),
                             selectinload(Contract.sessions), raiseload("*"))


def listed_proposals(statement):
    """What a list of proposals shows of each: both people and the offering."""
    return statement.options(joinedload(Proposal.student), joinedload(Proposal.coach),
                             joinedload(Proposal.offering), raiseload("*"))


def active_contracts(user, limit: int = 5) -> list[Contract]:
    return list(db.session.scalars(listed_contracts(
        select(Contract).where(or_(Contract.student_id == user.id, Contract.coach_id == user.id),
                               Contract.status == "active")
        .order_by(Contract.created_at.desc()).limit(limit))))


def pending_proposals(user, limit: int = 5) -> list[Proposal]:
    return list(db.session.scalars(listed_proposals(
        select(Proposal).where(or_(Proposal.student_id == user.id, Proposal.coach_id == user.id),
                               Proposal.status == "pending")
        .order_by(Proposal.expires_at).limit(limit))))
