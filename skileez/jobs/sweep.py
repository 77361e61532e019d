"""The sweep: one periodic job that acts on every deadline stored in the database.

The schedule only says "look now"; the database says what is due. A sweep that
runs late catches up, and two sweeps at once are harmless because each handler
acts on each row through a compare-and-set that only one of them can win.

The handlers live in the domains and register themselves in
``skileez.core.deadlines`` (a domain may not import this package, which sits above
it); importing the modules below is what makes them known.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Collection

from skileez.core.deadlines import (
    HANDLERS,
    HandlerFn,
    batch_size,
    deadline_handler,
    handlers_in_order,
    time_budget,
)
from skileez.core.queue import job
from skileez.core.unit_of_work import transaction

__all__ = ["HANDLERS", "HandlerFn", "SweepError", "deadline_handler", "load_handlers",
           "sweep"]

log = logging.getLogger(__name__)

# Modules whose import registers deadline handlers. Later domains add theirs here.
HANDLER_MODULES = (
    "skileez.notifications.deadlines",
    "skileez.contracts.deadlines",
    "skileez.sessions.deadlines",
    "skileez.payments.deadlines",
    "skileez.jobs.ledger_check",
    "skileez.jobs.reconciliation",
)


class SweepError(RuntimeError):
    """At least one handler failed; raised after the others ran so RQ records it."""


def load_handlers() -> dict[str, HandlerFn]:
    for module in HANDLER_MODULES:
        importlib.import_module(module)
    return HANDLERS


@job
def sweep(only: Collection[str] | None = None) -> dict[str, int]:
    """Run every deadline handler (or those named in ``only``), batch after batch.

    Each batch is its own transaction: one handler's failure rolls back only its
    current batch, the others still act, and the sweep raises at the end so RQ
    records what went wrong. A handler is run again while its last batch was full
    (there is probably more) and the sweep's time budget lasts; a short batch means
    it is done, or that rows were taken by someone else, which the next sweep
    sees. When the budget is spent, every
    handler still gets one batch, so a large backlog of one kind never starves the
    others, and what is left waits for the next sweep.
    """
    load_handlers()
    stop_at = time.monotonic() + time_budget()
    results: dict[str, int] = {}
    failures: list[str] = []
    for name, handler in handlers_in_order():
        if only is not None and name not in only:
            continue
        results[name] = 0
        try:
            while True:
                with transaction():
                    acted = handler()
                results[name] += acted
                if acted < batch_size() or time.monotonic() >= stop_at:
                    break
        except Exception as exc:
            log.exception("Deadline handler %s failed", name)
            failures.append(f"{name}: {exc!r}")
    if failures:
        raise SweepError("; ".join(failures))
    return results
