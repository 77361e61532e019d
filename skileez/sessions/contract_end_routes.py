"""The "End contract" page: what ending would cancel and refund, then the POST that does it.

Its own blueprint under ``/contracts`` (the URL is the contract's), in the sessions
package because the ending acts on sessions (see ``contract_end``).
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload

from skileez.contracts.models import Contract
from skileez.core.access import require_login
from skileez.core.money import format_money
from skileez.core.unit_of_work import see_other, submit
from skileez.extensions import db
from skileez.sessions import contract_end
from skileez.sessions.forms import EndContractForm
from skileez.sessions.models import Session

bp = require_login(Blueprint("contract_end", __name__, url_prefix="/contracts"))


def _contract(contract_id: int) -> Contract:
    contract = db.session.get(Contract, contract_id, options=(
        selectinload(Contract.sessions).selectinload(Session.payment),))
    if contract is None or not contract.is_participant(current_user):
        abort(404)
    return contract


@bp.route("/<int:contract_id>/end", methods=["GET", "POST"])
def end(contract_id: int):
    contract = _contract(contract_id)
    plan = contract_end.preview(contract, current_user)
    form = EndContractForm()

    def page() -> str:
        # Always the preview as it is now, with its own fingerprint: after a 409 the
        # person reviews the new figures and confirms those.
        fresh = contract_end.preview(contract, current_user)
        form.fingerprint.data = fresh.fingerprint()
        return render_template("contracts/end.html", contract=contract, plan=fresh,
                               form=form, decision=fresh.decision)

    def done(result) -> object:
        refunded_to = "you" if current_user.id == contract.student_id else contract.student.name
        words = f"The contract is {result.outcome}. "
        if result.cancelled:
            words += (f"{len(result.cancelled)} booked session"
                      f"{'s' if len(result.cancelled) != 1 else ''} cancelled; "
                      f"{_money(result.total_refund, result.currency)} refunded to "
                      f"{refunded_to}.")
        else:
            words += "No booked session had to be cancelled."
        return see_other(url_for("contracts.detail", contract_id=contract.id), words)

    return submit(form, lambda: contract_end.end_contract(
        contract, current_user, reason=form.reason.data or "",
        fingerprint=form.fingerprint.data or ""),
        page=page, done=done, allowed=plan.decision, serialized=True)


def _money(minor: int, currency: str) -> str:
    return format_money(minor, currency)
