"""Running job functions after the transaction that asked for them commits.

A job is queued with ``enqueue_after_commit``; it is dispatched only when the
database transaction commits (and dropped if it rolls back), so a worker never
looks for a row that does not exist yet. With Redis it goes to an RQ queue;
without, it runs in this process in a fresh app context. If Redis cannot be
reached the job is not lost: every job that matters has a deadline or a status
in the database, and the sweep picks it up.

This is core, not ``skileez.jobs``, because the domains queue their own jobs
(payouts, refunds, mail) and no domain may import the layer above it. What runs
the jobs (the sweep, its ticker, the worker command) stays in ``skileez.jobs``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app, has_app_context
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import event, or_, update
from sqlalchemy.orm import Session

from skileez import clock
from skileez.core.unit_of_work import transaction
from skileez.extensions import db

log = logging.getLogger(__name__)

_SESSION_KEY = "skileez_after_commit_jobs"
#: How long a queued job holds its row. A job still waiting after this (a long backlog,
#: Redis lost it) is queued again by the sweep; the job itself re-checks its row anyway.
QUEUE_CLAIM = timedelta(minutes=15)
_worker_app: Flask | None = None
_worker_app_lock = threading.Lock()


def job(fn: Callable) -> Callable:
    """Make a plain function a job: its own app context, one unit of work, errors re-raised.

    Re-raising matters: RQ records the failure in its failed-job registry and
    admins see it, instead of the job looking done (microblog's mistake). A job
    that calls out (SMTP, Stripe) splits its work with ``transaction()`` blocks of
    its own where something must be durable before the call; whatever follows the
    last of them is committed here.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _app().app_context(), transaction():
            return fn(*args, **kwargs)

    wrapper.__wrapped_job__ = fn  # type: ignore[attr-defined]
    return wrapper


def _app() -> Flask:
    """The app a job runs in: the current one, or one built once per worker process.

    The factory is imported here, at run time, because it imports every package
    (core included): this is the worker's entry point, the one place core reaches
    the factory (documented in pyproject's import contracts).
    """
    global _worker_app
    if has_app_context():
        return current_app._get_current_object()  # type: ignore[attr-defined]
    with _worker_app_lock:
        if _worker_app is None:
            from skileez import create_app

            _worker_app = create_app()
        return _worker_app


def redis_connection(app: Flask | None = None) -> Redis:
    app = app or current_app
    connections = app.extensions.setdefault("skileez_redis", {})
    url = app.config["REDIS_URL"]
    if url not in connections:
        connections[url] = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    return connections[url]


def get_queue(name: str = "default", app: Flask | None = None) -> Queue:
    return Queue(name, connection=redis_connection(app))


def claim_queued(model: Any, row_id: int) -> datetime | None:
    """Mark the row as having a job waiting, unless one already has a live claim.

    Returns the claim's end (the token to release it with), or None if the row is
    claimed already. Runs in the caller's transaction: the claim and the change that
    asks for the job commit together.
    """
    now = clock.now()
    until = now + QUEUE_CLAIM
    result = db.session.execute(
        update(model).where(model.id == row_id,
                            or_(model.queued_until.is_(None), model.queued_until <= now))
        .values(queued_until=until).execution_options(synchronize_session=False))
    return until if result.rowcount == 1 else None


def _release_queued(app: Flask, model: Any, row_id: int, until: datetime) -> None:
    """The job could not be handed over: the next sweep may queue it, without waiting.

    Runs after the commit, so on its own connection; only our own claim is released.
    """
    try:
        with app.app_context(), db.engine.begin() as connection:
            table = model.__table__
            connection.execute(update(table).where(table.c.id == row_id,
                                                   table.c.queued_until == until)
                               .values(queued_until=None))
    except Exception:
        log.exception("Could not release the queue claim on %s %s", model.__name__, row_id)


def enqueue_after_commit(func: Callable, *args: Any, queue: str = "default",
                         claim: tuple[Any, int] | None = None, **options: Any) -> bool:
    """Dispatch ``func(*args)`` once the current transaction commits.

    With ``claim=(Model, row_id)`` the row is marked as queued in this transaction, so
    a sweep meanwhile does not queue a second job for it; if the row is claimed
    already, a job is waiting for it and none is added (returns False).
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    release = None
    if claim is not None:
        db.session.flush()
        until = claim_queued(*claim)
        if until is None:
            return False
        release = (claim[0], claim[1], until)
    session = db.session()
    session.info.setdefault(_SESSION_KEY, []).append(
        (app, func, args, queue, options, release))
    return True


def dispatch_claimed(func: Callable, model: Any, row_ids: Iterable[int], *,
                     queue: str = "default", **options: Any) -> int:
    """The sweep's hand-over: one job per due row, queued when the sweep's transaction commits.

    Rows another job already holds are skipped, so a backlog never grows by the
    sweep; a row whose job cannot be handed over (Redis down) is released for the
    next sweep. Returns how many jobs were queued.
    """
    queued = 0
    for row_id in row_ids:
        if enqueue_after_commit(func, row_id, queue=queue, claim=(model, row_id), **options):
            queued += 1
    return queued


def dispatch(app: Flask, func: Callable, args: tuple, queue: str = "default",
             **options: Any) -> bool:
    """Run or enqueue a job now. Returns False if it could not be handed over."""
    if app.config["JOBS_BACKEND"] == "rq":
        try:
            get_queue(queue, app).enqueue(func, *args, **options)
            return True
        except RedisError as exc:
            log.warning("Redis unreachable, %s left for the sweep: %s", func.__name__, exc)
            return False
    try:
        with app.app_context():
            func(*args)
        return True
    except Exception:
        # The change that queued this job has committed; its failure is recorded on
        # the row it concerns (for mail: attempts and last_error) and retried by the sweep.
        log.exception("In-process job %s%r failed", func.__name__, args)
        return False


@event.listens_for(Session, "after_commit")
def _run_jobs_after_commit(session: Session) -> None:
    # Releasing a SAVEPOINT fires after_commit too; only the real commit counts.
    if session.in_nested_transaction():
        return
    pending = session.info.pop(_SESSION_KEY, None)
    for app, func, args, queue, options, release in pending or ():
        if not dispatch(app, func, args, queue, **options) and release is not None:
            _release_queued(app, *release)


@event.listens_for(Session, "after_rollback")
def _drop_jobs_after_rollback(session: Session) -> None:
    # A SAVEPOINT rolled back does not undo what the outer transaction queued.
    if session.in_nested_transaction():
        return
    session.info.pop(_SESSION_KEY, None)
