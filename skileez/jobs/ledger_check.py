"""The ledger invariant check on a schedule: every ``ledger_check_interval`` (policy).

The check reads the whole ledger (seconds on a large one), so no page runs it: it is
asked for on a schedule, the job in ``skileez.payments.ledger`` runs it and keeps the
result for the admin money page, which can also ask for one at once. A check already
waiting or running is not asked for twice; a missed run only makes the next check
later, never lost.

With RQ the sweep asks for it and a worker runs it, so the sweep only writes a row.
In-process a job runs on the thread that committed, so the sweep would wait for the
whole check: there the sweeper thread asks for it after each sweep instead
(``check_ledger_if_due``), and the sweep itself stays as cheap as what is due.
"""

from __future__ import annotations

from flask import current_app

from skileez.core.deadlines import deadline_handler
from skileez.core.unit_of_work import transaction
from skileez.payments import ledger
from skileez.policy import get_policy


@deadline_handler("ledger_check")
def schedule_ledger_check() -> int:
    """With RQ: queue a check when the last was asked for longer ago than the interval."""
    if current_app.config["JOBS_BACKEND"] != "rq":
        return 0
    return ledger.request_check_if_due(get_policy().ledger_check_interval)


def check_ledger_if_due() -> int:
    """In-process: ask for a check when due; it runs on this thread as the request commits."""
    with transaction():
        return ledger.request_check_if_due(get_policy().ledger_check_interval)
