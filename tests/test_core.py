"""Core mechanics: money, time zones, the clock, policy, and the transition helper."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from skileez import clock as clock_module
from skileez.auth.models import User
from skileez.core.errors import Conflict
from skileez.core.models import AuditEvent
from skileez.core.money import (
    CURRENCY_EXPONENTS,
    SUPPORTED_CURRENCIES,
    MoneyError,
    exponent,
    format_money,
    input_value,
    parse_amount,
    share,
)
from skileez.core.timezones import format_local, humanize_delta
from skileez.core.transitions import transition
from skileez.extensions import db
from skileez.policy import Policy


@pytest.mark.parametrize(("text", "currency", "minor"), [
    ("49.90", "EUR", 4990), ("49,90", "EUR", 4990), ("49.9", "EUR", 4990),
    ("1,250.50", "USD", 125050), ("0.01", "GBP", 1), ("5000", "JPY", 5000),
    ("5000.0", "JPY", 5000), ("1.250", "KWD", 1250), ("12", "CHF", 1200), (".5", "EUR", 50),
])
def test_parse_amount_is_exact(text, currency, minor):
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(("text", "currency", "message"), [
    ("49.999", "EUR", "at most 2 decimal places"),
    ("0.5", "JPY", "JPY has no minor unit"),
    ("-3", "EUR", "Enter an amount such as 49.90."),
    ("1e5", "EUR", "Enter an amount such as 49.90."),
    ("abc", "EUR", "Enter an amount such as 49.90."),
    ("", "EUR", "Enter an amount."),
    ("NaN", "EUR", "Enter an amount such as 49.90."),
    ("99999999999", "EUR", "That amount is too large."),
    ("10", "XYZ", "XYZ is not a currency Skileez supports."),
])
def test_parse_amount_refuses_what_it_cannot_store_exactly(text, currency, message):
    with pytest.raises(MoneyError, match=message):
        parse_amount(text, currency)


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["EUR", "JPY", "KWD"]))
def test_amounts_round_trip_through_the_form_value(minor, currency):
    assert parse_amount(input_value(minor, currency), currency) == minor


# ISO 4217 minor units, written out once here so that a babel release whose CLDR data
# disagreed (and would change what every stored amount means) fails the suite.
ISO_4217_MINOR_UNITS = {
    "EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "JPY": 0, "CAD": 2, "AUD": 2,
    "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2, "CZK": 2, "KRW": 0, "KWD": 3,
}


def test_currency_exponents_from_babel_agree_with_iso_4217_for_every_supported_currency():
    assert set(SUPPORTED_CURRENCIES) == set(ISO_4217_MINOR_UNITS)
    assert CURRENCY_EXPONENTS == ISO_4217_MINOR_UNITS
    assert {code: exponent(code.lower()) for code in SUPPORTED_CURRENCIES} == ISO_4217_MINOR_UNITS


def test_format_money_uses_the_currency_exponent():
    assert format_money(4990, "EUR") == "€49.90"
    assert format_money(5000, "JPY") == "¥5,000"
    assert format_money(120050, "USD") == "$1,200.50"


def test_share_rounds_half_even_to_whole_minor_units():
    assert share(4990, Decimal("0.10")) == 499
    assert share(25, Decimal("0.10")) == 2  # 2.5 → 2
    assert share(35, Decimal("0.10")) == 4  # 3.5 → 4


def test_times_are_shown_in_the_viewers_zone_with_the_zone_named():
    instant = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert format_local(instant, "Europe/Berlin") == "Wed 01 Jul 2026, 14:00 CEST"
    assert format_local(instant, "America/New_York") == "Wed 01 Jul 2026, 08:00 EDT"
    assert format_local(instant, "Asia/Kolkata") == "Wed 01 Jul 2026, 17:30 IST"
    # Zones without letters of their own are named by their IANA name.
    assert format_local(instant, "America/Sao_Paulo").endswith("09:00 America/Sao_Paulo")


def test_humanize_delta(clock):
    now = clock.now()
    assert humanize_delta(now + timedelta(hours=26, minutes=5)) == "in 26 hours"
    assert humanize_delta(now - timedelta(minutes=3)) == "3 minutes ago"
    assert humanize_delta(now + timedelta(days=3)) == "in 3 days"


def test_clock_freezes_and_advances():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock_module.freeze(start)
    assert clock_module.now() == start
    assert clock_module.advance(timedelta(minutes=5)) == start + timedelta(minutes=5)
    clock_module.unfreeze()
    assert abs(clock_module.now() - datetime.now(UTC)) < timedelta(seconds=5)
    with pytest.raises(ValueError):
        clock_module.freeze(datetime(2026, 1, 1))


def test_policy_defaults_match_the_spec_and_can_be_overridden(make_app):
    policy = Policy()
    assert policy.payment_hold == timedelta(minutes=15)
    assert policy.proposal_expiry == timedelta(days=7)
    assert (policy.reschedule_notice_coach, policy.reschedule_notice_student,
            policy.reschedule_notice_student_late_floor) == (
        timedelta(hours=48), timedelta(hours=24), timedelta(hours=10))
    assert policy.platform_fee == Decimal("0.10")
    assert policy.reminders == (timedelta(hours=24), timedelta(hours=1))
    assert policy.refund_student_cancels_late == Decimal("0")
    app = make_app(POLICY={"platform_fee": "0.15", "payment_hold": 20})
    overridden = app.extensions["skileez_policy"]
    assert overridden.platform_fee == Decimal("0.15")
    assert overridden.payment_hold == timedelta(minutes=20)
    assert overridden.escrow_release_delay == timedelta(hours=24)
    with pytest.raises(KeyError):
        Policy.from_mapping({"no_such_setting": 1})
    assert Policy.from_environment({"SKILEEZ_POLICY_PLATFORM_FEE": "0.2"}) == {
        "platform_fee": "0.2"}


def test_transition_writes_the_audit_event_in_the_same_transaction(app, make_user):
    admin, user = make_user("admin"), make_user()
    with app.app_context():
        target = db.session.get(User, user.id)
        actor = db.session.get(User, admin.id)
        transition(target, "deactivated", actor=actor, reason="spam")
        db.session.rollback()  # the caller changed its mind: nothing happened
        assert db.session.get(User, user.id).status == "active"
        assert not db.session.scalars(select(AuditEvent).where(
            AuditEvent.to_state == "deactivated")).all()

        target = db.session.get(User, user.id)
        transition(target, "deactivated", actor=actor, reason="spam")
        db.session.commit()
        event = db.session.scalars(select(AuditEvent).where(
            AuditEvent.to_state == "deactivated")).one()
        assert (event.actor_id, event.object_type, event.object_id, event.from_state,
                event.reason) == (admin.id, "users", user.id, "active", "spam")
        assert db.session.get(User, user.id).status == "deactivated"


def test_illegal_transition_is_a_conflict_and_changes_nothing(app, make_user):
    user = make_user()
    with app.app_context():
        target = db.session.get(User, user.id)
        with pytest.raises(Conflict, match="cannot become"):
            transition(target, "active")
        with pytest.raises(Conflict):
            transition(target, "archived")
        db.session.commit()
        assert db.session.scalars(select(AuditEvent).where(
            AuditEvent.object_id == user.id, AuditEvent.from_state.is_not(None))).all() == []


@pytest.mark.real_commits  # threads or a second connection see only what is committed
def test_lost_race_is_a_conflict(app, make_user):
    """Two people load the same object; only the first change wins."""
    admin, user = make_user("admin"), make_user()
    with app.app_context():
        stale = db.session.get(User, user.id)
        assert stale.status == "active"
        # Someone else deactivates it through another connection.
        with db.engine.begin() as other:
            other.execute(User.__table__.update().where(User.id == user.id)
                          .values(status="deactivated"))
        with pytest.raises(Conflict, match="changed by someone else"):
            transition(stale, "deactivated", actor=db.session.get(User, admin.id),
                       expected="active")
        db.session.rollback()


@pytest.mark.real_commits  # threads or a second connection see only what is committed
def test_concurrent_transitions_have_exactly_one_winner(app, make_user):
    admin, user = make_user("admin"), make_user()
    results, barrier = [], threading.Barrier(8)

    def attempt():
        with app.app_context():
            target = db.session.get(User, user.id)
            actor = db.session.get(User, admin.id)
            barrier.wait()
            try:
                transition(target, "deactivated", actor=actor, expected="active")
                db.session.commit()
                results.append("won")
            except Conflict:
                db.session.rollback()
                results.append("lost")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["lost"] * 7 + ["won"]
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(
            AuditEvent.object_id == user.id, AuditEvent.to_state == "deactivated")).all()
        assert len(events) == 1
