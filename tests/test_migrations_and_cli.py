"""The migrations build the schema the models describe; the CLI does what README says."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from skileez.auth.models import User
from skileez.coaches.models import AvailabilityRule, Offering
from skileez.contracts.models import Contract, Proposal
from skileez.extensions import db
from skileez.notifications.models import Notification
from skileez.seed import DEMO_ACCOUNTS


@pytest.mark.real_commits  # threads or a second connection see only what is committed
def test_models_and_migrations_agree(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == [], f"run `make migrate m=...`: {differences}"


def test_seed_loads_demo_accounts_once(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["skileez", "seed", "--if-empty"])
    assert first.exit_code == 0, first.output
    assert "Demo data loaded." in first.output
    for email in ("admin@skileez.test", "clara.coach@skileez.test",
                  "sam.student@skileez.test"):
        assert email in first.output
    assert "skileez-demo-2026" in first.output
    second = runner.invoke(args=["skileez", "seed", "--if-empty"])
    assert "already has data" in second.output
    with app.app_context():
        roles = dict(db.session.execute(select(User.role, func.count())
                                        .group_by(User.role)).all())
        assert roles == {"admin": 1, "coach": 4, "student": 4}
        # Demo people were welcomed like real ones (admins are not).
        assert db.session.scalar(select(func.count()).select_from(Notification).where(
            Notification.kind == "welcome")) == sum(a["role"] != "admin" for a in DEMO_ACCOUNTS)
        statuses = dict(db.session.execute(select(Proposal.status, func.count())
                                           .group_by(Proposal.status)).all())
        assert statuses == {"pending": 2, "accepted": 4, "declined": 1, "expired": 1}
        assert db.session.scalar(select(func.count()).select_from(Contract).where(
            Contract.status == "active")) == 4
        currencies = set(db.session.scalars(select(Offering.currency)))
        assert currencies == {"EUR", "USD", "JPY", "GBP"}
        coaches_with_hours = set(db.session.scalars(select(AvailabilityRule.coach_id)))
        assert len(coaches_with_hours) == 4
        # Every session and payment state is visible in the demo.
        from skileez.payments.ledger import check_invariants
        from skileez.payments.models import Payment
        from skileez.sessions.models import Rating, Session

        session_states = set(db.session.scalars(select(Session.status)))
        assert {"pending_payment", "scheduled", "reschedule_requested", "in_progress",
                "completed", "cancelled", "missed"} <= session_states
        assert {True, False} <= set(db.session.scalars(
            select(Session.late).where(Session.status == "cancelled")))
        payment_states = set(db.session.scalars(select(Payment.status)))
        assert {"held", "released", "refunded", "disputed"} <= payment_states
        assert db.session.scalar(select(func.count()).select_from(Rating)) >= 2
        assert check_invariants() == []


def test_demo_accounts_can_sign_in(app, client):
    app.test_cli_runner().invoke(args=["skileez", "seed"])
    client.login("admin@skileez.test", "skileez-demo-2026")
    assert client.get("/admin/users").status_code == 200


def test_sweep_command_prints_each_handler(app):
    result = app.test_cli_runner().invoke(args=["skileez", "sweep"])
    assert result.exit_code == 0
    assert "send_due_mail: 0" in result.output
