"""The session page's status poll: "not modified" from one statement while nothing changed,
the new fragment as soon as anything it shows did, and nothing for anyone else.

Both participants' open pages ask for ``/sessions/<id>/live`` every 10 s. The answer
carries a validator (an ETag); the browser sends it back (``If-None-Match``) and keeps its
copy on a 304. Every test here polls the way the page does: the URL the page draws into
``hx-get``, htmx's header, and the validator of the answer before.
"""

from __future__ import annotations

import html
import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select

from skileez.auth.models import User
from skileez.core.timezones import humanize_changes_at, humanize_delta
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.sessions import lifecycle
from skileez.sessions.models import Session
from tests.conftest import Client

# The clock fixture freezes at Tue 10 Mar 2026 09:00 UTC; the session is on Thursday at
# 09:00 UTC (10:00 CET for Clara in Berlin, 05:00 EDT for Sam in New York).
THURSDAY = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
HTMX = {"HX-Request": "true"}
NEW_START = "2026-03-13T09:00:00+00:00"
TEST_SAVEPOINTS = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
FORM_TOKEN = re.compile(r'(name="csrf_token" value=")[^"]+"|(value=")[^"]+(" name="csrf_token")')


@pytest.fixture
def session(app, coaching, clock, paid_session):
    return paid_session(coaching["student"], coaching["contract"], THURSDAY)


@pytest.fixture
def student(app, coaching):
    client = Client(app)
    client.login("sam@example.com")
    return client


@pytest.fixture
def coach(app, coaching):
    client = Client(app)
    client.login("clara@example.com")
    return client


def poll_url(client, session_id: int) -> str:
    """The URL the open session page polls, as the page itself draws it."""
    page = client.get(f"/sessions/{session_id}").get_data(as_text=True)
    return html.unescape(re.search(r'hx-get="([^"]*/live[^"]*)"', page).group(1))


def poll(client, url: str, validator: str | None = None):
    headers = dict(HTMX)
    if validator:
        headers["If-None-Match"] = validator
    return client.get(url, headers=headers)


@contextmanager
def statements(app):
    """Every SQL statement the app sends while the block runs, but for the savepoints
    that join each request to the test's own transaction (a server has none)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        if not statement.startswith(TEST_SAVEPOINTS):
            seen.append(" ".join(statement.split()))

    with app.app_context():
        engine = getattr(db.engine, "engine", db.engine)  # a test's shared connection too
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def without_form_tokens(body: bytes) -> str:
    """A fragment with its form tokens blanked: each answer signs its own (still valid)."""
    return FORM_TOKEN.sub("TOKEN", body.decode())


def stored(app, session_id: int) -> Session:
    with app.app_context():
        found = db.session.get(Session, session_id)
        db.session.expunge(found)
        return found


# --- one statement while nothing changes ---------------------------------------------

@pytest.mark.parametrize("who", ["student", "coach"])
def test_an_unchanged_poll_is_304_from_one_statement(app, session, who, request):
    person = request.getfixturevalue(who)
    url = poll_url(person, session.id)
    with statements(app) as drawn:
        first = poll(person, url)
    assert first.status_code == 200
    assert 'data-status="scheduled"' in first.get_data(as_text=True)
    validator = first.headers["ETag"]
    assert validator.startswith('W/"')
    assert first.headers["Cache-Control"] == "private, no-cache"
    # The validator's query, the signed-in person, the session with its people and requests.
    assert len(drawn) == 3, drawn

    with statements(app) as asked:
        again = poll(person, url, validator)
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == validator
    assert again.headers["Cache-Control"] == "private, no-cache"
    assert len(asked) == 1, asked
    assert "sessions" in asked[0] and "users" in asked[0]


def test_a_304_is_answered_again_and_again_while_nothing_changes(student, session, clock):
    clock.advance(timedelta(minutes=1, seconds=30))  # off the 48-hour line of the start
    url = poll_url(student, session.id)
    validator = poll(student, url).headers["ETag"]
    for _ in range(3):
        clock.advance(timedelta(seconds=10))  # "Starts in 47 hours" the whole time
        assert poll(student, url, validator).status_code == 304


# --- the new fragment after each kind of change ------------------------------------

def _post(client, path: str, data: dict | None = None, *, page: str):
    response = client.post(path, data or {}, token_page=page)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]


def _confirm(app, student, coach, session, clock):
    _post(coach, f"/sessions/{session.id}/confirm-attendance", page=f"/sessions/{session.id}")
    return "confirmed by the coach"


def _reschedule_round_trip(app, student, coach, session, clock):
    """Asked and approved between two polls: the status is back where it was."""
    url = f"/sessions/{session.id}"
    _post(student, f"{url}/reschedule", {"new_start": NEW_START,
                                         "reason": "Dentist appointment"},
          page=f"{url}/reschedule")
    request_id = re.search(r"/sessions/reschedule/(\d+)/approve",
                           coach.get(url).get_data(as_text=True)).group(1)
    _post(coach, f"/sessions/reschedule/{request_id}/approve", {"note": ""}, page=url)
    return "Fri 13 Mar 2026, 05:00 EDT"


def _coach_moves_to_tokyo(app, student, coach, session, clock):
    from skileez.auth.operations import update_profile

    _in_app_user(app, session.coach_id, lambda user: update_profile(
        user, name="Clara Schmidt", timezone="Asia/Tokyo"))
    return "18:00 JST for Clara"


def _student_moves_to_lisbon(app, student, coach, session, clock):
    from skileez.auth.operations import update_profile

    _in_app_user(app, session.student_id, lambda user: update_profile(
        user, name="Sam Rivera", timezone="Europe/Lisbon"))
    return "Thu 12 Mar 2026, 09:00 WET"


def _in_app_user(app, user_id: int, change) -> None:
    from skileez.core.unit_of_work import transaction

    with app.app_context(), transaction():
        change(db.session.get(User, user_id))


SAME_STATUS_CHANGES = {
    "the coach confirms": _confirm,
    "a reschedule is asked and approved": _reschedule_round_trip,
    "the other person's time zone": _coach_moves_to_tokyo,
    "the viewer's own time zone": _student_moves_to_lisbon,
}


@pytest.mark.parametrize("change", SAME_STATUS_CHANGES)
def test_the_student_sees_a_change_that_kept_the_status_on_the_next_poll(
        app, student, coach, session, clock, change):
    url = poll_url(student, session.id)
    before = poll(student, url)
    assert poll(student, url, before.headers["ETag"]).status_code == 304
    expected = SAME_STATUS_CHANGES[change](app, student, coach, session, clock)
    assert expected not in before.get_data(as_text=True)

    after = poll(student, url, before.headers["ETag"])
    assert after.status_code == 200
    assert 'data-status="scheduled"' in after.get_data(as_text=True)
    assert expected in after.get_data(as_text=True)
    assert after.headers["ETag"] != before.headers["ETag"]
    assert poll(student, url, after.headers["ETag"]).status_code == 304


def test_attendance_reaches_the_other_page_while_in_progress(student, coach, session,
                                                              clock):
    url = f"/sessions/{session.id}"
    clock.freeze(THURSDAY - timedelta(minutes=4))
    _post(student, f"{url}/start", page=url)
    polled = poll_url(student, session.id)
    before = poll(student, polled)
    assert "Coach: not joined" in before.get_data(as_text=True)
    assert poll(student, polled, before.headers["ETag"]).status_code == 304
    joined = coach.post(f"{url}/join", token_page=url)
    assert joined.status_code == 303
    after = poll(student, polled, before.headers["ETag"])
    assert after.status_code == 200
    assert re.search(r"Coach: joined \d\d:\d\d", after.get_data(as_text=True))


def test_a_rating_takes_the_button_off_the_rater_own_fragment(student, coach, session,
                                                               clock):
    url = f"/sessions/{session.id}"
    clock.freeze(THURSDAY - timedelta(minutes=4))
    _post(coach, f"{url}/start", page=url)
    clock.advance(timedelta(minutes=50))
    _post(coach, f"{url}/complete", {"notes": "Drills."}, page=f"{url}/complete")
    polled = f"{url}/live?seen=completed"
    before = poll(student, polled)
    assert 'data-testid="rate"' in before.get_data(as_text=True)
    assert poll(student, polled, before.headers["ETag"]).status_code == 304
    _post(student, f"{url}/rate", {"stars": "5", "feedback": "", "would_recommend": "y",
                                   "tags": ""}, page=f"{url}/rate")
    after = poll(student, polled, before.headers["ETag"])
    assert after.status_code == 200
    assert 'data-testid="rate"' not in after.get_data(as_text=True)


def _start(app, student, coach, session, clock):
    clock.freeze(THURSDAY - timedelta(minutes=4))
    _post(coach, f"/sessions/{session.id}/start", page=f"/sessions/{session.id}")
    return "in_progress"


def _cancel(app, student, coach, session, clock):
    url = f"/sessions/{session.id}/cancel"
    _post(coach, url, {"reason": "Ill"}, page=url)
    return "cancelled"


def _ask_to_reschedule(app, student, coach, session, clock):
    url = f"/sessions/{session.id}/reschedule"
    _post(coach, url, {"new_start": NEW_START, "reason": "Conference trip"}, page=url)
    return "reschedule_requested"


def _report_no_show(app, student, coach, session, clock):
    clock.freeze(THURSDAY + timedelta(minutes=15))
    url = f"/sessions/{session.id}/missed"
    _post(coach, url, {"missed_by": "student", "reason": "No show"}, page=url)
    return "missed"


def _complete_after_the_start(app, student, coach, session, clock):
    clock.freeze(THURSDAY + timedelta(minutes=30))
    url = f"/sessions/{session.id}/complete"
    _post(coach, url, {"notes": ""}, page=url)
    return "completed"


def _left_unattended(app, student, coach, session, clock):
    clock.freeze(session.ends_at + timedelta(minutes=30))
    with app.app_context():
        assert sweep()["auto_missed"] == 1
    return "missed"


STATUS_CHANGES = {
    "the coach starts it": _start,
    "the coach cancels it": _cancel,
    "the coach asks to reschedule": _ask_to_reschedule,
    "the coach reports a no-show": _report_no_show,
    "the coach completes it": _complete_after_the_start,
    "nobody starts it (the sweep)": _left_unattended,
}


@pytest.mark.parametrize("change", STATUS_CHANGES)
def test_the_student_sees_a_new_status_on_the_next_poll(app, student, coach, session, clock,
                                                        change):
    url = poll_url(student, session.id)
    before = poll(student, url)
    status = STATUS_CHANGES[change](app, student, coach, session, clock)
    after = poll(student, url, before.headers["ETag"])
    assert after.status_code == 200
    assert f'data-status="{status}"' in after.get_data(as_text=True)
    # The catch-up answer carries the rest of the page out of band, once, with no validator.
    assert 'hx-swap-oob' in after.get_data(as_text=True)
    assert "ETag" not in after.headers
    assert after.headers["Cache-Control"] == "no-store"


def test_an_unpaid_booking_that_runs_out_reaches_the_open_page(app, coaching, clock,
                                                               book_session, student):
    held = book_session(coaching["student"], coaching["contract"], THURSDAY)
    url = poll_url(student, held.id)
    before = poll(student, url)
    assert "Pay now" in before.get_data(as_text=True)
    clock.freeze(held.hold_expires_at)
    with app.app_context():
        assert sweep()["expire_payment_holds"] == 1
    after = poll(student, url, before.headers["ETag"])
    assert after.status_code == 200
    assert 'data-status="expired"' in after.get_data(as_text=True)


def test_every_write_to_a_session_moves_its_version(app, student, coach, session, clock):
    """Whatever the session page shows is written by one of these; each adds one."""
    url = f"/sessions/{session.id}"
    versions = [stored(app, session.id).version]

    def moved():
        versions.append(stored(app, session.id).version)
        assert versions[-1] == versions[-2] + 1, versions

    _post(coach, f"{url}/confirm-attendance", page=url)
    moved()
    _ask_to_reschedule(app, student, coach, session, clock)
    moved()
    clock.advance(timedelta(hours=24))  # its answer deadline: the sweep moves it
    with app.app_context():
        assert sweep()["decide_reschedule_requests"] == 1
    moved()
    clock.freeze(stored(app, session.id).starts_at - timedelta(minutes=4))
    _post(student, f"{url}/start", page=url)
    moved()
    assert coach.post(f"{url}/join", token_page=url).status_code == 303
    moved()
    clock.advance(timedelta(minutes=20))
    _post(student, f"{url}/complete", {"notes": ""}, page=f"{url}/complete")
    moved()
    _post(coach, f"{url}/notes", {"notes": "Homework: page 12."}, page=url)
    moved()
    _post(student, f"{url}/rate", {"stars": "4", "feedback": "", "tags": ""},
          page=f"{url}/rate")
    moved()


# --- time: the validator moves when the words do -----------------------------------

def test_a_countdown_unit_passing_is_a_new_fragment(student, session, clock):
    # Exactly 48 hours ahead it says "in 2 days"; a microsecond later, "in 47 hours".
    url = poll_url(student, session.id)
    before = poll(student, url)
    assert "Starts in 2 days" in before.get_data(as_text=True)
    clock.advance(timedelta(microseconds=1))
    after = poll(student, url, before.headers["ETag"])
    assert after.status_code == 200
    assert "Starts in 47 hours" in after.get_data(as_text=True)


def test_the_start_window_opening_is_a_new_fragment(student, session, clock):
    clock.freeze(THURSDAY - timedelta(minutes=5, microseconds=1))
    url = poll_url(student, session.id)
    before = poll(student, url)
    assert "You can start from" in before.get_data(as_text=True)
    clock.advance(timedelta(microseconds=1))
    after = poll(student, url, before.headers["ETag"])
    assert after.status_code == 200
    assert "Start window open until" in after.get_data(as_text=True)


def test_a_clock_set_back_is_a_new_fragment(student, session, clock):
    """A validator remembered between polls holds only from the instant it was made
    onwards: set the clock back over a rule's instant and the older words come back."""
    clock.freeze(THURSDAY - timedelta(minutes=5))
    url = poll_url(student, session.id)
    later = poll(student, url)
    assert "Start window open until" in later.get_data(as_text=True)
    assert poll(student, url, later.headers["ETag"]).status_code == 304
    clock.freeze(THURSDAY - timedelta(minutes=5, microseconds=1))
    earlier = poll(student, url, later.headers["ETag"])
    assert earlier.status_code == 200
    assert "You can start from" in earlier.get_data(as_text=True)


def test_elapsed_minutes_tick_from_the_moment_it_started(student, session, clock):
    # Started on a whole minute, so its minutes tick with the other words' minutes.
    clock.freeze(THURSDAY - timedelta(minutes=2))
    _post(student, f"/sessions/{session.id}/start", page=f"/sessions/{session.id}")
    url = poll_url(student, session.id)
    clock.advance(timedelta(microseconds=1))
    before = poll(student, url)
    assert "0 min elapsed" in before.get_data(as_text=True)
    clock.advance(timedelta(seconds=59))
    assert poll(student, url, before.headers["ETag"]).status_code == 304
    clock.advance(timedelta(seconds=1))
    after = poll(student, url, before.headers["ETag"])
    assert after.status_code == 200 and "1 min elapsed" in after.get_data(as_text=True)


def _sample_times(session: Session) -> tuple[list[datetime], list[datetime]]:
    """Short runs of polls spread over the two days before the start and the hours after
    it (denser around the start, where minutes count); and each rule's instant with the
    instants on either side of it."""
    starts = session.starts_at
    runs = [(starts - timedelta(hours=48) + k * timedelta(hours=3), timedelta(seconds=20))
            for k in range(18)]
    runs += [(starts + offset, timedelta(seconds=8)) for offset in (
        timedelta(minutes=-10), timedelta(minutes=-2), timedelta(minutes=3),
        timedelta(minutes=20), timedelta(minutes=47))]
    polls = [begin + n * step for begin, step in runs for n in range(6)]
    edges = [moment + shift for moment in lifecycle.moments(session)
             for shift in (-timedelta(microseconds=1), timedelta(0),
                           timedelta(microseconds=1))]
    return polls, edges


@pytest.mark.parametrize("state", ["scheduled", "in_progress", "pending_payment",
                                   "reschedule_requested"])
def test_one_validator_never_stands_for_two_fragments(app, coaching, clock, book_session,
                                                      paid_session, student, coach, state):
    """Drawn at many instants, the same validator always comes with the same fragment,
    and the validator stays put for most of them (or 304 would never be answered)."""
    if state == "pending_payment":
        polled = book_session(coaching["student"], coaching["contract"], THURSDAY)
    else:
        polled = paid_session(coaching["student"], coaching["contract"], THURSDAY)
    if state == "in_progress":
        clock.freeze(THURSDAY - timedelta(minutes=3, seconds=17))
        _post(coach, f"/sessions/{polled.id}/start", page=f"/sessions/{polled.id}")
    if state == "reschedule_requested":
        url = f"/sessions/{polled.id}/reschedule"
        _post(student, url, {"new_start": NEW_START, "reason": "Dentist appointment"},
              page=url)
    polled = stored(app, polled.id)
    people = [student] if state == "reschedule_requested" else [student, coach]
    with app.app_context():
        polls, edges = _sample_times(polled)
    polls = [moment for moment in polls if moment >= clock.now()]
    edges = [moment for moment in edges if moment >= clock.now()]
    for person in people:
        fragments: dict[str, str] = {}
        polled_validators = set()
        for moment in sorted({*polls, *edges}):
            clock.freeze(moment)
            answer = poll(person, f"/sessions/{polled.id}/live?seen={state}")
            body = without_form_tokens(answer.data)
            assert fragments.setdefault(answer.headers["ETag"], body) == body, moment
            if moment in polls:
                polled_validators.add(answer.headers["ETag"])
        assert len(polled_validators) < len(polls) / 2


def test_humanized_distances_hold_until_the_instant_given_and_change_there():
    target = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    offsets = [timedelta(days=9, hours=3), timedelta(days=2), timedelta(hours=47, minutes=59),
               timedelta(hours=3, seconds=1), timedelta(hours=1), timedelta(minutes=59),
               timedelta(minutes=1, microseconds=1), timedelta(seconds=30),
               timedelta(seconds=1), timedelta(microseconds=400), timedelta(0)]
    for offset in offsets + [-offset for offset in offsets]:
        now = target - offset
        until = humanize_changes_at(target, now)
        assert until > now
        words = humanize_delta(target, now)
        for between in (now + (until - now) / 3, until - timedelta(microseconds=1)):
            assert humanize_delta(target, between) == words, (offset, between)
        assert humanize_delta(target, until) != words, offset


# --- who is answered ----------------------------------------------------------------

def test_someone_else_gets_404_whatever_validator_they_send(app, student, session,
                                                           make_user):
    url = poll_url(student, session.id)
    validator = poll(student, url).headers["ETag"]
    make_user(email="stranger@example.com")
    stranger = Client(app)
    stranger.login("stranger@example.com")
    answer = poll(stranger, url, validator)
    nothing = poll(stranger, f"/sessions/{session.id + 1000}/live?seen=scheduled", validator)
    assert answer.status_code == nothing.status_code == 404
    assert answer.data == nothing.data
    assert "ETag" not in answer.headers


@pytest.mark.parametrize("htmx", [True, False])
def test_signed_out_polls_are_sent_to_sign_in_as_before(app, student, session, htmx):
    url = poll_url(student, session.id)
    validator = poll(student, url).headers["ETag"]
    signed_out = Client(app)
    headers = {"If-None-Match": validator, **(HTMX if htmx else {})}
    answer = signed_out.get(url, headers=headers)
    if htmx:
        assert answer.status_code == 401
        assert answer.headers["HX-Redirect"].startswith("/login?next=")
    else:
        assert answer.status_code == 302
        assert "/login?next=" in answer.headers["Location"]


def test_a_deactivated_account_is_signed_out_not_told_not_modified(app, student, session,
                                                                    make_user):
    from skileez.auth.operations import set_active

    url = poll_url(student, session.id)
    validator = poll(student, url).headers["ETag"]
    admin = make_user("admin", email="admin@example.com")
    with app.app_context():
        from skileez.core.unit_of_work import transaction

        with transaction():
            set_active(db.session.get(User, session.student_id), False,
                       actor=db.session.get(User, admin.id))
    assert poll(student, url, validator).status_code == 401


def test_the_cookie_in_another_browser_is_not_told_not_modified(app, student, session):
    """Sign-in is bound to the browser it was made in (strong session protection)."""
    url = poll_url(student, session.id)
    validator = poll(student, url).headers["ETag"]
    answer = student.get(url, headers={**HTMX, "If-None-Match": validator,
                                       "User-Agent": "Another browser/1.0"})
    assert answer.status_code == 401


def test_signing_in_again_draws_the_fragment_with_new_form_tokens(app, student, session):
    url = poll_url(student, session.id)
    before = poll(student, url)
    student.logout()
    student.login("sam@example.com")
    after = poll(student, url, before.headers["ETag"])
    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]


def test_whoever_answers_a_reschedule_request_gets_fresh_open_times_each_poll(
        app, student, coach, session):
    _ask_to_reschedule(app, student, coach, session, None)
    answering = poll(student, poll_url(student, session.id))
    assert "Approve the new time" in answering.get_data(as_text=True)
    assert "ETag" not in answering.headers
    assert answering.headers["Cache-Control"] == "no-store"
    asking = poll(coach, poll_url(coach, session.id))
    assert "Withdraw my request" in asking.get_data(as_text=True)
    assert poll(coach, poll_url(coach, session.id), asking.headers["ETag"]).status_code == 304


def test_the_version_is_read_by_its_primary_key(app, session):
    """The one statement of a 304 finds its rows by primary key and the unique sign-in
    token, whatever the size of the tables (checked on the plan where it can be)."""
    with app.app_context():
        if db.session.get_bind().dialect.name != "postgresql":
            pytest.skip("plans are checked on PostgreSQL")
        from skileez.sessions.live import _STATE

        compiled = _STATE.compile(dialect=db.session.get_bind().dialect)
        token = db.session.scalar(select(User.session_token).where(
            User.id == session.student_id))
        connection = db.session.connection()
        # A few test rows are read fastest by a scan; forbidding scans shows whether an
        # index can serve the query at all (without one, the plan scans anyway).
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = "\n".join(connection.exec_driver_sql(
            f"EXPLAIN {compiled.string}",
            compiled.construct_params({"session_id": session.id, "token": token}))
            .scalars())
        connection.exec_driver_sql("RESET enable_seqscan")
    assert "Seq Scan on sessions" not in plan and "Seq Scan on users" not in plan, plan


# --- the read a server makes: straight through the driver on PostgreSQL -------------

def _driver_path_app(app):
    """Skips unless ``app`` reads on PostgreSQL with an engine of its own (real commits), which
    is where a server's poll goes through psycopg rather than SQLAlchemy."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the driver path is PostgreSQL's")
    return app


@pytest.mark.real_commits
def test_the_driver_read_gives_the_row_sqlalchemy_gives(app, session):
    """The same values, times aware and in UTC (the validator is made of their words), and
    the read made on a connection of its own rather than through the engine."""
    from skileez.core.db import DRIVER_CONNECTIONS
    from skileez.sessions.live import _STATE, live_state

    _driver_path_app(app)
    with app.app_context():
        token = db.session.scalar(select(User.session_token).where(
            User.id == session.student_id))
        expected = db.session.execute(_STATE, {"session_id": session.id,
                                               "token": token}).one()
        db.session.remove()
        read = live_state(session.id, token)
        assert DRIVER_CONNECTIONS in app.extensions
        assert tuple(read) == tuple(expected)
        assert read.starts_at.tzinfo is UTC and read.ends_at.tzinfo is UTC
        assert repr(read.starts_at) == repr(expected.starts_at)
        assert live_state(session.id, "not a token") is None
        assert live_state(session.id + 1000, token) is None


@pytest.mark.real_commits
def test_a_server_poll_sees_the_other_person_change_on_the_next_poll(app, student, coach,
                                                                     session):
    """Committed for real, read through the driver: 304 while nothing changed, the new
    fragment right after the coach's confirmation, 304 again after that."""
    _driver_path_app(app)
    url = poll_url(student, session.id)
    before = poll(student, url)
    assert poll(student, url, before.headers["ETag"]).status_code == 304
    _confirm(app, student, coach, session, None)
    after = poll(student, url, before.headers["ETag"])
    assert after.status_code == 200
    assert "confirmed by the coach" in after.get_data(as_text=True)
    assert poll(student, url, after.headers["ETag"]).status_code == 304


@pytest.mark.real_commits
def test_a_poll_after_the_database_dropped_its_connections_still_answers(app, student,
                                                                         session):
    """The poll's kept connections die with a database restart (here: their backends are
    terminated); the next poll drops the dead one and reads again on a fresh one."""
    from sqlalchemy import text

    _driver_path_app(app)
    url = poll_url(student, session.id)
    validator = poll(student, url).headers["ETag"]
    assert poll(student, url, validator).status_code == 304
    with app.app_context(), db.engine.connect() as connection:
        killed = connection.scalar(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    assert killed >= 1
    assert poll(student, url, validator).status_code == 304


@pytest.mark.real_commits
def test_a_statement_listener_sees_the_poll_read(app, student, session):
    """Something counting statements (the benchmarks, an instrumentation library) listens
    on SQLAlchemy's engines: while it does, the read goes through SQLAlchemy, so it counts."""
    from sqlalchemy.engine import Engine

    _driver_path_app(app)
    url = poll_url(student, session.id)
    validator = poll(student, url).headers["ETag"]
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        assert poll(student, url, validator).status_code == 304
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert len(seen) == 1 and "sessions" in seen[0] and "users" in seen[0], seen
