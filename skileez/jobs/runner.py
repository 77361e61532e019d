"""Keeping the sweep going: a thread for in-process mode, a ticker beside RQ workers."""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask

from skileez import clock
from skileez.core.queue import get_queue, redis_connection
from skileez.jobs.ledger_check import check_ledger_if_due
from skileez.jobs.reconciliation import reconcile_if_due
from skileez.jobs.sweep import sweep

log = logging.getLogger(__name__)


def start_inprocess_sweeper(app: Flask, stop: threading.Event | None = None) -> threading.Thread:
    """Run the sweep every SWEEP_INTERVAL_SECONDS on a daemon thread (no Redis needed), and
    the ledger check and the nightly comparison with Stripe after it when those are due (see
    ``skileez.jobs.ledger_check`` and ``skileez.jobs.reconciliation``)."""
    stop = stop or threading.Event()
    interval = app.config["SWEEP_INTERVAL_SECONDS"]

    def loop() -> None:
        while not stop.is_set():
            try:
                with app.app_context():
                    sweep()
            except Exception:
                log.exception("Sweep failed; trying again in %s seconds", interval)
            try:
                with app.app_context():
                    check_ledger_if_due()
            except Exception:
                log.exception("Could not check the ledger; trying again after the next sweep")
            try:
                with app.app_context():
                    reconcile_if_due()
            except Exception:
                log.exception("Could not compare with Stripe; trying again after the next sweep")
            stop.wait(interval)

    thread = threading.Thread(target=loop, name="skileez-sweeper", daemon=True)
    thread.start()
    return thread


def enqueue_sweep_once_per_interval(app: Flask) -> bool:
    """Enqueue the sweep unless another machine already did for this interval.

    Every worker runs this ticker, so a dead machine never stops the sweep; the
    Redis ``SET NX`` key keeps it to one sweep per interval across all of them.
    """
    interval = app.config["SWEEP_INTERVAL_SECONDS"]
    slot = int(clock.now().timestamp() // interval)
    key = f"skileez:sweep:{slot}"
    if redis_connection(app).set(key, "1", nx=True, ex=interval * 3):
        get_queue("default", app).enqueue(sweep, job_timeout=interval * 5)
        return True
    return False


def start_sweep_ticker(app: Flask, stop: threading.Event) -> threading.Thread:
    interval = app.config["SWEEP_INTERVAL_SECONDS"]

    def loop() -> None:
        while not stop.is_set():
            try:
                enqueue_sweep_once_per_interval(app)
            except Exception:
                log.exception("Could not enqueue the sweep; retrying")
            # Wake just after the next interval boundary.
            stop.wait(interval - (time.time() % interval) + 0.5)

    thread = threading.Thread(target=loop, name="skileez-sweep-ticker", daemon=True)
    thread.start()
    return thread
