"""Proposals (send, answer, withdraw) and contracts (list, detail)."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select

from skileez.coaches.models import Offering
from skileez.contracts import operations
from skileez.contracts.forms import ProposalForm, ResponseForm
from skileez.contracts.models import Contract, Proposal
from skileez.contracts.queries import listed_contracts, listed_proposals
from skileez.core.access import require_login, role_required
from skileez.core.forms import Form
from skileez.core.http import choice_arg, is_htmx
from skileez.core.models import AuditEvent
from skileez.core.pagination import paginate
from skileez.core.permissions import Decision
from skileez.core.unit_of_work import form_message, see_other, submit
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
    page = paginate(listed_contracts(statement.order_by(Contract.created_at.desc(),
                                                        Contract.id.desc())), per_page=20)
    pending = db.session.scalar(select(func.count()).select_from(Proposal).where(
        _mine(Proposal), Proposal.status == "pending"))
    return render_template("contracts/index.html", page=page, status=status,
                           statuses=CONTRACT_STATUSES, pending=pending)


def _contract_for_participant(contract_id: int) -> Contract:
    contract = db.session.get(Contract, contract_id)
    if contract is None or not contract.is_participant(current_user):
        abort(404)
    return contract


def _history(contract: Contract) -> list[AuditEvent]:
    return db.session.scalars(select(AuditEvent).where(
        or_((AuditEvent.object_type == "contracts") & (AuditEvent.object_id == contract.id),
            (AuditEvent.object_type == "proposals")
            & (AuditEvent.object_id == contract.proposal_id)))
        .order_by(AuditEvent.created_at, AuditEvent.id)).all()


def _forms() -> dict:
    """The contract page's buttons that post (pause, resume): CSRF-protected forms."""
    return {"pause_form": Form()}


@bp.get("/<int:contract_id>")
def detail(contract_id: int):
    contract = _contract_for_participant(contract_id)
    return render_template("contracts/detail.html", contract=contract,
                           history=_history(contract), fee=get_policy().platform_fee,
                           **_forms())


# --- proposals ----------------------------------------------------------------------

@bp.route("/propose/<int:offering_id>", methods=["GET", "POST"])
@role_required("student")
def propose(offering_id: int):
    offering = db.session.get(Offering, offering_id)
    if offering is None or not offering.coach.is_active:
        abort(404)
    form = ProposalForm()
    open_to_proposals = Decision(offering.is_active, "This offering is not available any "
                                 "more. Choose another one on the coach's profile.")

    def page() -> str:
        if not open_to_proposals:
            form.form_errors.append(open_to_proposals.reason)
        return render_template("contracts/propose.html", form=form, offering=offering,
                               policy=get_policy())

    if request.method == "GET" and not open_to_proposals:
        return page(), 409  # the page is the refusal, as a POST to it would be
    return submit(form, lambda: operations.propose(current_user, offering,
                                                   sessions_count=form.sessions_count.data,
                                                   message=form.message.data or ""),
                  page=page, allowed=open_to_proposals,
                  done=lambda proposal: see_other(
                      url_for("contracts.proposal", proposal_id=proposal.id),
                      f"Your proposal was sent to {offering.coach.name}. They have "
                      f"{duration_words(get_policy().proposal_expiry)} to answer."))


@bp.get("/proposals")
def proposals():
    status = choice_arg("status", PROPOSAL_STATUSES)
    statement = select(Proposal).where(_mine(Proposal))
    if status:
        statement = statement.where(Proposal.status == status)
    page = paginate(listed_proposals(statement.order_by(Proposal.created_at.desc(),
                                                        Proposal.id.desc())), per_page=20)
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

    def run():
        if action == "accept":
            return operations.accept(item, current_user,
                                     response_message=form.response_message.data or "")
        if action == "decline":
            return operations.decline(item, current_user,
                                      response_message=form.response_message.data or "")
        return operations.withdraw(item, current_user)

    def page() -> str:
        if form.form_errors:
            # Settled meanwhile: the proposal as it is now, with the reason and fresh forms.
            return render_template("contracts/proposal.html", proposal=item,
                                   form=ResponseForm(), withdraw_form=Form(),
                                   conflict=form.form_errors[-1])
        return render_template("contracts/proposal.html", proposal=item, form=form,
                               withdraw_form=Form())

    def done(contract):
        if action == "accept":
            return see_other(url_for("contracts.detail", contract_id=contract.id),
                             f"Contract agreed with {item.student.name}: "
                             f"{item.sessions_count} sessions of {item.offering.title}.")
        return see_other(url_for("contracts.proposal", proposal_id=item.id),
                         "The proposal was declined." if action == "decline"
                         else "Your proposal was withdrawn.", "info")

    return submit(form, run, page=page, done=done)


@bp.post("/<int:contract_id>/<any(pause, resume):action>")
def pause(contract_id: int, action: str):
    """The coach pauses or resumes new bookings; the student may see the contract, not this."""
    contract = _contract_for_participant(contract_id)
    decision = (contract.can_pause if action == "pause" else contract.can_resume)(current_user)
    if current_user.id != contract.coach_id:
        abort(403, decision.reason)
    form = Form()

    def page() -> str:
        history = _history(contract)
        return render_template("contracts/detail.html", contract=contract, history=history,
                               fee=get_policy().platform_fee, conflict=form_message(form)
                               or decision.reason, **_forms())

    return submit(form, lambda: (operations.pause_bookings if action == "pause"
                                 else operations.resume_bookings)(contract, current_user),
                  page=page, allowed=decision,
                  done=lambda _: see_other(
                      url_for("contracts.detail", contract_id=contract.id),
                      f"New bookings paused: {contract.student.name} cannot book more sessions "
                      "until you resume. Sessions already booked go ahead."
                      if action == "pause" else
                      f"Bookings resumed: {contract.student.name} can book sessions again.",
                      "info" if action == "pause" else "success"))
