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

import rq
from flask import Flask, current_app, has_app_context
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import event, or_, update
from sqlalchemy.orm import Session

from skileez import clock
from skileez.core.db import among
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


class PromptShutdown:
    """Mixed into an RQ worker class: it stops within a second of being told to.

    RQ listens for remote commands (stop a job, shut the worker down) on a pub/sub thread
    whose every read waits up to 60 s. RQ unsubscribes first and stops the thread after:
    when the thread has read the unsubscribe reply before it is told to stop, its next
    read waits the full 60 s for a subscription that will never come, and since redis-py
    8 stopping the thread waits for that read. So a deploy's shutdown, or a ``--burst``
    run, often took a minute longer than its work. Here the thread is told to stop first,
    then the unsubscribe reply ends its current read, and it exits at once.
    """

    def unsubscribe(self) -> None:
        thread, self.pubsub_thread = self.pubsub_thread, None
        if thread is None:
            return
        try:
            thread.stop(timeout=0)  # clears its running flag; redis-py 8 would also wait
        except TypeError:  # redis-py before 8: stop() takes no timeout and does not wait
            thread.stop()
        self.pubsub.unsubscribe()
        thread.join(timeout=5)
        self.pubsub.close()


class Worker(PromptShutdown, rq.Worker):
    """The worker ``flask skileez worker`` runs."""


def claim_queued(model: Any, row_id: int) -> datetime | None:
    """Mark the row as having a job waiting, unless one already has a live claim.

    Returns the claim's end (the token to release it with), or None if the row is
    claimed already. Runs in the caller's transaction: the claim and the change that
    asks for the job commit together.
    """
    until, claimed = claim_queued_many(model, [row_id])
    return until if claimed else None


def claim_queued_many(model: Any, row_ids: Iterable[int]) -> tuple[datetime, list[int]]:
    """``claim_queued`` for a batch in one UPDATE: the claim's end and the ids it took."""
    now = clock.now()
    until = now + QUEUE_CLAIM
    row_ids = list(row_ids)
    if not row_ids:
        return until, []
    claimed = db.session.scalars(
        update(model).where(among(model.id, row_ids),
                            or_(model.queued_until.is_(None), model.queued_until <= now))
        .values(queued_until=until).returning(model.id)
        .execution_options(synchronize_session=False)).all()
    return until, sorted(claimed)


def _release_queued(app: Flask, model: Any, row_ids: list[int], until: datetime) -> None:
    """The job could not be handed over: the next sweep may queue it, without waiting.

    Runs after the commit, so on its own connection; only our own claim is released.
    """
    try:
        with app.app_context(), db.engine.begin() as connection:
            table = model.__table__
            connection.execute(update(table).where(table.c.id.in_(row_ids),
                                                   table.c.queued_until == until)
                               .values(queued_until=None))
    except Exception:
        log.exception("Could not release the queue claim on %s %s", model.__name__, row_ids)


def enqueue_after_commit(func: Callable, *args: Any, queue: str = "default",
                         claim: tuple[Any, int] | None = None, **options: Any) -> bool:
    """Dispatch ``func(*args)`` once the current transaction commits.

    With ``claim=(Model, row_id)`` the row is marked as queued in this transaction, so
    a sweep meanwhile does not queue a second job for it; if the row is claimed
    already, a job is waiting for it and none is added (returns False).
    """
    release = None
    if claim is not None:
        db.session.flush()
        until = claim_queued(*claim)
        if until is None:
            return False
        release = (claim[0], [claim[1]], until)
    _after_commit(func, args, queue, options, release)
    return True


def _after_commit(func: Callable, args: tuple, queue: str, options: dict,
                  release: tuple[Any, list[int], datetime] | None) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    session = db.session()
    session.info.setdefault(_SESSION_KEY, []).append(
        (app, func, args, queue, options, release))


def enqueue_claimed(func: Callable, model: Any, row_ids: Iterable[int], *, until: datetime,
                    queue: str = "default", batch: bool = False, **options: Any) -> None:
    """Dispatch jobs after commit for rows already claimed as queued until ``until``.

    One job per row, or with ``batch`` one job taking the list of ids. A job that
    cannot be handed over (Redis down) releases its rows' claim, so the next sweep
    queues them again.
    """
    row_ids = list(row_ids)
    if batch and row_ids:
        _after_commit(func, (row_ids,), queue, options, (model, row_ids, until))
    elif not batch:
        for row_id in row_ids:
            _after_commit(func, (row_id,), queue, options, (model, [row_id], until))


def dispatch_claimed(func: Callable, model: Any, row_ids: Iterable[int], *,
                     queue: str = "default", batch: bool = False, **options: Any) -> int:
    """The sweep's hand-over: jobs for due rows, queued when the sweep's transaction commits.

    The rows are claimed in one statement; rows another job already holds are
    skipped, so a backlog never grows by the sweep. Returns how many rows were queued.
    """
    db.session.flush()
    until, claimed = claim_queued_many(model, row_ids)
    enqueue_claimed(func, model, claimed, until=until, queue=queue, batch=batch, **options)
    return len(claimed)


def left_for_the_sweep(count: int) -> bool:
    """Whether jobs for ``count`` rows written together wait for the sweep's handlers.

    With RQ every job goes to a worker at commit. In-process, a job runs on the
    thread that committed; for a batch (the sweep's) that would run hundreds of
    deliveries between one batch and the next, so the rows are left unclaimed and
    due, and the handler that sends them drains them in batches within the sweep's
    time budget. A single row (a person's action) is still sent at commit.
    """
    return count > 1 and current_app.config["JOBS_BACKEND"] != "rq"


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
