"""The table of deadline handlers that the sweep runs.

It lives in core because the handlers live in the domains (a proposal expires in
contracts, a hold in sessions, a release in payments) and a domain must not import
the jobs package above it. Each domain's ``deadlines`` module registers its
handlers here when imported; ``skileez.jobs.sweep`` imports those modules and runs
what they registered.
"""

from __future__ import annotations

from collections.abc import Callable

HandlerFn = Callable[[], int]
HANDLERS: dict[str, HandlerFn] = {}


def deadline_handler(name: str) -> Callable[[HandlerFn], HandlerFn]:
    """Register a function that finds due rows and acts on each; returns how many it acted on."""

    def register(fn: HandlerFn) -> HandlerFn:
        HANDLERS[name] = fn
        return fn

    return register
