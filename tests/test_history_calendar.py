"""Session history, its CSV export, personal statistics, and the calendar feeds.

The sessions here are written straight to the database in the states a life cycle
would leave them in: these pages only read, so how a session got there is beside
the point, and crafting the set keeps every expected number easy to check by hand.
Time is frozen at Tue 10 Mar 2026 09:00 UTC. Sam is in New York (UTC-5, and UTC-4
from Sun 8 Mar 02:00 local); Clara is in Berlin (UTC+1).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar
from sqlalchemy import func, select

from skileez.auth.models import User
from skileez.contracts.models import Contract
from skileez.extensions import db
from skileez.sessions.calendar import _fold
from skileez.sessions.history import Rate, statistics_for
from skileez.sessions.models import RescheduleRequest, Session
from tests.conftest import Client


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add_session(app, contract, starts_at: datetime, status: str = "scheduled", *,
                minutes: int = 60, reschedule: str | None = None, **fields) -> int:
    """A session in any state, written directly; ``reschedule`` adds a request in that status."""
    with app.app_context():
        contract = db.session.get(Contract, contract.id)
        number = db.session.scalar(select(func.count()).select_from(Session)
                                   .where(Session.contract_id == contract.id)) + 1
        ends_at = starts_at + timedelta(minutes=minutes)
        session = Session(contract_id=contract.id, number=number, coach_id=contract.coach_id,
                          student_id=contract.student_id, starts_at=starts_at,
                          ends_at=ends_at, coach_block_end=ends_at, status=status, **fields)
        db.session.add(session)
        db.session.flush()
        if reschedule:
            db.session.add(RescheduleRequest(
                session_id=session.id, requested_by_id=contract.student_id,
                original_start=starts_at, proposed_start=starts_at + timedelta(days=1),
                reason="Something came up at work.", deadline=starts_at - timedelta(hours=1),
                status=reschedule))
        db.session.commit()
        return session.id


@pytest.fixture
def world(app, clock, coaching, make_user, make_offering, make_contract):
    """Sam's crafted history with Clara, plus Nina (another student of Clara's) and a stranger.

    Sam's sessions, oldest first (numbers are the keys of ``ids``):
      1 completed  Mon 2 Mar 05:00 UTC = 00:00 EST, exactly midnight in New York; ran 45 min
      2 completed  Tue 3 Mar 14:00; ran 65 min
      3 completed  Wed 4 Mar 14:00; no start recorded (completed after its start had passed)
      4 cancelled  Thu 5 Mar 14:00, late, by Sam
      6 missed     Fri 6 Mar 14:00, by the coach
      7 missed     Mon 9 Mar 01:30 UTC = Sun 8 Mar 21:30 EDT = Mon 9 Mar 02:30 CET, unattended
      8 scheduled  Thu 12 Mar 15:00, had a declined reschedule request
      9 reschedule_requested  Fri 13 Mar 15:00, request pending
     10 pending_payment  Mon 16 Mar 15:00 (not booked yet: left out of statistics)
     11 expired    Tue 17 Mar 15:00 (never booked: left out of statistics)
      5 cancelled  Fri 20 Mar 14:00, early, by Clara
    """
    student, coach = coaching["student"], coaching["coach"]
    contract = coaching["contract"]
    ids = {
        1: add_session(app, contract, utc(2026, 3, 2, 5, 0), "completed",
                       started_at=utc(2026, 3, 2, 5, 2), completed_at=utc(2026, 3, 2, 5, 47)),
        2: add_session(app, contract, utc(2026, 3, 3, 14, 0), "completed",
                       started_at=utc(2026, 3, 3, 14, 0), completed_at=utc(2026, 3, 3, 15, 5)),
        3: add_session(app, contract, utc(2026, 3, 4, 14, 0), "completed",
                       completed_at=utc(2026, 3, 4, 15, 30)),
        4: add_session(app, contract, utc(2026, 3, 5, 14, 0), "cancelled", late=True,
                       cancelled_by_id=student.id, cancelled_at=utc(2026, 3, 5, 2, 0)),
        5: add_session(app, contract, utc(2026, 3, 20, 14, 0), "cancelled",
                       cancelled_by_id=coach.id, cancelled_at=utc(2026, 3, 8, 9, 0)),
        6: add_session(app, contract, utc(2026, 3, 6, 14, 0), "missed", missed_by="coach"),
        7: add_session(app, contract, utc(2026, 3, 9, 1, 30), "missed", missed_by="unattended"),
        8: add_session(app, contract, utc(2026, 3, 12, 15, 0), "scheduled",
                       reschedule="declined"),
        9: add_session(app, contract, utc(2026, 3, 13, 15, 0), "reschedule_requested",
                       reschedule="pending"),
        10: add_session(app, contract, utc(2026, 3, 16, 15, 0), "pending_payment",
                        hold_expires_at=utc(2026, 3, 10, 9, 15)),
        11: add_session(app, contract, utc(2026, 3, 17, 15, 0), "expired"),
    }
    nina = make_user(name="Nina Park", email="nina@example.com", timezone="Europe/London")
    interview = make_offering(coach, title="Interview coaching", duration=45)
    nina_contract = make_contract(nina, interview, sessions=3)
    ids["nina"] = add_session(app, nina_contract, utc(2026, 3, 11, 10, 0), minutes=45)
    stranger = make_user(name="Stan Ger", email="stranger@example.com")
    return {**coaching, "ids": ids, "nina": nina, "stranger": stranger,
            "nina_contract": nina_contract}


def row_ids(body: str) -> list[int]:
    """Session ids in the order the history table lists them."""
    return [int(n) for n in re.findall(r'data-session-id="(\d+)"', body)]


def as_user(app, email: str) -> Client:
    client = Client(app)
    client.login(email)
    return client


# --- history ----------------------------------------------------------------------------

def test_history_lists_own_sessions_newest_first_in_the_viewers_zone(app, world):
    ids = world["ids"]
    sam = as_user(app, "sam@example.com")
    response = sam.get("/sessions/")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    expected = [ids[n] for n in (5, 11, 10, 9, 8, 7, 6, 4, 3, 2, 1)]
    assert row_ids(body) == expected  # Nina's session is not Sam's
    # Sun 8 Mar 21:30 in New York, with the zone named; Clara is "with".
    assert "Sun 08 Mar 2026, 21:30 EDT" in body and "Mon 02 Mar 2026, 00:00 EST" in body
    row = body[body.index(f'data-session-id="{ids[8]}"'):]
    row = row[:row.index("</tr>")]
    assert "Clara Schmidt" in row and "Conversation practice #8" in row and "60 min" in row
    assert f'href="/sessions/{ids[8]}"' in row and f"/sessions/{ids[8]}/calendar.ics" in row

    clara = as_user(app, "clara@example.com")
    body = clara.get("/sessions/").get_data(as_text=True)
    assert ids["nina"] in row_ids(body) and len(row_ids(body)) == 12
    assert "Mon 09 Mar 2026, 02:30 CET" in body and "Sam Rivera" in body


def test_status_filter_and_the_late_marker(app, world):
    ids = world["ids"]
    sam = as_user(app, "sam@example.com")
    body = sam.get("/sessions/?status=cancelled").get_data(as_text=True)
    assert row_ids(body) == [ids[5], ids[4]]
    late_row = body[body.index(f'data-session-id="{ids[4]}"'):]
    early_row = body[body.index(f'data-session-id="{ids[5]}"'):body.index(
        f'data-session-id="{ids[4]}"')]
    assert ">late</span>" in late_row[:late_row.index("</tr>")]
    assert ">late</span>" not in early_row
    # An unknown status is ignored rather than matching nothing.
    assert len(row_ids(sam.get("/sessions/?status=bogus").get_data(as_text=True))) == 11
    body = sam.get("/sessions/?status=missed").get_data(as_text=True)
    assert row_ids(body) == [ids[7], ids[6]]
    assert "nobody came" in body and "missed by the coach" in body


@pytest.mark.parametrize(("email", "date_from", "date_to", "expected"), [
    # Sam: session 7 is on Sun 8 Mar (21:30 EDT), whatever its UTC date (Mon 9 Mar).
    ("sam@example.com", "2026-03-08", "2026-03-08", [7]),
    ("sam@example.com", "2026-03-09", "2026-03-09", []),
    # Clara: the same session is on Mon 9 Mar (02:30 CET).
    ("clara@example.com", "2026-03-09", "2026-03-09", [7]),
    ("clara@example.com", "2026-03-08", "2026-03-08", []),
    # Session 1 starts at exactly 00:00 in New York on 2 Mar: "from 2 Mar" includes it,
    # "to 1 Mar" does not.
    ("sam@example.com", "2026-03-02", "2026-03-02", [1]),
    ("sam@example.com", "2026-02-01", "2026-03-01", []),
    ("sam@example.com", "", "2026-03-03", [2, 1]),
    ("sam@example.com", "2026-03-16", "", [5, 11, 10]),
])
def test_date_range_is_read_in_the_viewers_zone(app, world, email, date_from, date_to,
                                                expected):
    ids = world["ids"]
    client = as_user(app, email)
    body = client.get(f"/sessions/?from={date_from}&to={date_to}").get_data(as_text=True)
    assert row_ids(body) == [ids[n] for n in expected]
    if not expected:
        assert "No sessions match these filters" in body


def test_search_by_other_persons_name_or_title_case_insensitively(app, world):
    ids = world["ids"]
    clara = as_user(app, "clara@example.com")
    assert row_ids(clara.get("/sessions/?q=NINA").get_data(as_text=True)) == [ids["nina"]]
    assert row_ids(clara.get("/sessions/?q=interview").get_data(as_text=True)) == [ids["nina"]]
    assert len(row_ids(clara.get("/sessions/?q=rivera").get_data(as_text=True))) == 11
    # The offering's current title is searched too, even after a rename.
    with app.app_context():
        contract = db.session.get(Contract, world["nina_contract"].id)
        contract.offering.title = "Job interview drills"
        db.session.commit()
    assert row_ids(clara.get("/sessions/?q=drills").get_data(as_text=True)) == [ids["nina"]]
    # LIKE wildcards are matched literally, not as wildcards.
    body = clara.get("/sessions/?q=%25").get_data(as_text=True)
    assert row_ids(body) == [] and "No sessions match these filters" in body
    # Searching for yourself finds nothing: the name searched is the other person's.
    sam = as_user(app, "sam@example.com")
    assert row_ids(sam.get("/sessions/?q=sam").get_data(as_text=True)) == []
    assert len(row_ids(sam.get("/sessions/?q=Conversation").get_data(as_text=True))) == 11
    combined = sam.get("/sessions/?q=clara&status=completed&from=2026-03-03")
    assert row_ids(combined.get_data(as_text=True)) == [ids[3], ids[2]]


def test_bad_dates_are_ignored_with_a_message_beside_the_field(app, world):
    sam = as_user(app, "sam@example.com")
    response = sam.get("/sessions/?from=2026-13-45&to=yesterday&status=completed")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert len(row_ids(body)) == 3  # the status filter still applies
    assert "“2026-13-45” is not a date we can read" in body
    assert "“yesterday” is not a date we can read" in body
    from_feedback = re.search(r'<div id="from-feedback"[^>]*>([^<]*)</div>', body).group(1)
    assert "2026-13-45" in from_feedback
    # A "to" before "from" is dropped too; the CSV link only carries what was applied.
    body = sam.get("/sessions/?from=2026-03-05&to=2026-03-01").get_data(as_text=True)
    assert "before the “from” date" in body
    assert 'href="/sessions/export.csv?from=2026-03-05"' in body
    for query in ("from=9999-12-31", "to=9999-12-31", "from=0001-01-01", "to=0001-01-01",
                  "from=%00", "from=2026-03-0%", "from=" + "9" * 500):
        assert sam.get(f"/sessions/?{query}").status_code == 200, query
        assert sam.get(f"/sessions/export.csv?{query}").status_code == 200, query


def test_htmx_gets_the_table_partial_with_the_date_messages_out_of_band(app, world):
    sam = as_user(app, "sam@example.com")
    response = sam.get("/sessions/?status=missed&from=nope",
                       headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="history-table">') and "<html" not in body
    assert row_ids(body) == [world["ids"][7], world["ids"][6]]
    assert 'id="from-feedback"' in body and 'hx-swap-oob="true"' in body
    assert "“nope” is not a date" in body
    assert "HX-Request" in response.headers.get("Vary", "")
    # The full page has the form wired for htmx and still works as a plain GET form.
    page = sam.get("/sessions/").get_data(as_text=True)
    assert 'hx-get="/sessions/"' in page and 'hx-target="#history-table"' in page
    assert 'hx-push-url="true"' in page and 'method="get"' in page


def test_pagination_twenty_per_page_and_csv_has_every_row(app, clock, coaching):
    for day in range(25):
        add_session(app, coaching["contract"], utc(2026, 4, 1, 14, 0) + timedelta(days=day))
    sam = as_user(app, "sam@example.com")
    first = sam.get("/sessions/").get_data(as_text=True)
    second = sam.get("/sessions/?page=2").get_data(as_text=True)
    assert len(row_ids(first)) == 20 and len(row_ids(second)) == 5
    assert not set(row_ids(first)) & set(row_ids(second))
    assert "Page 1 of 2" in first and "25 in all" in first
    partial = sam.get("/sessions/?page=2", headers={"HX-Request": "true"})
    assert len(row_ids(partial.get_data(as_text=True))) == 5
    rows = list(csv.reader(io.StringIO(sam.get("/sessions/export.csv").get_data(as_text=True))))
    assert len(rows) == 1 + 25


def test_empty_history_for_someone_without_sessions(app, world):
    body = as_user(app, "stranger@example.com").get("/sessions/").get_data(as_text=True)
    assert row_ids(body) == [] and "No sessions yet" in body and "Download CSV" not in body


# --- CSV ----------------------------------------------------------------------------------

def test_csv_export_in_the_viewers_zone_with_the_same_filters(app, world):
    sam = as_user(app, "sam@example.com")
    page = sam.get("/sessions/?status=missed&q=clara").get_data(as_text=True)
    assert 'href="/sessions/export.csv?status=missed&amp;q=clara"' in page
    response = sam.get("/sessions/export.csv?status=missed&q=clara")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == \
        'attachment; filename="skileez-sessions.csv"'
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["date", "start time", "end time", "time zone", "session number",
                       "title", "student", "coach", "status", "late", "duration_minutes"]
    assert rows[1] == ["2026-03-08", "21:30", "22:30", "America/New_York", "7",
                       "Conversation practice", "Sam Rivera", "Clara Schmidt", "missed", "no",
                       "60"]
    assert rows[2][:3] == ["2026-03-06", "09:00", "10:00"] and len(rows) == 3
    # Clara gets the same session on her own clock.
    clara = as_user(app, "clara@example.com")
    rows = list(csv.reader(io.StringIO(
        clara.get("/sessions/export.csv?status=cancelled").get_data(as_text=True))))
    assert [r[:4] + r[8:10] for r in rows[1:]] == [
        ["2026-03-20", "15:00", "16:00", "Europe/Berlin", "cancelled", "no"],
        ["2026-03-05", "15:00", "16:00", "Europe/Berlin", "cancelled", "yes"],
    ]


def test_csv_neutralises_formula_injection(app, world):
    with app.app_context():
        contract = db.session.get(Contract, world["contract"].id)
        contract.title = '=HYPERLINK("http://evil.example","click")'
        db.session.get(User, world["coach"].id).name = "@SUM(A1:A9)"
        db.session.get(User, world["student"].id).name = "-2+3"
        db.session.commit()
    sam = as_user(app, "sam@example.com")
    rows = list(csv.reader(io.StringIO(
        sam.get("/sessions/export.csv?status=scheduled").get_data(as_text=True))))
    assert rows[1][5] == "'=HYPERLINK(\"http://evil.example\",\"click\")"
    assert rows[1][6] == "'-2+3" and rows[1][7] == "'@SUM(A1:A9)"


def test_csv_and_history_need_sign_in(app, world):
    anonymous = Client(app)
    for url in ("/sessions/", "/sessions/export.csv", "/sessions/statistics",
                "/sessions/calendar", f"/sessions/{world['ids'][8]}/calendar.ics"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


# --- statistics ---------------------------------------------------------------------------

def test_statistics_for_the_student(app, world):
    with app.app_context():
        stats = statistics_for(db.session.get(User, world["student"].id))
    assert stats.role == "student"
    assert (stats.sessions, stats.upcoming, stats.completed, stats.cancelled, stats.missed) \
        == (9, 2, 3, 2, 2)
    assert stats.completion == Rate(3, 7)            # settled: 3 completed, 2 missed, 2 cancelled
    assert stats.reschedule == Rate(2, 9)            # sessions 8 and 9
    assert stats.no_show == Rate(1, 5)               # 7 (unattended) of 1, 2, 3, 6, 7
    assert stats.late_cancellation == Rate(1, 7)     # 4, of 1, 2, 3, 4, 6, 7 and 5 (cancelled)
    assert stats.measured == 2                       # session 3 recorded no start
    assert stats.average_actual_minutes == pytest.approx(55)   # (45 + 65) / 2
    assert stats.average_planned_minutes == pytest.approx(60)


def test_statistics_for_the_coach(app, world):
    with app.app_context():
        stats = statistics_for(db.session.get(User, world["coach"].id))
    assert stats.role == "coach" and stats.sessions == 10 and stats.upcoming == 3
    assert stats.completion == Rate(3, 7)
    assert stats.reschedule == Rate(2, 10)
    assert stats.no_show == Rate(2, 5)               # 6 (by the coach) and 7 (unattended)
    assert stats.late_cancellation == Rate(0, 7)     # Clara cancelled 5, but early
    assert stats.late_cancellation.percent == "0%"


def test_statistics_with_nothing_to_count_show_a_dash(app, world):
    with app.app_context():
        stats = statistics_for(db.session.get(User, world["stranger"].id))
    assert stats.sessions == 0 and stats.completion.value is None
    assert stats.completion.percent == "—" and stats.average_actual_minutes is None
    body = as_user(app, "stranger@example.com").get("/sessions/statistics").get_data(
        as_text=True)
    assert re.search(r'data-testid="stat-completion-value">—<', body)
    assert re.search(r'data-testid="stat-actual">—<', body)


def test_statistics_page(app, world):
    body = as_user(app, "sam@example.com").get("/sessions/statistics").get_data(as_text=True)
    assert re.search(r'data-testid="stat-completion-value">43%<', body)
    assert "3 of 7" in body and "1 of 5" in body and "2 of 9" in body and "1 of 7" in body
    assert re.search(r'data-testid="stat-no-show-value">20%<', body)
    assert re.search(r'data-testid="stat-actual">55 min<', body)
    assert re.search(r'data-testid="stat-planned">60 min<', body)
    assert "completed, missed (by anyone) or cancelled (by anyone)" in body
    assert "less than 24 hours before the start" in body


# --- calendar -----------------------------------------------------------------------------

def feed_token(app, email: str) -> str | None:
    with app.app_context():
        return User.find_by_email(email).calendar_token


def events_by_uid(body: bytes) -> dict:
    calendar = Calendar.from_ical(body)
    return {str(event["UID"]): event for event in calendar.walk("VEVENT")}


def test_calendar_page_creates_a_token_once_and_shows_the_feed_url(app, world):
    sam = as_user(app, "sam@example.com")
    assert feed_token(app, "sam@example.com") is None
    body = sam.get("/sessions/calendar").get_data(as_text=True)
    token = feed_token(app, "sam@example.com")
    assert token and len(token) >= 43
    assert f"http://localhost/sessions/calendar/{token}.ics" in body
    assert f"webcal://localhost/sessions/calendar/{token}.ics" in body
    assert "Generate a new link" in body and 'name="csrf_token"' in body
    sam.get("/sessions/calendar")
    assert feed_token(app, "sam@example.com") == token  # a visit does not rotate it


def test_ics_feed_works_without_cookies_and_lists_current_sessions(app, world):
    ids = world["ids"]
    app.config["MEETING_BASE_URL"] = "https://meet.example.org"
    add_session(app, world["contract"], utc(2026, 1, 20, 14, 0), "completed")  # > 30 days ago
    as_user(app, "sam@example.com").get("/sessions/calendar")
    token = feed_token(app, "sam@example.com")
    response = Client(app).get(f"/sessions/calendar/{token}.ics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    events = events_by_uid(response.data)
    # Scheduled, reschedule requested, and completed in the last 30 days; nothing else.
    assert set(events) == {f"session-{ids[n]}@skileez" for n in (1, 2, 3, 8, 9)}
    event = events[f"session-{ids[8]}@skileez"]
    assert event.decoded("DTSTART") == utc(2026, 3, 12, 15, 0)
    assert event.decoded("DTEND") == utc(2026, 3, 12, 16, 0)
    text = response.get_data(as_text=True)
    assert "DTSTART:20260312T150000Z" in text and "X-PUBLISHED-TTL:PT1H" in text
    assert str(event["SUMMARY"]) == "Conversation practice with Clara Schmidt"
    assert str(event["STATUS"]) == "CONFIRMED" and "DTSTAMP" in event
    with app.app_context():
        room = db.session.get(Session, ids[8]).meeting_room
    assert f"https://meet.example.org/{room}" in str(event["DESCRIPTION"])
    assert f"http://localhost/sessions/{ids[8]}" in str(event["DESCRIPTION"])
    assert str(event["URL"]) == f"http://localhost/sessions/{ids[8]}"
    # Clara's feed names Sam, and uses the same UID for the same session.
    as_user(app, "clara@example.com").get("/sessions/calendar")
    clara_events = events_by_uid(Client(app).get(
        f"/sessions/calendar/{feed_token(app, 'clara@example.com')}.ics").data)
    assert str(clara_events[f"session-{ids[8]}@skileez"]["SUMMARY"]) == \
        "Conversation practice with Sam Rivera"
    assert f"session-{ids['nina']}@skileez" in clara_events


def test_a_rescheduled_session_keeps_its_uid(app, world):
    session_id = world["ids"][8]
    as_user(app, "sam@example.com").get("/sessions/calendar")
    url = f"/sessions/calendar/{feed_token(app, 'sam@example.com')}.ics"
    before = events_by_uid(Client(app).get(url).data)
    with app.app_context():
        session = db.session.get(Session, session_id)
        session.starts_at, session.ends_at = utc(2026, 3, 19, 15, 0), utc(2026, 3, 19, 16, 0)
        session.coach_block_end = session.ends_at
        db.session.commit()
    after = events_by_uid(Client(app).get(url).data)
    assert set(before) == set(after)
    assert after[f"session-{session_id}@skileez"].decoded("DTSTART") == utc(2026, 3, 19, 15)


def test_new_link_revokes_the_old_feed_url(app, world):
    sam = as_user(app, "sam@example.com")
    sam.get("/sessions/calendar")
    old = feed_token(app, "sam@example.com")
    assert Client(app).get(f"/sessions/calendar/{old}.ics").status_code == 200
    response = sam.post("/sessions/calendar/new-link", token_page="/sessions/calendar")
    assert response.status_code == 303
    new = feed_token(app, "sam@example.com")
    assert new and new != old
    assert Client(app).get(f"/sessions/calendar/{old}.ics").status_code == 404
    assert Client(app).get(f"/sessions/calendar/{new}.ics").status_code == 200
    page = sam.get("/sessions/calendar").get_data(as_text=True)
    assert new in page and old not in page
    # Without the CSRF token nothing changes.
    assert sam.post("/sessions/calendar/new-link", csrf=False).status_code in (303, 400)
    assert feed_token(app, "sam@example.com") == new


@pytest.mark.parametrize("token", ["nope", "", "x" * 200, "%00"])
def test_unknown_feed_tokens_are_404(app, world, token):
    assert Client(app).get(f"/sessions/calendar/{token}.ics").status_code == 404


def test_a_deactivated_persons_feed_stops(app, world):
    as_user(app, "sam@example.com").get("/sessions/calendar")
    token = feed_token(app, "sam@example.com")
    with app.app_context():
        db.session.get(User, world["student"].id).status = "deactivated"
        db.session.commit()
    assert Client(app).get(f"/sessions/calendar/{token}.ics").status_code == 404


def test_add_to_calendar_file_for_one_session(app, world):
    session_id = world["ids"][9]
    response = as_user(app, "sam@example.com").get(f"/sessions/{session_id}/calendar.ics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert response.headers["Content-Disposition"] == \
        f'attachment; filename="skileez-session-{session_id}.ics"'
    events = list(Calendar.from_ical(response.data).walk("VEVENT"))
    assert len(events) == 1 and str(events[0]["UID"]) == f"session-{session_id}@skileez"
    assert events[0].decoded("DTSTART") == utc(2026, 3, 13, 15, 0)
    assert "https://meet.jit.si/skileez-" in str(events[0]["DESCRIPTION"])
    # Participants only: a stranger, and a student of the same coach, get 404.
    for email in ("stranger@example.com", "nina@example.com"):
        assert as_user(app, email).get(f"/sessions/{session_id}/calendar.ics").status_code \
            == 404
    assert as_user(app, "sam@example.com").get("/sessions/999999/calendar.ics").status_code \
        == 404



def test_the_written_feed_reads_back_exactly_in_icalendar(app, world):
    """The feed is written by hand for speed: what icalendar (and so calendar apps) read
    back must be what was meant, for text that needs escaping and lines that need folding."""
    from skileez.sessions.calendar import build_calendar

    awkward = ("Zoë Ñúñez-Øverby; \"Coach\", Ph.D. \\ the second — 東京から " * 2).strip()
    with app.app_context():
        session = db.session.get(Session, world["ids"][8])
        session.contract.title = "Grammar, idioms; and\nmore"
        session.coach.name = awkward
        viewer = session.student
        body = build_calendar([session], viewer, lambda s: f"http://x.test/sessions/{s.id}",
                              name="Skileez sessions")
        updated_at, place_label, room = session.updated_at, session.place_label, \
            session.meeting_room
        db.session.rollback()
    assert all(len(line) <= 75 for line in body.split(b"\r\n"))
    assert body.endswith(b"END:VCALENDAR\r\n")
    calendar = Calendar.from_ical(body)
    assert str(calendar["X-WR-CALNAME"]) == "Skileez sessions"
    [event] = calendar.walk("VEVENT")
    assert str(event["SUMMARY"]) == f"Grammar, idioms; and\nmore with {awkward}"
    assert str(event["DESCRIPTION"]) == (
        f"{place_label} with {awkward}.\n\nJoin the meeting: https://meet.jit.si/{room}\n"
        f"Session page: http://x.test/sessions/{world['ids'][8]}")
    assert event.decoded("DTSTART") == utc(2026, 3, 12, 15, 0)
    assert event.decoded("LAST-MODIFIED") == updated_at.replace(microsecond=0)
    assert str(event["STATUS"]) == "CONFIRMED"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                      blacklist_characters="\r\n"), max_size=400))
def test_a_folded_line_fits_75_octets_and_unfolds_to_itself(line):
    """RFC 5545 3.1: physical lines of at most 75 octets, continuations begin with one
    space, never a UTF-8 character cut in two; unfolding gives the line back."""
    folded = _fold(line)
    physical = folded.split("\r\n")
    assert all(len(piece.encode()) <= 75 for piece in physical)
    assert all(piece.startswith(" ") for piece in physical[1:])
    assert physical[0] + "".join(piece[1:] for piece in physical[1:]) == line
