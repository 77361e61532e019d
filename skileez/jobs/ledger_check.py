"""The ledger invariant check on the sweep's schedule.

The check reads the whole ledger, so no page runs it: every
``ledger_check_interval`` (policy) the sweep asks for one, and the job in
``skileez.payments.ledger`` runs it and keeps the result for the admin money page,
which can also ask for one at once. A check already waiting or running is not
asked for twice; a missed sweep only makes the next check later, never lost.
"""

from __future__ import annotations

from skileez.core.deadlines import deadline_handler
from skileez.payments import ledger
from skileez.policy import get_policy


@deadline_handler("ledger_check")
def schedule_ledger_check() -> int:
    """Queue a check when the last one was asked for longer ago than the interval."""
    return ledger.request_check_if_due(get_policy().ledger_check_interval)
