"""The one deadline loop every handler uses: batch after batch within a time budget.

A backlog larger than a batch is drained in one sweep, a transaction per batch, while
the sweep's time budget lasts; once it is spent the rest waits for the next sweeps
(nothing is lost, no transaction spans the whole backlog). A row someone else moved a
moment ago is skipped and takes nothing else down with it.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from skileez.contracts.models import Proposal
from skileez.contracts.operations import expire
from skileez.core.deadlines import act_on_each, due
from skileez.core.errors import Conflict
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.models import Notification


def small_batches(app, size: int, *, budget_seconds: int | None = None) -> None:
    policy = app.extensions["skileez_policy"]
    changes = {"sweep_batch": size}
    if budget_seconds is not None:
        changes["sweep_time_budget_seconds"] = budget_seconds
    app.extensions["skileez_policy"] = dataclasses.replace(policy, **changes)


@pytest.fixture
def three_proposals(app, make_user, make_offering, make_proposal):
    coach = make_user("coach")
    offering = make_offering(coach)
    return [make_proposal(make_user(), offering).id for _ in range(3)]


def statuses(app, ids) -> list[str]:
    with app.app_context():
        return [db.session.get(Proposal, proposal_id).status for proposal_id in ids]


def test_a_backlog_larger_than_a_batch_is_drained_in_one_sweep(app, clock, three_proposals):
    small_batches(app, 2)
    clock.advance(timedelta(days=8))
    with app.app_context():
        assert sweep()["expire_proposals"] == 3
        assert sweep()["expire_proposals"] == 0
    assert statuses(app, three_proposals) == ["expired"] * 3


def test_once_the_time_budget_is_spent_the_rest_waits_for_the_next_sweeps(
        app, clock, three_proposals):
    small_batches(app, 2, budget_seconds=0)
    clock.advance(timedelta(days=8))
    with app.app_context():
        assert sweep()["expire_proposals"] == 2
        assert sweep()["expire_proposals"] == 1
        assert sweep()["expire_proposals"] == 0
    assert statuses(app, three_proposals) == ["expired"] * 3


def test_a_row_moved_by_someone_else_is_skipped_and_the_others_stand(
        app, clock, three_proposals):
    second = three_proposals[1]
    clock.advance(timedelta(days=8))
    with app.app_context():
        rows = due(select(Proposal).where(Proposal.status == "pending")
                   .order_by(Proposal.id))
        # The student withdraws the second one between the sweep's read and its turn.
        db.session.execute(update(Proposal).where(Proposal.id == second)
                           .values(status="withdrawn")
                           .execution_options(synchronize_session=False))
        assert act_on_each(rows, expire) == 2
        db.session.commit()
    assert statuses(app, three_proposals) == ["expired", "withdrawn", "expired"]


def test_a_skipped_row_rolls_back_only_what_its_own_action_wrote(
        app, clock, three_proposals):
    second = three_proposals[1]
    clock.advance(timedelta(days=8))

    def expire_unless_second(proposal):
        expire(proposal)  # writes the transition, its audit event and two notifications
        if proposal.id == second:
            raise Conflict("lost the race after writing")

    with app.app_context():
        rows = due(select(Proposal).order_by(Proposal.id))
        assert act_on_each(rows, expire_unless_second) == 2
        db.session.commit()
        notified = db.session.scalars(select(Notification.payload).where(
            Notification.kind == "proposal_expired")).all()
    assert statuses(app, three_proposals) == ["expired", "pending", "expired"]
    assert len(notified) == 4  # two people for each proposal that expired


def test_an_unexpected_error_stops_the_handler_and_the_sweep_rolls_it_back(
        app, clock, three_proposals, monkeypatch):
    import skileez.contracts.deadlines as contract_deadlines

    clock.advance(timedelta(days=8))
    calls = []

    def expire_then_break(proposal):
        calls.append(proposal.id)
        expire(proposal)
        if len(calls) == 2:
            raise RuntimeError("database went away")

    monkeypatch.setattr(contract_deadlines, "expire", expire_then_break)
    with app.app_context(), pytest.raises(Exception, match="database went away"):
        sweep()
    assert len(calls) == 2  # the third was never tried
    assert statuses(app, three_proposals) == ["pending"] * 3  # the first was undone too


def test_reminders_are_counted_against_the_batch(app, clock, coaching, paid_session):
    """The reminder handler reads more sessions than it may remind; the batch caps reminders."""
    small_batches(app, 1, budget_seconds=0)
    thursday = datetime(2026, 3, 12, tzinfo=UTC)
    for hour in (9, 11):  # 10:00 and 12:00 in Berlin, booked two days ahead
        paid_session(coaching["student"], coaching["contract"], thursday.replace(hour=hour))
    clock.advance(datetime(2026, 3, 11, 12, tzinfo=UTC) - clock.now())  # both inside 24 h
    with app.app_context():
        assert sweep()["send_reminders"] == 1
        assert sweep()["send_reminders"] == 1
        assert sweep()["send_reminders"] == 0
        reminded = db.session.scalars(select(Notification.payload).where(
            Notification.kind == "session_reminder")).all()
    assert sorted(payload["starts_at"] for payload in reminded) == [
        "2026-03-12T09:00:00+00:00"] * 2 + ["2026-03-12T11:00:00+00:00"] * 2
    assert {payload["when_text"] for payload in reminded} == {"in 21 hours", "in 23 hours"}
