"""Proposals and contracts: sending, answering, expiring, and who may see what."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from skileez.auth.models import User
from skileez.coaches.models import Offering
from skileez.contracts.models import Contract, Proposal
from skileez.contracts.operations import accept
from skileez.core.errors import Conflict
from skileez.core.models import AuditEvent
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.models import Notification, OutboxEmail


def count(app, model, *where):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def people(make_user, make_offering):
    coach = make_user("coach", name="Clara Schmidt", email="clara@example.com")
    student = make_user(name="Sam Rivera", email="sam@example.com")
    offering = make_offering(coach, title="Conversation practice", duration=45, price=3900)
    return {"coach": coach, "student": student, "offering": offering}


def proposal_status(app, proposal_id):
    with app.app_context():
        return db.session.get(Proposal, proposal_id).status


def test_student_proposes_and_the_coach_is_told(app, client, people):
    client.login("sam@example.com")
    url = f"/contracts/propose/{people['offering'].id}"
    page = client.get(url).get_data(as_text=True)
    assert "Conversation practice with Clara Schmidt" in page and "7 days" in page
    response = client.post(url, {"sessions_count": "10", "message": "Meetings in German!"},
                           token_page=url)
    assert response.status_code == 303
    with app.app_context():
        proposal = db.session.scalar(select(Proposal))
        assert (proposal.sessions_count, proposal.status, proposal.message) == (
            10, "pending", "Meetings in German!")
        assert proposal.expires_at - proposal.created_at == timedelta(days=7)
        note = db.session.scalar(select(Notification).where(
            Notification.recipient_id == people["coach"].id))
        assert note.kind == "proposal_received"
        email = db.session.scalar(select(OutboxEmail).where(
            OutboxEmail.to_address == "clara@example.com"))
        assert email.subject == "New proposal from Sam Rivera: 10 × Conversation practice"
        assert "Meetings in German!" in email.text_body
        assert f"http://skileez.test/contracts/proposals/{proposal.id}" in email.text_body
    client.logout()
    client.login("clara@example.com")
    nav = client.get("/dashboard").get_data(as_text=True)
    assert 'data-pending-proposals="1"' in nav


@pytest.mark.parametrize(("data", "message"), [
    ({"sessions_count": "0"}, "Choose between 1 and 50 sessions."),
    ({"sessions_count": "51"}, "Choose between 1 and 50 sessions."),
    ({"sessions_count": "five"}, "Not a valid integer value"),
    ({"sessions_count": ""}, "Enter how many sessions you want"),
    ({"sessions_count": "5", "message": "x" * 1001}, "under 1000 characters"),
])
def test_bad_proposal_input_is_explained_and_not_saved(app, client, people, data, message):
    client.login("sam@example.com")
    url = f"/contracts/propose/{people['offering'].id}"
    response = client.post(url, {"message": "", **data}, token_page=url)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert count(app, Proposal) == 0


def test_one_pending_proposal_per_offering(app, client, people, make_proposal):
    make_proposal(people["student"], people["offering"])
    client.login("sam@example.com")
    url = f"/contracts/propose/{people['offering'].id}"
    response = client.post(url, {"sessions_count": "3", "message": ""}, token_page=url)
    assert response.status_code == 409
    assert "You already have a pending proposal for this offering" in response.get_data(
        as_text=True)
    assert count(app, Proposal) == 1


def test_coaches_and_admins_cannot_propose(client, people, make_user):
    make_user("admin", email="root@example.com")
    for email in ("clara@example.com", "root@example.com"):
        client.login(email)
        url = f"/contracts/propose/{people['offering'].id}"
        assert client.get(url).status_code == 403
        assert client.post(url, {"sessions_count": "3"}, token_page="/dashboard") \
            .status_code == 403
        client.logout()


def test_nobody_can_propose_to_an_inactive_offering(app, client, people):
    with app.app_context():
        db.session.get(Offering, people["offering"].id).status = "inactive"
        db.session.commit()
    client.login("sam@example.com")
    url = f"/contracts/propose/{people['offering'].id}"
    response = client.post(url, {"sessions_count": "3", "message": ""}, token_page="/dashboard")
    assert response.status_code == 409
    assert "This offering is not available any more" in response.get_data(as_text=True)
    assert count(app, Proposal) == 0
    page = client.get(url)  # the form page itself says so, before anything is typed
    assert page.status_code == 409
    assert "This offering is not available any more" in page.get_data(as_text=True)


def test_accept_creates_a_contract_with_a_snapshot(app, client, people, make_proposal):
    proposal = make_proposal(people["student"], people["offering"], sessions=8)
    client.login("clara@example.com")
    page = client.get(f"/contracts/proposals/{proposal.id}").get_data(as_text=True)
    assert "Accept and create the contract" in page
    response = client.post(f"/contracts/proposals/{proposal.id}/accept",
                           {"response_message": "Welcome aboard"},
                           token_page=f"/contracts/proposals/{proposal.id}")
    assert response.status_code == 303
    with app.app_context():
        contract = db.session.scalar(select(Contract))
        assert (contract.title, contract.duration_minutes, contract.price_minor,
                contract.currency, contract.total_sessions, contract.status) == (
            "Conversation practice", 45, 3900, "EUR", 8, "active")
        # Later edits of the offering do not change the contract.
        offering = db.session.get(Offering, people["offering"].id)
        offering.price_minor, offering.title, offering.duration_minutes = 9900, "New", 90
        db.session.commit()
        assert db.session.get(Contract, contract.id).price_minor == 3900
        assert db.session.scalar(select(Notification.kind).where(
            Notification.recipient_id == people["student"].id)) == "proposal_accepted"
        contract_id = contract.id
    assert response.headers["Location"].endswith(f"/contracts/{contract_id}")
    for email in ("clara@example.com", "sam@example.com"):
        client.logout()
        client.login(email)
        page = client.get(f"/contracts/{contract_id}").get_data(as_text=True)
        assert "0 of 8</strong> completed" in page and "8 remaining" in page
        assert "€39.00" in page and "Conversation practice" in page


@pytest.mark.parametrize("first", ["accepted", "declined", "withdrawn", "expired"])
def test_answering_a_settled_proposal_is_409_and_changes_nothing(app, client, people,
                                                                 make_proposal, first):
    proposal = make_proposal(people["student"], people["offering"])
    with app.app_context():
        db.session.get(Proposal, proposal.id).status = first
        db.session.commit()
    client.login("clara@example.com")
    for action in ("accept", "decline"):
        response = client.post(f"/contracts/proposals/{proposal.id}/{action}",
                               {"response_message": ""}, token_page="/dashboard")
        assert response.status_code == 409
        assert f"This proposal was already {first}" in response.get_data(as_text=True)
    assert proposal_status(app, proposal.id) == first
    assert count(app, Contract) == 0


def test_students_cannot_accept_and_coaches_cannot_withdraw(app, client, people,
                                                            make_proposal):
    proposal = make_proposal(people["student"], people["offering"])
    client.login("sam@example.com")
    assert client.post(f"/contracts/proposals/{proposal.id}/accept",
                       token_page="/dashboard").status_code == 403
    client.logout()
    client.login("clara@example.com")
    assert client.post(f"/contracts/proposals/{proposal.id}/withdraw",
                       token_page="/dashboard").status_code == 403
    assert proposal_status(app, proposal.id) == "pending"


def test_decline_with_a_note_and_withdraw(app, client, people, make_proposal, make_offering):
    proposal = make_proposal(people["student"], people["offering"])
    client.login("clara@example.com")
    response = client.post(f"/contracts/proposals/{proposal.id}/decline",
                           {"response_message": "Fully booked until May."},
                           token_page="/dashboard")
    assert response.status_code == 303
    client.logout()
    client.login("sam@example.com")
    page = client.get(f"/contracts/proposals/{proposal.id}").get_data(as_text=True)
    assert "Fully booked until May." in page and "send a new proposal" in page

    other = make_offering(people["coach"], title="Exam prep")
    second = make_proposal(people["student"], other)
    response = client.post(f"/contracts/proposals/{second.id}/withdraw", token_page="/dashboard")
    assert response.status_code == 303
    assert proposal_status(app, second.id) == "withdrawn"
    # Withdrawn: a new proposal for the same offering is allowed again.
    make_proposal(people["student"], other)


def test_strangers_get_404_for_proposals_and_contracts(app, client, people, make_user,
                                                      make_contract, make_proposal):
    contract = make_contract(people["student"], people["offering"])
    proposal = make_proposal(people["student"], people["offering"])
    make_user(email="eve@example.com")
    make_user("coach", email="mallory@example.com")
    make_user("admin", email="root@example.com")
    for email in ("eve@example.com", "mallory@example.com", "root@example.com"):
        client.login(email)
        assert client.get(f"/contracts/{contract.id}").status_code == 404
        assert client.get(f"/contracts/proposals/{proposal.id}").status_code == 404
        assert client.post(f"/contracts/proposals/{proposal.id}/accept",
                           token_page="/dashboard").status_code == 404
        assert client.post(f"/contracts/proposals/{proposal.id}/withdraw",
                           token_page="/dashboard").status_code == 404
        assert "Conversation practice" not in client.get("/contracts/").get_data(as_text=True)
        client.logout()
    assert proposal_status(app, proposal.id) == "pending"


def test_my_contracts_filters_by_status(app, client, people, make_contract, make_offering):
    first = make_contract(people["student"], people["offering"])
    make_contract(people["student"], make_offering(people["coach"], title="Exam prep"))
    with app.app_context():
        db.session.get(Contract, first.id).status = "completed"
        db.session.commit()
    client.login("sam@example.com")
    everything = client.get("/contracts/").get_data(as_text=True)
    assert "Conversation practice" in everything and "Exam prep" in everything
    active = client.get("/contracts/?status=active").get_data(as_text=True)
    assert "Exam prep" in active and "Conversation practice" not in active
    completed = client.get("/contracts/?status=completed").get_data(as_text=True)
    assert "Conversation practice" in completed and "Exam prep" not in completed


def test_pending_proposal_expires_after_exactly_seven_days(app, people, make_proposal, clock):
    proposal = make_proposal(people["student"], people["offering"])
    clock.advance(timedelta(days=7) - timedelta(seconds=1))
    with app.app_context():
        assert sweep()["expire_proposals"] == 0
    assert proposal_status(app, proposal.id) == "pending"
    clock.advance(timedelta(seconds=2))
    with app.app_context():
        assert sweep()["expire_proposals"] == 1
        assert sweep()["expire_proposals"] == 0  # a second sweep finds nothing more
    assert proposal_status(app, proposal.id) == "expired"
    with app.app_context():
        kinds = db.session.scalars(select(Notification.recipient_id).where(
            Notification.kind == "proposal_expired")).all()
        assert sorted(kinds) == sorted([people["coach"].id, people["student"].id])
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.object_type == "proposals", AuditEvent.to_state == "expired"))
        assert event.actor_id is None and event.from_state == "pending"


@pytest.mark.real_commits  # threads or a second connection see only what is committed
def test_concurrent_accepts_make_exactly_one_contract(app, people, make_proposal):
    proposal = make_proposal(people["student"], people["offering"])
    results, barrier = [], threading.Barrier(6)

    def attempt():
        with app.app_context():
            item = db.session.get(Proposal, proposal.id)
            coach = db.session.get(User, people["coach"].id)
            item.offering  # noqa: B018 - load before the race
            barrier.wait()
            try:
                accept(item, coach)
                db.session.commit()
                results.append("won")
            except Conflict:
                db.session.rollback()
                results.append("lost")

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["lost"] * 5 + ["won"]
    assert count(app, Contract) == 1
    assert count(app, Notification, Notification.kind == "proposal_accepted") == 1
