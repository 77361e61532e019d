"""Admin pages: users (search, paginate, deactivate/reactivate), mailbox, overview."""

from __future__ import annotations

from sqlalchemy import select

from skileez.auth.models import User
from skileez.core.models import AuditEvent
from skileez.extensions import db
from skileez.notifications.models import Notification, OutboxEmail
from skileez.notifications.operations import notify_many
from skileez.payments.models import Dispute
from tests.conftest import Client
from tests.test_admin_query_budget import world  # noqa: F401


def sign_in_admin(client, make_user):
    admin = make_user("admin", email="root@example.com", name="Root Admin")
    client.login("root@example.com")
    return admin


def test_users_search_filter_and_paginate(app, client, make_user):
    sign_in_admin(client, make_user)
    make_user(name="Ana Lopez", email="ana@example.com")
    make_user("coach", name="Bruno Coach", email="bruno@coaching.org")
    for n in range(25):
        make_user(name=f"Filler {n:02d}", email=f"filler{n}@example.com")

    page = client.get("/admin/users", query_string={"q": "ANA"}).get_data(as_text=True)
    assert "ana@example.com" in page and "bruno@coaching.org" not in page
    page = client.get("/admin/users", query_string={"q": "coaching.org"}).get_data(
        as_text=True)
    assert "Bruno Coach" in page and "Ana Lopez" not in page
    page = client.get("/admin/users", query_string={"role": "coach"}).get_data(as_text=True)
    assert "Bruno Coach" in page and "Filler" not in page
    page = client.get("/admin/users", query_string={"q": "%"}).get_data(as_text=True)
    assert "No users match these filters." in page  # % is matched literally

    first = client.get("/admin/users").get_data(as_text=True)
    assert "Page 1 of 2" in first and "28 in all" in first
    second = client.get("/admin/users", query_string={"page": 2}).get_data(as_text=True)
    assert "Page 2 of 2" in second

    fragment = client.get("/admin/users", query_string={"q": "ana"},
                          headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="users-table">') and "<html" not in fragment


def test_deactivate_asks_for_confirmation_then_signs_the_user_out(app, client, make_user,
                                                                  make_client):
    admin = sign_in_admin(client, make_user)
    target = make_user(name="Ana Lopez", email="ana@example.com")
    ana = make_client(app)
    ana.login("ana@example.com")

    confirm = client.get(f"/admin/users/{target.id}/deactivate").get_data(as_text=True)
    assert "Deactivate Ana Lopez?" in confirm
    assert "signed out on every device" in confirm
    with app.app_context():
        assert db.session.get(User, target.id).status == "active"  # GET changed nothing

    response = client.post(f"/admin/users/{target.id}/deactivate",
                           {"reason": "Abusive messages"},
                           token_page=f"/admin/users/{target.id}/deactivate")
    assert response.status_code == 303
    assert "deactivated and signed out" in client.get("/admin/users").get_data(as_text=True)
    assert ana.get("/dashboard").status_code == 302  # her open session is gone
    with app.app_context():
        assert db.session.get(User, target.id).status == "deactivated"
        event = db.session.scalars(select(AuditEvent).where(
            AuditEvent.object_id == target.id, AuditEvent.to_state == "deactivated")).one()
        assert (event.actor_id, event.reason) == (admin.id, "Abusive messages")

    response = client.post(f"/admin/users/{target.id}/reactivate", {"reason": ""},
                           token_page=f"/admin/users/{target.id}/reactivate")
    assert response.status_code == 303
    ana.login("ana@example.com")


def test_admin_cannot_deactivate_themselves(app, client, make_user):
    admin = sign_in_admin(client, make_user)
    response = client.post(f"/admin/users/{admin.id}/deactivate", {"reason": ""},
                           token_page="/admin/users")
    assert response.status_code == 409
    assert "You cannot deactivate your own account." in response.get_data(as_text=True)


def test_the_confirmation_offers_no_button_that_would_be_refused(client, make_user):
    """Found by a walk: opening "deactivate" again for an account already deactivated
    offered "Yes, deactivate the account", which answered 409."""
    admin = sign_in_admin(client, make_user)
    target = make_user(name="Ana Lopez", email="ana@example.com")
    client.post(f"/admin/users/{target.id}/deactivate", {"reason": ""},
                token_page=f"/admin/users/{target.id}/deactivate")
    again = client.get(f"/admin/users/{target.id}/deactivate").get_data(as_text=True)
    assert "This account is already deactivated." in again
    assert "Yes, deactivate the account" not in again
    own = client.get(f"/admin/users/{admin.id}/deactivate").get_data(as_text=True)
    assert "You cannot deactivate your own account." in own
    assert "Yes, deactivate the account" not in own
    assert "Yes, reactivate the account" in client.get(
        f"/admin/users/{target.id}/reactivate").get_data(as_text=True)


def test_unknown_user_is_404(client, make_user):
    sign_in_admin(client, make_user)
    assert client.get("/admin/users/999999/deactivate").status_code == 404
    assert client.get("/admin/mail/999999").status_code == 404


def test_local_mailbox_lists_and_shows_emails(app, client, make_user):
    sign_in_admin(client, make_user)
    make_user(name="Ana Lopez", email="ana@example.com", welcome=True)
    with app.app_context():
        email_id = db.session.scalar(select(OutboxEmail.id))
    mailbox = client.get("/admin/mail").get_data(as_text=True)
    assert "No SMTP server is configured" in mailbox
    assert "Welcome to Skileez, Ana Lopez" in mailbox and "local mailbox" in mailbox
    detail = client.get(f"/admin/mail/{email_id}").get_data(as_text=True)
    assert "Your student account is ready" in detail  # the plain-text part
    assert "pending → sending" in detail and "sending → sent" in detail
    html = client.get(f"/admin/mail/{email_id}/html")
    assert html.headers["Content-Security-Policy"].startswith("sandbox")
    assert b"Your student account is ready" in html.data
    filtered = client.get("/admin/mail", query_string={"status": "failed"}).get_data(
        as_text=True)
    assert "No emails match." in filtered


def test_mailbox_shows_an_email_still_to_be_written_as_it_would_read_now(
        app, client, make_user):
    """A batch's email waits unwritten until it is sent: the mailbox names what it is
    about, and its page shows what it would say, marked as not written yet."""
    sign_in_admin(client, make_user)
    ana = make_user(name="Ana Lopez", email="ana@example.com")
    with app.app_context():
        notify_many("welcome", [(db.session.get(User, ana.id), {"role": "student"}),
                                (db.session.get(User, ana.id), {"role": "student"})])
        db.session.commit()
        email_id = db.session.scalar(select(OutboxEmail.id).where(
            OutboxEmail.text_body.is_(None)).order_by(OutboxEmail.id))
    mailbox = client.get("/admin/mail").get_data(as_text=True)
    assert "Welcome (written when it is sent)" in mailbox
    detail = client.get(f"/admin/mail/{email_id}").get_data(as_text=True)
    assert "This email is written when it is sent" in detail
    assert "Welcome to Skileez, Ana Lopez" in detail  # as it would read
    assert "Find a coach" in detail
    html = client.get(f"/admin/mail/{email_id}/html")
    assert html.status_code == 200 and b"Find a coach" in html.data
    with app.app_context():
        assert db.session.get(OutboxEmail, email_id).text_body is None  # shown, not written
        db.session.delete(db.session.scalar(select(Notification).where(
            Notification.id == db.session.get(OutboxEmail, email_id).notification_id)))
        db.session.commit()
    orphan = client.get(f"/admin/mail/{email_id}")
    assert orphan.status_code == 200
    assert "Its notification is gone, so it cannot be written." in orphan.get_data(
        as_text=True)
    assert client.get(f"/admin/mail/{email_id}/html").status_code == 200


def test_overview_counts_people_and_mail(app, client, make_user):
    sign_in_admin(client, make_user)
    make_user(welcome=True)
    make_user("coach")
    page = client.get("/admin/").get_data(as_text=True)
    assert "Students" in page and "Coaches" in page and "jobs run in-process" in page


def test_payments_search_finds_people_numbers_and_whole_stripe_ids(app, client, make_user,
                                                                   coaching, paid_session,
                                                                   clock):
    from datetime import UTC, datetime

    from skileez.payments.models import Payment

    sign_in_admin(client, make_user)
    booked = paid_session(coaching["student"], coaching["contract"],
                          datetime(2026, 3, 11, 9, 0, tzinfo=UTC))
    with app.app_context():
        payment = db.session.scalar(select(Payment).where(Payment.session_id == booked.id))
        payment_id, intent = payment.id, payment.payment_intent_id

    def found(q):
        page = client.get("/admin/payments", query_string={"q": q})
        assert page.status_code == 200
        return f'href="/admin/payments/{payment_id}"' in page.get_data(as_text=True)

    assert found("sam riv") and found("CLARA@") and found(str(payment_id)) and found(intent)
    assert not found("nobody") and not found(str(payment_id + 1))
    assert not found("99999999999999999999")  # past the column's range: no match, no error


def test_a_refused_resolution_on_a_later_page_is_shown_beside_its_dispute(
        make_app, world):  # noqa: F811
    """Disputes are paginated: the form of a dispute on page 2 comes back on page 2, with
    the message beside it, not on page 1 where the dispute is not."""
    world.grow(2)  # two open disputes, newest first
    app = make_app(PER_PAGE=1)
    admin = Client(app)
    admin.login("root@example.com")
    with app.app_context():
        oldest = db.session.scalar(select(Dispute.id).where(Dispute.status == "open")
                                   .order_by(Dispute.created_at, Dispute.id))
    second = admin.get("/admin/disputes?page=2").get_data(as_text=True)
    assert f"Dispute #{oldest}" in second and "Page 2 of 2" in second
    assert f'action="/admin/disputes/{oldest}/resolve?page=2"' in second
    response = admin.post(f"/admin/disputes/{oldest}/resolve?page=2",
                          {"resolution": "partial", "refund_amount": "5000", "note": ""},
                          token_page="/admin/disputes?page=2")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f"Dispute #{oldest}" in page
    assert "A partial refund must be more than nothing and less than the full amount." in page
