"""Running job functions after the transaction that asked for them commits.

A job is queued with ``enqueue_after_commit``; it is dispatched only when the
database transaction commits (and dropped if it rolls back), so a worker never
looks for a row that does not exist yet. With Redis it goes to an RQ queue;
without, it runs in this process in a fresh app context. If Redis cannot be
reached the job is not lost: every job that matters has a deadline or a status
in the database, and the sweep picks it up.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, has_app_context
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import event
from sqlalchemy.orm import Session

from skileez.extensions import db

log = logging.getLogger(__name__)

_SESSION_KEY = "skileez_after_commit_jobs"
_worker_app: Flask | None = None
_worker_app_lock = threading.Lock()


def job(fn: Callable) -> Callable:
    """Make a plain function a job: its own app context, one transaction, errors re-raised.

    Re-raising matters: RQ records the failure in its failed-job registry and
    admins see it, instead of the job looking done (microblog's mistake).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        app = _app()
        with app.app_context():
            try:
                result = fn(*args, **kwargs)
                db.session.commit()
                return result
            except BaseException:
                db.session.rollback()
                raise

    wrapper.__wrapped_job__ = fn  # type: ignore[attr-defined]
    return wrapper


def _app() -> Flask:
    """The app a job runs in: the current one, or one built once per worker process."""
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


def enqueue_after_commit(func: Callable, *args: Any, queue: str = "default",
                         **options: Any) -> None:
    """Dispatch ``func(*args)`` once the current transaction commits."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    session = db.session()
    session.info.setdefault(_SESSION_KEY, []).append((app, func, args, queue, options))


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
    for app, func, args, queue, options in pending or ():
        dispatch(app, func, args, queue, **options)


@event.listens_for(Session, "after_rollback")
def _drop_jobs_after_rollback(session: Session) -> None:
    # A SAVEPOINT rolled back does not undo what the outer transaction queued.
    if session.in_nested_transaction():
        return
    session.info.pop(_SESSION_KEY, None)
