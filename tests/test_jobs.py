"""Jobs on real Redis with a real RQ worker, and the sweep that makes them reliable."""

from __future__ import annotations

import signal
import time

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from sqlalchemy import select

from skileez.core.queue import PromptShutdown
from skileez.extensions import db
from skileez.jobs.runner import enqueue_sweep_once_per_interval
from skileez.jobs.sweep import HANDLERS, SweepError, deadline_handler, sweep
from skileez.notifications.models import OutboxEmail
from tests.conftest import (
    WORKER_SIGNALS,
    Client,
    free_port,
    signal_handlers_restored,
    smtp_config,
)

pytestmark = pytest.mark.redis

REGISTER = {"name": "Ana Lopez", "email": "ana@example.com", "password": "a long passphrase",
            "confirm": "a long passphrase", "role": "student", "timezone": "Europe/Madrid"}


class BurstWorker(PromptShutdown, SimpleWorker):
    """RQ's worker that runs jobs in its own process, stopping as promptly as ours."""


def run_worker(app, redis_url, queues=("default", "mail", "payouts")):
    """A real RQ worker in burst mode: works off everything queued, then stops."""
    connection = Redis.from_url(redis_url)
    with app.app_context():
        worker = BurstWorker([Queue(name, connection=connection) for name in queues],
                              connection=connection)
        worker.work(burst=True)


def mail_rows(app):
    with app.app_context():
        rows = db.session.scalars(select(OutboxEmail)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def test_registration_email_is_queued_on_redis_and_sent_by_a_worker(make_app, redis_url,
                                                                    smtp_server):
    app = make_app(REDIS_URL=redis_url, **smtp_config(smtp_server))
    assert app.config["JOBS_BACKEND"] == "rq"
    assert Client(app).post("/register", REGISTER, token_page="/register").status_code == 303
    # Committed and queued, not yet sent: the worker does that.
    assert Queue("mail", connection=Redis.from_url(redis_url)).count == 1
    assert [row.status for row in mail_rows(app)] == ["pending"]
    assert smtp_server.messages == []

    run_worker(app, redis_url)
    assert [m["To"] for m in smtp_server.messages] == ["ana@example.com"]
    assert [row.status for row in mail_rows(app)] == ["sent"]


def test_outbox_survives_redis_being_unreachable_and_next_sweep_sends_it(
        make_app, redis_url, smtp_server):
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    down = make_app(REDIS_URL=unreachable, **smtp_config(smtp_server))
    response = Client(down).post("/register", REGISTER, token_page="/register")
    assert response.status_code == 303  # the person is not bothered by our outage
    [row] = mail_rows(down)
    assert row.status == "pending" and row.attempts == 0

    # Redis is back; the next sweep finds the pending email and a worker sends it.
    up = make_app(REDIS_URL=redis_url, **smtp_config(smtp_server))
    with up.app_context():
        assert sweep()["send_due_mail"] == 1
    run_worker(up, redis_url)
    assert [m["To"] for m in smtp_server.messages] == ["ana@example.com"]
    assert [row.status for row in mail_rows(up)] == ["sent"]


def test_smtp_failure_is_retried_by_rq_with_backoff(make_app, redis_url):
    app = make_app(REDIS_URL=redis_url, MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(),
                   MAIL_USE_TLS=False)
    assert Client(app).post("/register", REGISTER, token_page="/register").status_code == 303
    run_worker(app, redis_url)
    queue = Queue("mail", connection=Redis.from_url(redis_url))
    scheduled = ScheduledJobRegistry(queue=queue)
    [job_id] = scheduled.get_job_ids()
    job = queue.fetch_job(job_id)
    assert job.retries_left == 2 and job.retry_intervals == [60, 300, 900]
    [row] = mail_rows(app)
    assert row.status == "pending" and row.attempts == 1


def test_a_failing_job_is_recorded_not_swallowed(make_app, redis_url, make_client,
                                                 make_user):
    # One immediate retry, so the burst worker exhausts the retries in this test.
    app = make_app(REDIS_URL=redis_url, MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(),
                   MAIL_USE_TLS=False, MAIL_RETRY_INTERVALS=(0,))
    make_user("admin", email="root@example.com")
    assert Client(app).post("/register", REGISTER, token_page="/register").status_code == 303
    run_worker(app, redis_url)

    connection = Redis.from_url(redis_url)
    registry = FailedJobRegistry(queue=Queue("mail", connection=connection))
    assert registry.count == 1
    [row] = mail_rows(app)
    assert row.status == "pending" and row.attempts == 2
    assert "ConnectionRefusedError" in row.last_error

    admin = make_client(app)
    admin.login("root@example.com")
    page = admin.get("/admin/jobs").get_data(as_text=True)
    assert "skileez.notifications.mail.deliver" in page
    assert "ConnectionRefusedError" in page
    job_id = registry.get_job_ids()[0]
    response = admin.post(f"/admin/jobs/mail/{job_id}/delete", token_page="/admin/jobs")
    assert response.status_code == 303
    assert registry.count == 0
    assert admin.post("/admin/jobs/mail/no-such-job/requeue",
                      token_page="/admin/jobs").status_code == 404


def test_sweep_runs_on_a_worker_and_failing_handlers_are_reported(make_app, redis_url):
    app = make_app(REDIS_URL=redis_url)
    calls = []

    @deadline_handler("test_broken")
    def broken():
        calls.append("broken")
        raise RuntimeError("handler exploded")

    @deadline_handler("test_counting")
    def counting():
        calls.append("counting")
        return 3

    try:
        with app.app_context(), pytest.raises(SweepError, match="handler exploded"):
            sweep()
        assert calls == ["broken", "counting"]  # one failure does not stop the others

        assert enqueue_sweep_once_per_interval(app) is True
        run_worker(app, redis_url)
        registry = FailedJobRegistry(queue=Queue("default",
                                                 connection=Redis.from_url(redis_url)))
        assert registry.count == 1
    finally:
        HANDLERS.pop("test_broken")
        HANDLERS.pop("test_counting")


def test_only_one_sweep_is_enqueued_per_interval_across_workers(make_app, redis_url, clock):
    app = make_app(REDIS_URL=redis_url)
    assert enqueue_sweep_once_per_interval(app) is True
    assert enqueue_sweep_once_per_interval(app) is False  # another machine's ticker
    assert Queue("default", connection=Redis.from_url(redis_url)).count == 1
    from datetime import timedelta

    clock.advance(timedelta(seconds=60))
    assert enqueue_sweep_once_per_interval(app) is True


def test_worker_command_refuses_without_redis(app):
    result = app.test_cli_runner().invoke(args=["skileez", "worker", "--burst"])
    assert result.exit_code != 0 and "REDIS_URL is not set" in result.output


def test_worker_command_runs_a_burst(make_app, redis_url, smtp_server):
    app = make_app(REDIS_URL=redis_url, **smtp_config(smtp_server))
    Client(app).post("/register", REGISTER, token_page="/register")
    result = app.test_cli_runner().invoke(args=["skileez", "worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize("attempt", range(3))  # the hang was a race: give it chances
def test_a_burst_worker_stops_when_its_work_is_done_not_a_minute_later(make_app, redis_url,
                                                                       attempt):
    """RQ's pub/sub listener waits 60 s per read, and stopping it raced with unsubscribing:
    a deploy's shutdown or a ``--burst`` run often hung a minute after its work. The
    bound is a hang detector, far above a normal stop (well under a second)."""
    app = make_app(REDIS_URL=redis_url)
    started = time.monotonic()
    with signal_handlers_restored():
        run_worker(app, redis_url)
    assert time.monotonic() - started < 20, "the worker hung after its last job"
    assert Redis.from_url(redis_url).pubsub_channels("rq:pubsub:*") == []  # channel left


def test_a_worker_leaves_the_suite_the_signal_handlers_it_found(make_app, redis_url):
    app = make_app(REDIS_URL=redis_url)
    before = {signum: signal.getsignal(signum) for signum in WORKER_SIGNALS}
    with signal_handlers_restored():
        run_worker(app, redis_url)
        # RQ really does take the signals over, which is why conftest restores them.
        assert {signum: signal.getsignal(signum) for signum in WORKER_SIGNALS} != before
    assert {signum: signal.getsignal(signum) for signum in WORKER_SIGNALS} == before
