"""Proposals (send, answer, withdraw) and contracts (list, detail)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select

from skileez.coaches.models import Offering
from skileez.contracts import operations
from skileez.contracts.forms import ProposalForm, ResponseForm
from skileez.contracts.models import Contract, Proposal
from skileez.core.access import require_login, role_required
from skileez.core.errors import Conflict, DomainError
from skileez.core.forms import Form
from skileez.core.http import choice_arg, is_htmx
from skileez.core.models import AuditEvent
from skileez.core.pagination import paginate
from skileez.core.words import duration_words
from skileez.extensions import db
from skileez.policy import get_policy

bp = require_login(Blueprint("contracts", __name__, url_prefix="/contracts"))

CONTRACT_STATUSES = ("active", "completed", "cancelled")
PROPOSAL_STATUSES = ("pending", "accepted", "declined", "withdrawn", "expired")


@bp.app_context_processor
def pending_proposals_badge():
    """The count beside 'Proposals' in a coach's navigation."""
    if is_htmx():
        return {"pending_proposals_count": 0}  # fragments have no navigation bar
    if current_user and current_user.is_authenticated and current_user.is_coach:
        count = db.session.scalar(select(func.count()).select_from(Proposal).where(
            Proposal.coach_id == current_user.id, Proposal.status == "pending"))
        return {"pending_proposals_count": count or 0}
    return {"pending_proposals_count": 0}


def _mine(model):
    return or_(model.student_id == current_user.id, model.coach_id == current_user.id)


@bp.get("/")
def index():
    status = choice_arg("status", CONTRACT_STATUSES)
    statement = select(Contract).where(_mine(Contract))
    if status:
        statement = statement.where(Contract.status == status)
    page = paginate(statement.order_by(Contract.created_at.desc(), Contract.id.desc()),
                       per_page=20)
    pending = db.session.scalar(select(func.count()).select_from(Proposal).where(
        _mine(Proposal), Proposal.status == "pending"))
    return render_template("contracts/index.html", page=page, status=status,
                           statuses=CONTRACT_STATUSES, pending=pending)


def _contract_for_participant(contract_id: int) -> Contract:
    contract = db.session.get(Contract, contract_id)
    if contract is None or not contract.is_participant(current_user):
        abort(404)
    return contract


@bp.get("/<int:contract_id>")
def detail(contract_id: int):
    contract = _contract_for_participant(contract_id)
    history = db.session.scalars(select(AuditEvent).where(
        or_((AuditEvent.object_type == "contracts") & (AuditEvent.object_id == contract.id),
            (AuditEvent.object_type == "proposals")
            & (AuditEvent.object_id == contract.proposal_id)))
        .order_by(AuditEvent.created_at, AuditEvent.id)).all()
    return render_template("contracts/detail.html", contract=contract, history=history,
                           fee=get_policy().platform_fee)


# --- proposals ----------------------------------------------------------------------

@bp.route("/propose/<int:offering_id>", methods=["GET", "POST"])
@role_required("student")
def propose(offering_id: int):
    offering = db.session.get(Offering, offering_id)
    if offering is None or not offering.coach.is_active:
        abort(404)
    form = ProposalForm()
    status = 200
    if not offering.is_active:
        form.form_errors.append("This offering is not available any more. Choose another one "
                                "on the coach's profile.")
        status = 409
    elif form.validate_on_submit():
        try:
            proposal = operations.propose(current_user, offering,
                                          sessions_count=form.sessions_count.data,
                                          message=form.message.data or "")
            db.session.commit()
        except Conflict as error:
            db.session.rollback()
            form.form_errors.append(error.message)
            status = 409
        except DomainError as error:
            db.session.rollback()
            getattr(form, error.field).errors.append(error.message)
        else:
            flash(f"Your proposal was sent to {offering.coach.name}. They have "
                  f"{duration_words(get_policy().proposal_expiry)} to answer.", "success")
            return redirect(url_for("contracts.proposal", proposal_id=proposal.id), code=303)
    if form.errors and status == 200:
        status = 422
    return render_template("contracts/propose.html", form=form, offering=offering,
                           policy=get_policy()), status


@bp.get("/proposals")
def proposals():
    status = choice_arg("status", PROPOSAL_STATUSES)
    statement = select(Proposal).where(_mine(Proposal))
    if status:
        statement = statement.where(Proposal.status == status)
    page = paginate(statement.order_by(Proposal.created_at.desc(), Proposal.id.desc()),
                       per_page=20)
    return render_template("contracts/proposals.html", page=page, status=status,
                           statuses=PROPOSAL_STATUSES)


def _proposal_for_participant(proposal_id: int) -> Proposal:
    proposal = db.session.get(Proposal, proposal_id)
    if proposal is None or not proposal.is_participant(current_user):
        abort(404)
    return proposal


@bp.get("/proposals/<int:proposal_id>")
def proposal(proposal_id: int):
    item = _proposal_for_participant(proposal_id)
    return render_template("contracts/proposal.html", proposal=item, form=ResponseForm(),
                           withdraw_form=Form())


@bp.post("/proposals/<int:proposal_id>/<any(accept, decline, withdraw):action>")
def answer(proposal_id: int, action: str):
    item = _proposal_for_participant(proposal_id)
    # The other participant gets 403 (they may see it, not do this); the state check
    # is the operation's compare-and-set, which answers 409.
    if action == "withdraw":
        if current_user.id != item.student_id:
            abort(403, item.can_withdraw(current_user).reason)
        form = Form()
    else:
        if current_user.id != item.coach_id:
            abort(403, item.can_answer(current_user).reason)
        form = ResponseForm()
    if not form.validate_on_submit():
        return render_template("contracts/proposal.html", proposal=item, form=form,
                               withdraw_form=Form()), 422
    try:
        if action == "accept":
            contract = operations.accept(item, current_user,
                                         response_message=form.response_message.data or "")
        elif action == "decline":
            operations.decline(item, current_user,
                               response_message=form.response_message.data or "")
        else:
            operations.withdraw(item, current_user)
        db.session.commit()
    except Conflict as error:
        db.session.rollback()
        db.session.refresh(item)
        form.form_errors.append(error.message)
        return render_template("contracts/proposal.html", proposal=item,
                               form=ResponseForm(), withdraw_form=Form(),
                               conflict=error.message), 409
    if action == "accept":
        flash(f"Contract agreed with {item.student.name}: {item.sessions_count} sessions of "
              f"{item.offering.title}.", "success")
        return redirect(url_for("contracts.detail", contract_id=contract.id), code=303)
    flash("The proposal was declined." if action == "decline"
          else "Your proposal was withdrawn.", "info")
    return redirect(url_for("contracts.proposal", proposal_id=item.id), code=303)
