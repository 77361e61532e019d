"""The one place a request is split around a call to the provider (payments.attempts):
nobody waits on Stripe behind our locks, an answer is kept, a failure keeps nothing of the
block. These tests commit for real (the boundary is what they test)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from skileez.auth.models import User
from skileez.extensions import db
from skileez.payments.attempts import provider_call
from skileez.payments.gateway import CardDeclined, GatewayError


def _name(app, user_id):
    with app.app_context():
        return db.session.get(User, user_id).name


def _rename_elsewhere(user_id: int, name: str) -> None:
    """Another request writing the same row on its own connection, unwilling to wait long."""
    with db.engine.connect() as other:
        if db.engine.dialect.name == "sqlite":
            other.exec_driver_sql("PRAGMA busy_timeout=1000")
        else:
            other.exec_driver_sql("SET lock_timeout = '1s'")
        other.execute(text("UPDATE users SET name = :name WHERE id = :id"),
                      {"name": name, "id": user_id})
        other.commit()


@pytest.mark.real_commits  # threads or a second connection see only what is committed
def test_nothing_we_wrote_is_locked_while_the_provider_answers(app, make_user):
    user_id = make_user(name="Before").id
    with app.app_context():
        db.session.get(User, user_id).name = "Written by the request"
        db.session.flush()  # holds SQLite's write lock, or the row's lock on PostgreSQL
        with provider_call():
            _rename_elsewhere(user_id, "Another request")  # would time out behind our lock
    assert _name(app, user_id) == "Another request"


def test_what_the_request_wrote_before_asking_survives_a_failed_call(app, make_user):
    user_id = make_user(name="Before").id
    with app.app_context(), pytest.raises(GatewayError):
        db.session.get(User, user_id).name = "Before the call"
        with provider_call():
            db.session.get(User, user_id).name = "Written by the block"
            raise GatewayError("Stripe did not answer", retryable=True)
    assert _name(app, user_id) == "Before the call"


def test_an_answer_that_is_an_error_is_kept_and_still_raised(app, make_user):
    user_id = make_user(name="Before").id
    with app.app_context(), pytest.raises(CardDeclined), provider_call(keep=(CardDeclined,)):
        db.session.get(User, user_id).name = "Decline recorded"
        raise CardDeclined("Your card was declined.")
    assert _name(app, user_id) == "Decline recorded"
