"""Deadlines: the table of handlers the sweep runs, and the one loop they act through.

The table lives in core because the handlers live in the domains (a proposal
expires in contracts, a hold in sessions, a release in payments) and a domain
must not import the jobs package above it. Each domain's ``deadlines`` module
registers its handlers here when imported; ``skileez.jobs.sweep`` imports those
modules and runs what they registered.

Every handler acts on one batch: it finds the rows that are due, oldest first and
at most ``sweep_batch`` of them (``due``), and acts on them through a
compare-and-set — the whole batch at once (``transition_many``: one statement per
batch, not a dozen per row) where the rule allows, or each row in its own
savepoint (``act_on_each``). The sweep runs a handler batch after batch, each in
its own transaction, until a batch comes back short or the time budget is spent, so
a backlog drains in one run without one transaction held open over all of it; a
row someone else acted on a moment ago (a person pressing the button, a second
sweep) is skipped without undoing the rows around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlalchemy import Select

from skileez.core.errors import Conflict
from skileez.extensions import db
from skileez.policy import get_policy

T = TypeVar("T")

HandlerFn = Callable[[], int]
HANDLERS: dict[str, HandlerFn] = {}
#: Handlers that work on what the others write (the mail they queue) run after them.
LATE_HANDLERS: set[str] = set()


def deadline_handler(name: str, *, after_the_others: bool = False
                     ) -> Callable[[HandlerFn], HandlerFn]:
    """Register a function that acts on one batch of due rows; returns how many it acted on.

    The sweep calls it again while it returns a full batch; ``after_the_others``
    runs it once the others are done, so a sweep sends the mail its own batches wrote.
    """

    def register(fn: HandlerFn) -> HandlerFn:
        HANDLERS[name] = fn
        if after_the_others:
            LATE_HANDLERS.add(name)
        return fn

    return register


def handlers_in_order() -> list[tuple[str, HandlerFn]]:
    return sorted(HANDLERS.items(), key=lambda item: item[0] in LATE_HANDLERS)


def batch_size() -> int:
    """How many rows one handler acts on per batch (policy ``sweep_batch``)."""
    return get_policy().sweep_batch


def time_budget() -> float:
    """Seconds one sweep keeps taking batches (policy ``sweep_time_budget_seconds``)."""
    return float(get_policy().sweep_time_budget_seconds)


def due(statement: Select) -> list:
    """The first batch of what ``statement`` finds due; the caller orders it, oldest first."""
    return list(db.session.scalars(statement.limit(batch_size())))


def act_on_each(rows: Iterable[T], action: Callable[[T], object], *,
                skip: tuple[type[Exception], ...] = (Conflict,)) -> int:
    """Run ``action`` on each row in its own savepoint; returns how many it acted on.

    A row whose action raises one of ``skip`` (by default a ``Conflict``: someone
    moved it first) is rolled back alone and left; anything else stops the handler
    and the handler's whole batch is rolled back (on SQLite too: the factory makes
    a first savepoint begin the transaction instead of being one). Stops after one
    batch, so ``rows`` may be a lazy filter over more candidates than that.
    """
    limit = batch_size()
    done = 0
    for row in rows:
        if done >= limit:
            break
        try:
            with db.session.begin_nested():
                action(row)
        except skip:
            continue
        done += 1
    return done
