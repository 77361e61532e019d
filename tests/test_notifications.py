"""The bell, the notifications page, and emails through the outbox."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.mail import deliver
from skileez.notifications.models import Notification, OutboxEmail
from skileez.notifications.operations import notify
from tests.conftest import free_port, smtp_config


def outbox(app):
    with app.app_context():
        rows = db.session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def test_bell_counts_unread_and_refreshes_itself(app, client, make_user):
    user = make_user(email="sam@example.com", welcome=True)
    client.login("sam@example.com")
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'data-unread-count="1"' in page
    assert 'hx-get="/notifications/bell"' in page and 'hx-trigger="every 30s' in page

    with app.app_context():
        from skileez.auth.models import User

        notify(db.session.get(User, user.id), "welcome", {"role": "student"}, email=False)
        db.session.commit()
    bell = client.get("/notifications/bell", headers={"HX-Request": "true"})
    fragment = bell.get_data(as_text=True)
    assert 'data-unread-count="2"' in fragment and "<html" not in fragment
    assert 'id="notification-bell"' in fragment


def test_marking_read_one_by_one_and_all(app, client, make_user):
    user = make_user(email="sam@example.com", welcome=True)
    with app.app_context():
        from skileez.auth.models import User

        for _ in range(2):
            notify(db.session.get(User, user.id), "welcome", {"role": "student"}, email=False)
        db.session.commit()
        first_id = db.session.scalar(select(Notification.id).order_by(Notification.id))
    client.login("sam@example.com")
    listing = client.get("/notifications/").get_data(as_text=True)
    assert listing.count("Mark read") == 3
    response = client.post(f"/notifications/{first_id}/read", htmx=True,
                           token_page="/notifications/")
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "notifications-changed"
    assert "Read" in response.get_data(as_text=True)
    assert 'data-unread-count="2"' in client.get("/notifications/bell").get_data(as_text=True)

    response = client.post("/notifications/read-all", token_page="/notifications/")
    assert response.status_code == 303
    assert "data-unread-count" not in client.get("/notifications/bell").get_data(as_text=True)


def test_someone_elses_notification_is_404(app, client, make_user):
    make_user(email="other@example.com", welcome=True)
    make_user(email="sam@example.com")
    with app.app_context():
        theirs = db.session.scalar(select(Notification.id))
    client.login("sam@example.com")
    assert client.post(f"/notifications/{theirs}/read", token_page="/dashboard") \
        .status_code == 404
    with app.app_context():
        assert db.session.get(Notification, theirs).read_at is None


def test_welcome_email_goes_over_smtp_with_text_and_html(make_app, smtp_server):
    app = make_app(**smtp_config(smtp_server))
    from tests.conftest import Client

    client = Client(app)
    response = client.post("/register", {
        "name": "Ana Lopez", "email": "ana@example.com", "password": "a long passphrase",
        "confirm": "a long passphrase", "role": "coach", "timezone": "Europe/Madrid"},
        token_page="/register")
    assert response.status_code == 303
    [message] = smtp_server.messages
    assert message["To"] == "ana@example.com"
    assert message["Subject"] == "Welcome to Skileez, Ana Lopez"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Your coach account is ready" in text and "Your coach account is ready" in html
    assert "http://skileez.test/dashboard" in text and 'href="http://skileez.test/dashboard"' \
        in html
    [row] = outbox(app)
    assert (row.status, row.transport, row.attempts) == ("sent", "smtp", 1)


def test_smtp_down_keeps_the_email_and_a_later_sweep_sends_it(make_app, make_user, clock,
                                                              smtp_server):
    closed_port = free_port()
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=closed_port, MAIL_USE_TLS=False)
    make_user(email="sam@example.com", welcome=True)
    [row] = outbox(app)
    assert row.status == "pending" and row.attempts == 1
    assert "ConnectionRefusedError" in row.last_error
    assert row.next_attempt_at == clock.now() + timedelta(minutes=1)

    # Not due yet: the sweep leaves it alone.
    app.config.update(smtp_config(smtp_server))
    with app.app_context():
        assert sweep()["send_due_mail"] == 0
    clock.advance(timedelta(minutes=1))
    with app.app_context():
        assert sweep()["send_due_mail"] == 1
    [row] = outbox(app)
    assert row.status == "sent" and row.attempts == 2 and row.last_error is None
    assert [m["To"] for m in smtp_server.messages] == ["sam@example.com"]


def test_email_fails_for_good_after_max_attempts_and_admin_can_retry(
        make_app, make_user, clock, smtp_server, make_client):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), MAIL_USE_TLS=False,
                   MAIL_MAX_ATTEMPTS=3)
    make_user("admin", email="root@example.com")
    make_user(email="sam@example.com", welcome=True)
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        with app.app_context():
            sweep()
    [row] = outbox(app)
    assert row.status == "failed" and row.attempts == 3

    admin = make_client(app)
    admin.login("root@example.com")
    jobs_page = admin.get("/admin/jobs").get_data(as_text=True)
    assert "Welcome to Skileez" in jobs_page and "ConnectionRefusedError" in jobs_page
    app.config.update(smtp_config(smtp_server))
    response = admin.post(f"/admin/mail/{row.id}/retry", token_page=f"/admin/mail/{row.id}")
    assert response.status_code == 303
    [row] = outbox(app)
    assert row.status == "sent"
    assert len(smtp_server.messages) == 1


@pytest.mark.real_commits  # threads or a second connection see only what is committed
def test_two_deliveries_at_once_send_one_email(make_app, make_user, smtp_server):
    app = make_app()  # local mailbox while the row is written
    make_user(email="sam@example.com", welcome=True)
    with app.app_context():
        row_id = db.session.scalar(select(OutboxEmail.id))
        db.session.execute(OutboxEmail.__table__.update().values(status="pending",
                                                                   attempts=0))
        db.session.commit()
    app.config.update(smtp_config(smtp_server))
    barrier, results = threading.Barrier(5), []

    def run():
        with app.app_context():
            barrier.wait()
            results.append(deliver(row_id))

    threads = [threading.Thread(target=run) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(smtp_server.messages) == 1
    assert results.count("smtp") == 1


def test_rolled_back_change_leaves_no_notification_or_email(app, make_user):
    user = make_user(email="sam@example.com")
    with app.app_context():
        from skileez.auth.models import User

        notify(db.session.get(User, user.id), "welcome", {"role": "student"})
        db.session.rollback()
    assert outbox(app) == []
    with app.app_context():
        assert db.session.scalars(select(Notification)).all() == []
