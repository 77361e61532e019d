"""What the session page's status poll costs next to the cheapest answer the same server gives.

Every open session page asks ``GET /sessions/<id>/live`` every 10 s, both participants, for
as long as the session is not final: at real size it is the request the site answers most.
Measured the way a browser meets it: a signed-in student, over HTTP with wrk, against the
app under gunicorn on PostgreSQL, next to ``/bench/bare`` (an "ok" from the same app and
middleware, with the same cookie). The ratio of the two is the figure.

The poll is sent as the browser sends it once it has an answer in its cache: with htmx's
headers and ``If-None-Match`` carrying the validator of the first answer. The first answer
itself (the full fragment, 200) is measured too, for information: it is what each
participant pays once per change of the session.

The database is this benchmark's own (``skileez_bench_poll``, rebuilt on every run): a
coach and a student with the polled session booked and paid through the real operations,
thousands of sessions of theirs around it and thousands of other pairs' beside them, so
that anything the poll reads that grows with a person's history shows.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from bench import support

SUMMARY = ("status fragment ratio",)
SECONDS = 5  # per wrk run
PAIR_SESSIONS = 3_000  # the polled pair's other sessions, past and future
OTHER_PAIRS = 20
OTHER_SESSIONS = 150  # each other pair's
CONTRACT_SESSIONS = 50  # the most one contract holds
STUDENT = "student@bench.example"
HTMX_HEADERS = {"HX-Request": "true", "HX-Target": "session-live",
                "HX-Current-URL": "http://127.0.0.1/sessions/1"}

# Background sessions, 3 hours apart (no two of one person overlap), their status by slot:
# past ones final, future ones still going ahead or cancelled.
BACKGROUND = text("""
    INSERT INTO sessions (contract_id, number, coach_id, student_id, starts_at, ends_at,
                          coach_block_end, status, meeting_room, confirmed_by_coach, late,
                          started_at, completed_at, cancelled_at, missed_by,
                          created_at, updated_at)
    SELECT contract_ids[(k % array_length(contract_ids, 1)) + 1],
           k / array_length(contract_ids, 1) + 2, :coach, :student, at, at + interval '1 hour',
           at + interval '1 hour', status, 'bench-' || :coach || '-' || k, k % 3 = 0,
           status = 'cancelled' AND k % 4 = 0,
           CASE WHEN status = 'completed' THEN at END,
           CASE WHEN status = 'completed' THEN at + interval '1 hour' END,
           CASE WHEN status = 'cancelled' THEN at - interval '2 days' END,
           CASE WHEN status = 'missed' THEN 'student' END,
           at - interval '7 days', at - interval '7 days'
    FROM (SELECT k, CAST(:contracts AS integer[]) AS contract_ids,
                 CAST(:around AS timestamptz) + (k - :count / 2) * interval '3 hours'
                 + CASE WHEN k >= :count / 2 THEN interval '30 days' ELSE interval '0' END AS at,
                 CASE WHEN k < :count / 2
                      THEN (ARRAY['completed', 'cancelled', 'missed', 'completed'])[k % 4 + 1]
                      ELSE (ARRAY['scheduled', 'cancelled', 'scheduled'])[k % 3 + 1] END
                      AS status
          FROM generate_series(0, :count - 1) AS k) AS plan
""")


def build_pair(label: str, sessions: int, around) -> tuple[object, object, list[int]]:
    """A coach free every day and a student with enough contracts for ``sessions`` of theirs;
    the sessions themselves are written in one statement."""
    from skileez.auth.operations import create_user
    from skileez.coaches.operations import add_rule, create_offering, update_profile
    from skileez.contracts.operations import accept, propose
    from skileez.extensions import db

    coach = create_user(name=f"Coach {label}", email=f"coach{label}@bench.example",
                        password=support.PASSWORD, role="coach", timezone="Europe/Berlin",
                        welcome=False)
    student = create_user(name=f"Student {label}", email=f"student{label}@bench.example",
                          password=support.PASSWORD, role="student",
                          timezone="America/New_York", welcome=False)
    update_profile(coach, headline="Every day", bio="", subjects="", buffer_minutes=0,
                   min_notice_hours=0, horizon_days=365)
    for weekday in range(7):
        add_rule(coach, weekday=weekday, start_minute=0, end_minute=24 * 60 - 60)
    offering = create_offering(coach, title="Conversation practice", description="",
                               duration_minutes=60, price_minor=4990, currency="EUR")
    contracts = [accept(propose(student, offering, sessions_count=CONTRACT_SESSIONS,
                                message="Benchmark"), coach).id
                 for _ in range(-(-(sessions + 1) // CONTRACT_SESSIONS))]
    db.session.execute(BACKGROUND, {"coach": coach.id, "student": student.id,
                                    "contracts": contracts, "around": around,
                                    "count": sessions})
    return coach, student, contracts


def build_data() -> int:
    """Every pair and its history; the polled session (tomorrow, booked and paid through the
    operations, as a student does) is returned."""
    from skileez import clock
    from skileez.core.unit_of_work import transaction
    from skileez.payments.operations import ensure_payment_intent, payment_succeeded
    from skileez.sessions.operations import book

    now = clock.now().replace(minute=0, second=0, microsecond=0)
    with transaction():
        for number in range(OTHER_PAIRS):
            build_pair(f"{number}", OTHER_SESSIONS, now)
        _coach, student, contracts = build_pair("", PAIR_SESSIONS, now)
    with transaction():
        polled = book(student, contracts[0], now + timedelta(days=1, hours=3, minutes=30))
    with transaction():
        payment = ensure_payment_intent(polled.payment)
        payment_succeeded(payment.payment_intent_id, charge_id="ch_bench")
    return polled.id


class ServerCPU:
    """CPU time spent serving: the gunicorn processes on ``base``'s port and the
    PostgreSQL backends connected to the bench database (the machine is shared, so
    requests per second move with everyone else's load; the CPU a request costs does not).
    Read from /proc; None where there is none."""

    def __init__(self, base: str, url):
        self.port = base.rsplit(":", 1)[1]
        self.url = url

    def seconds(self) -> tuple[float, float] | None:
        """(app, database) CPU seconds so far."""
        proc = Path("/proc")
        if not proc.exists():
            return None
        app = [path.parent.name for path in proc.glob("[0-9]*/cmdline")
               if self._is_server(path)]
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                database = [str(pid) for pid in connection.scalars(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"))]
        finally:
            engine.dispose()
        tick = os.sysconf("SC_CLK_TCK")
        return (sum(self._cpu(proc / pid / "stat") for pid in app) / tick,
                sum(self._cpu(proc / pid / "stat") for pid in database) / tick)

    def _is_server(self, cmdline: Path) -> bool:
        try:
            command = cmdline.read_bytes()
        except OSError:
            return False
        return b"gunicorn" in command and f"127.0.0.1:{self.port}".encode() in command

    @staticmethod
    def _cpu(stat: Path) -> int:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0  # gone meanwhile
        return int(fields[11]) + int(fields[12])  # utime, stime


def measure(cpu: ServerCPU, url: str, **options) -> tuple[float, tuple[float, float] | None]:
    """Requests per second, and the (app, database) CPU milliseconds per request."""
    before = cpu.seconds()
    rate = support.wrk(url, seconds=SECONDS, **options)
    after = cpu.seconds()
    if before is None or after is None:
        return rate, None
    requests = rate * SECONDS
    return rate, ((after[0] - before[0]) * 1e3 / requests,
                  (after[1] - before[1]) * 1e3 / requests)


def main() -> None:
    import requests

    url = support.bench_database("poll", fresh=True)
    app = support.build_app(url)
    with app.app_context():
        session_id = build_data()
        from skileez.extensions import db

        db.session.remove()
        db.engine.dispose()
        print(f"   data: {PAIR_SESSIONS + 1} sessions of the polled pair, "
              f"{OTHER_PAIRS * OTHER_SESSIONS} of {OTHER_PAIRS} other pairs")

    with support.gunicorn(url, workers=4) as base:
        http = support.signed_in(base, STUDENT)
        cookie = support.cookie_header(http)
        # Sign-in is bound to the browser that made it (Flask-Login's strong session
        # protection hashes the User-Agent): wrk must present the same one.
        same_browser = {"User-Agent": http.headers["User-Agent"]}
        live = f"{base}/sessions/{session_id}/live?seen=scheduled"
        first = http.get(live, headers=HTMX_HEADERS, timeout=10)
        if first.status_code != 200 or 'data-status="scheduled"' not in first.text:
            raise RuntimeError(f"the fragment answered {first.status_code}: {first.text[:300]}")
        validator = first.headers.get("ETag")
        poll_headers = {**HTMX_HEADERS, **same_browser}
        if validator:
            poll_headers["If-None-Match"] = validator
            again = requests.get(live, headers={**poll_headers, "Cookie": cookie}, timeout=10)
            print(f"   a poll with the first answer's validator answers {again.status_code}")
        else:
            print("   the fragment sends no validator: every poll is a full answer")

        cpu = ServerCPU(base, url)
        bare, bare_cpu = measure(cpu, f"{base}/bench/bare", cookie=cookie,
                                 headers=same_browser)
        poll, poll_cpu = measure(cpu, live, cookie=cookie, headers=poll_headers)
        full, full_cpu = measure(cpu, live, cookie=cookie,
                                 headers={**HTMX_HEADERS, **same_browser})
    ratio = poll / bare

    def cpu_words(ms: tuple[float, float] | None) -> str:
        return "" if ms is None else (f"   CPU each: app {ms[0]:4.2f} ms, "
                                      f"database {ms[1]:4.2f} ms")

    print(f"   GET /bench/bare, signed in:                    {bare:8.0f} req/s"
          + cpu_words(bare_cpu))
    print(f"   GET /sessions/<id>/live, polled (as browsers): {poll:8.0f} req/s"
          + cpu_words(poll_cpu))
    print(f"   GET /sessions/<id>/live, first answer (200):   {full:8.0f} req/s"
          + cpu_words(full_cpu) + f"   ({full / bare:.2f}× bare)")
    if bare_cpu and poll_cpu:
        print(f"   by server CPU (less moved by others' load): the poll is "
              f"{sum(bare_cpu) / sum(poll_cpu):.2f}× a bare request")
    print(f"   status fragment ratio {ratio:.2f} (target ≥ 0.60): one server process answers "
          f"the polls of about {poll / 2 * 10:.0f} open session pages")
    support.record("status fragment ratio", f"{ratio:.2f}")
