"""The ledger check as an admin meets it: run by a job, its last result on the money page.

The check reads the whole ledger, so the page never runs it: it shows what the last
check found and when (in the admin's zone, with the zone named), and "Check now"
queues a new one (run at once in this process without Redis, by a worker with it).
"""

from __future__ import annotations

import html
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import func, insert, select

from skileez.extensions import db
from skileez.jobs.ledger_check import check_ledger_if_due
from skileez.jobs.runner import start_inprocess_sweeper
from skileez.jobs.sweep import sweep
from skileez.payments import ledger
from skileez.payments.models import LedgerCheck, LedgerEntry, LedgerTransaction
from tests.conftest import Client
from tests.test_jobs import run_worker

SLOT = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
PAGE = "/admin/payments"


@pytest.fixture
def admin(app, client, make_user):
    make_user("admin", email="root@example.com", name="Root Admin", timezone="Europe/London")
    client.login("root@example.com")
    return client


def text(response) -> str:
    """What a person reads: the page without its tags, spaces collapsed."""
    words = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return re.sub(r"\s+", " ", html.unescape(words)).replace(" ,", ",").replace(" .", ".")


def check_now(client):
    return client.post(f"{PAGE}/ledger-check", token_page=PAGE)


def checks(app) -> list[LedgerCheck]:
    with app.app_context():
        rows = db.session.scalars(select(LedgerCheck).order_by(LedgerCheck.id)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def unbalance_the_ledger(app) -> int:
    """Write an entry straight into the table (no posting function would): 1 euro from
    nowhere into escrow, in a transaction of its own."""
    with app.app_context():
        transaction_id = db.session.execute(insert(LedgerTransaction).values(
            kind="payment_held", memo="forged", created_at=SLOT)).inserted_primary_key[0]
        db.session.execute(insert(LedgerEntry).values(
            transaction_id=transaction_id, account="escrow", amount_minor=100, currency="EUR"))
        db.session.commit()
        return transaction_id


def test_a_ledger_never_checked_says_so_and_the_page_does_not_check_it(app, admin, clock):
    page = text(admin.get(PAGE))
    assert "The ledger has not been checked yet." in page
    assert "It is checked every 10 minutes" in page  # the policy's interval, in words
    assert "Ledger check passed" not in page and "Ledger check failed" not in page
    assert checks(app) == []  # looking at the page ran nothing


def test_check_now_runs_the_check_and_the_page_shows_when_in_the_admins_zone(
        app, admin, clock, coaching, paid_session):
    paid_session(coaching["student"], coaching["contract"], SLOT)
    response = check_now(admin)
    assert response.status_code == 303 and response.headers["Location"].endswith(PAGE)
    page = text(admin.get(PAGE))
    assert "The ledger was checked just now: no problems found." in page
    assert "Ledger check passed" in page
    # Frozen at 09:00 UTC on 10 March: 09:00 in London (GMT), named.
    assert "Checked Tue 10 Mar 2026, 09:00 GMT (just now)" in page
    assert "asked for by Root Admin" in page
    [check] = checks(app)
    assert check.source == "admin" and check.problem_count == 0 and check.finished_at

    clock.advance(timedelta(hours=2))
    later = text(admin.get(PAGE))
    assert "Checked Tue 10 Mar 2026, 09:00 GMT (2 hours ago)" in later  # stored, not re-run
    assert len(checks(app)) == 1


def test_a_broken_ledger_shows_up_as_a_problem(app, admin, clock, coaching, paid_session):
    paid_session(coaching["student"], coaching["contract"], SLOT)
    check_now(admin)
    forged = unbalance_the_ledger(app)
    page = text(admin.get(PAGE))
    assert "Ledger check passed" in page  # the page shows the last result, not a new one

    clock.advance(timedelta(minutes=1))
    response = check_now(admin)
    page = text(admin.get(PAGE))
    assert "The ledger was checked just now and has problems" in page
    assert "Ledger check failed: 3 problems." in page
    assert f"Ledger transaction {forged} does not balance: its EUR entries sum to +100, not 0." \
        in page
    assert f"Ledger transaction {forged} (payment_held) is not linked" in page
    assert "Escrow holds 5090 EUR but payments still in escrow add up to 4990 EUR." in page
    assert response.status_code == 303


def test_only_the_first_problems_are_kept_and_the_rest_are_counted(app, admin, clock):
    forged = [unbalance_the_ledger(app) for _ in range(ledger.PROBLEMS_KEPT + 5)]
    check_now(admin)
    page = text(admin.get(PAGE))
    # Each forged transaction is unbalanced and unlinked; escrow disagrees once.
    found = 2 * len(forged) + 1
    assert f"Ledger check failed: {found} problems." in page
    assert page.count("does not balance") == ledger.PROBLEMS_KEPT
    assert f"…and {found - ledger.PROBLEMS_KEPT} more not shown." in page


def test_check_now_needs_the_csrf_token(app, admin):
    assert admin.post(f"{PAGE}/ledger-check", csrf=False).status_code == 400
    assert checks(app) == []


def test_in_process_the_ledger_is_checked_on_its_schedule_but_not_inside_the_sweep(
        app, admin, clock):
    """Without Redis a job runs on the thread that asks for it: inside the sweep, every
    sweep would wait for the whole check. The sweeper thread asks after the sweep."""
    with app.app_context():
        assert sweep()["ledger_check"] == 0
        assert checks(app) == []
        assert check_ledger_if_due() == 1  # never checked: due at once
        assert check_ledger_if_due() == 0
    clock.advance(timedelta(minutes=9))
    with app.app_context():
        assert check_ledger_if_due() == 0  # the interval (10 minutes) has not passed
    clock.advance(timedelta(minutes=1))
    with app.app_context():
        assert check_ledger_if_due() == 1
    assert [(c.source, c.problem_count) for c in checks(app)] == [("schedule", 0)] * 2
    page = text(admin.get(PAGE))
    assert "Checked Tue 10 Mar 2026, 09:10 GMT" in page
    assert "on the schedule, every 10 minutes" in page


@pytest.mark.real_commits
def test_the_in_process_sweeper_thread_checks_the_ledger(app, clock):
    stop = threading.Event()
    thread = start_inprocess_sweeper(app, stop)
    try:
        for _ in range(100):
            if any(c.finished_at for c in checks(app)):
                break
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=10)
    [check] = checks(app)
    assert check.source == "schedule" and check.problem_count == 0


def test_a_second_job_for_the_same_check_does_nothing(app, clock):
    with app.app_context():
        check = LedgerCheck(source="schedule", requested_at=clock.now())
        db.session.add(check)
        db.session.commit()
        check_id = check.id
    with app.app_context():
        assert ledger.run_check(check_id) == 0
    first = checks(app)[0]
    clock.advance(timedelta(minutes=1))
    with app.app_context():
        assert ledger.run_check(check_id) is None  # finished: the duplicate leaves it alone
    assert checks(app)[0].finished_at == first.finished_at


def test_two_checks_at_once_each_keep_their_own_result_and_the_later_one_is_shown(
        app, admin, clock):
    """Two checks overlap: the one that started first, on a healthy ledger, finishes last.
    Its stale "passed" must not hide what the newer check found, and neither may
    overwrite the other's row."""
    with app.app_context():
        older = LedgerCheck(source="schedule", requested_at=clock.now())
        newer = LedgerCheck(source="schedule", requested_at=clock.now())
        db.session.add_all([older, newer])
        db.session.commit()
        older_claim = ledger._claim_check(older.id)  # the older check starts…
        db.session.commit()
        older_id, newer_id = older.id, newer.id
    unbalance_the_ledger(app)
    clock.advance(timedelta(minutes=1))
    with app.app_context():
        assert ledger.run_check(newer_id) == 3  # …the newer one sees the damage…
    clock.advance(timedelta(minutes=1))
    with app.app_context():  # …and the older one finishes with what it saw when it began.
        ledger._finish_check(older_id, older_claim, 0.0, problems=[])
        db.session.commit()
    rows = {c.id: c for c in checks(app)}
    assert (rows[older_id].problem_count, rows[newer_id].problem_count) == (0, 3)
    assert rows[older_id].finished_at > rows[newer_id].finished_at
    page = text(admin.get(PAGE))
    assert "Ledger check failed: 3 problems." in page and "Ledger check passed" not in page
    assert "Checked Tue 10 Mar 2026, 09:01 GMT" in page


@pytest.mark.redis
def test_with_redis_check_now_queues_the_job_and_a_worker_runs_it(make_app, redis_url,
                                                                  make_user, clock):
    app = make_app(REDIS_URL=redis_url)
    make_user("admin", email="root@example.com", name="Root Admin", timezone="Europe/London")
    admin = Client(app)
    admin.login("root@example.com")

    response = check_now(admin)
    assert response.status_code == 303
    page = text(admin.get(PAGE))
    assert "A ledger check has been queued." in page
    assert "A check asked for at 09:00 GMT is waiting for a worker." in page
    assert "The ledger has not been checked yet." in page
    assert Queue("default", connection=Redis.from_url(redis_url)).count == 1

    again = admin.post(f"{PAGE}/ledger-check", token_page=PAGE, follow_redirects=True)
    assert "A ledger check is already on its way" in text(again)
    assert Queue("default", connection=Redis.from_url(redis_url)).count == 1
    fragment = admin.get(f"{PAGE}/ledger-check", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 5s"' in fragment.get_data(as_text=True)  # it polls meanwhile

    run_worker(app, redis_url)
    page = text(admin.get(PAGE))
    assert "Ledger check passed" in page and "waiting for a worker" not in page
    assert "Checked Tue 10 Mar 2026, 09:00 GMT" in page
    fragment = admin.get(f"{PAGE}/ledger-check", headers={"HX-Request": "true"})
    assert "hx-trigger" not in fragment.get_data(as_text=True)  # done: it stops polling
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerCheck)) == 1


@pytest.mark.redis
def test_with_redis_the_sweep_queues_the_check_on_its_schedule(make_app, redis_url, clock):
    app = make_app(REDIS_URL=redis_url)
    queue = Queue("default", connection=Redis.from_url(redis_url))
    with app.app_context():
        assert sweep()["ledger_check"] == 1
        assert sweep()["ledger_check"] == 0  # waiting for a worker: not asked twice
    assert queue.count == 1
    run_worker(app, redis_url)
    assert [(c.source, c.problem_count) for c in checks(app)] == [("schedule", 0)]
    clock.advance(timedelta(minutes=10))
    with app.app_context():
        assert sweep()["ledger_check"] == 1
    assert queue.count == 1


def test_old_checks_and_requests_whose_job_was_lost_are_deleted_by_the_next_check(app, clock):
    def run_one():
        with app.app_context():
            ledger.request_check(source="schedule")
            db.session.commit()

    run_one()  # the result that will be the newest for a long time
    with app.app_context():  # a request whose job Redis lost: never claimed, never run
        db.session.add(LedgerCheck(source="admin", requested_at=clock.now()))
        db.session.commit()
    clock.advance(ledger.CHECK_HISTORY + timedelta(minutes=1))
    with app.app_context():  # the schedule broke for a month; the next check cleans up
        kept = ledger.last_finished_check().id
        check, queued = ledger.request_check(source="schedule")
        db.session.commit()
        assert queued
        newest = check.id
    assert kept != newest
    assert [c.id for c in checks(app)] == [newest]  # the month-old rows made way for it


def test_a_check_that_cannot_finish_says_why_and_the_next_one_runs(app, admin, clock,
                                                                   monkeypatch):
    def broken():
        raise RuntimeError("the database went away")

    monkeypatch.setattr(ledger, "check_invariants", broken)
    response = admin.post(f"{PAGE}/ledger-check", token_page=PAGE, follow_redirects=True)
    page = text(response)
    assert "The ledger check could not finish; the error is shown below." in page
    assert "The last ledger check could not finish. RuntimeError: the database went away" \
        in page
    assert "Ledger check passed" not in page
    monkeypatch.undo()
    clock.advance(timedelta(minutes=1))
    assert "Ledger check passed" in text(admin.post(f"{PAGE}/ledger-check", token_page=PAGE,
                                                    follow_redirects=True))


def test_the_fragment_opened_in_a_browser_is_the_payments_page_at_its_card(app, make_user):
    """Found by a tester: the polled card, opened directly, was a bare unstyled fragment."""
    make_user("admin", name="Ada Admin", email="root@example.com")
    admin = Client(app)
    admin.login("root@example.com")
    response = admin.get(f"{PAGE}/ledger-check")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"{PAGE}#ledger-check")
