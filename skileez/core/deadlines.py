"""Deadlines: the table of handlers the sweep runs, and the one loop they act through.

The table lives in core because the handlers live in the domains (a proposal
expires in contracts, a hold in sessions, a release in payments) and a domain
must not import the jobs package above it. Each domain's ``deadlines`` module
registers its handlers here when imported; ``skileez.jobs.sweep`` imports those
modules and runs what they registered.

Every handler has the same shape: find the rows that are due, oldest first and
at most one batch of them (``due``), then act on each through a compare-and-set
(``act_on_each``). A sweep that runs late catches up a batch per run instead of
holding one transaction open over the whole backlog, and a row that someone
else acted on a moment ago (a person pressing the button, a second sweep) is
skipped without undoing the rows around it.
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


def deadline_handler(name: str) -> Callable[[HandlerFn], HandlerFn]:
    """Register a function that finds due rows and acts on each; returns how many it acted on."""

    def register(fn: HandlerFn) -> HandlerFn:
        HANDLERS[name] = fn
        return fn

    return register


def batch_size() -> int:
    """How many rows one handler acts on per sweep (policy ``sweep_batch``)."""
    return get_policy().sweep_batch


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
