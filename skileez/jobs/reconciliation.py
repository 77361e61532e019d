"""The nightly comparison with Stripe: asked for once after ``reconciliation_time`` (policy).

Like the ledger check (``skileez.jobs.ledger_check``): with RQ the sweep asks for it and a
worker runs it, so the sweep only writes a row. In-process a job runs on the thread that
committed, and the comparison pages through Stripe's lists, so the sweeper thread asks for
it after each sweep instead (``reconcile_if_due``). A run already waiting or running is not
asked for twice, and a night the sweep missed is caught up by the next sweep.
"""

from __future__ import annotations

from flask import current_app

from skileez.core.deadlines import deadline_handler
from skileez.core.unit_of_work import transaction
from skileez.payments import reconciliation


@deadline_handler("reconciliation")
def schedule_reconciliation() -> int:
    """With RQ: queue tonight's comparison once its time has come."""
    if current_app.config["JOBS_BACKEND"] != "rq":
        return 0
    return reconciliation.request_run_if_due()


def reconcile_if_due() -> int:
    """In-process: ask for tonight's comparison when due; it runs on this thread."""
    with transaction():
        return reconciliation.request_run_if_due()
