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

from skileez.core.deadlines import HANDLERS, HandlerFn, deadline_handler
from skileez.core.queue import job
from skileez.core.unit_of_work import transaction

__all__ = ["HANDLERS", "HandlerFn", "SweepError", "deadline_handler", "load_handlers",
           "sweep"]

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
)


class SweepError(RuntimeError):
    """At least one handler failed; raised after the others ran so RQ records it."""


def load_handlers() -> dict[str, HandlerFn]:
    for module in HANDLER_MODULES:
        importlib.import_module(module)
    return HANDLERS


@job
def sweep() -> dict[str, int]:
    """Run every deadline handler, each in its own transaction.

    One handler's failure rolls back only its own batch: the others still act,
    and the sweep raises at the end so RQ records what went wrong.
    """
    results: dict[str, int] = {}
    failures: list[str] = []
    for name, handler in load_handlers().items():
        try:
            with transaction():
                results[name] = handler()
        except Exception as exc:
            log.exception("Deadline handler %s failed", name)
            failures.append(f"{name}: {exc!r}")
    if failures:
        raise SweepError("; ".join(failures))
    return results
