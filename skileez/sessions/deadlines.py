"""Deadline handler: unpaid booking holds that ran out free their slot."""

from __future__ import annotations

from skileez.jobs.sweep import deadline_handler
from skileez.sessions.operations import expire_stale_holds


@deadline_handler("expire_payment_holds")
def expire_payment_holds() -> int:
    return expire_stale_holds()
