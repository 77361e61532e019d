"""The deadline sweep at real size: its cost follows what is due, not the size of the tables.

In its own PostgreSQL database, generated with plain SQL (``INSERT … SELECT … FROM
generate_series``):

1. 1,000,000 sessions that are not due (completed ones in the past with released
   payments, scheduled ones from two days ahead with held payments), and one sweep
   timed with nothing due;
2. 50,000 unpaid holds that ran out and 50,000 scheduled sessions nobody started (paid,
   ended over 30 minutes ago), swept until none is due, timed, with rows/s;
3. the mail those batches recorded, written (the sweep leaves a batch's emails to be
   written where they are sent) and drained in-process into the local mailbox, timed,
   with rows/s.

Then SQL checks that every due row reached its final state once, with exactly its audit
event(s), its notifications and its emails, all sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

from bench import support

SUMMARY = ("sweep nothing due", "sweep 100k due")

PAIRS = 1000             # coach–student pairs holding the sessions that are not due
NOT_DUE_PER_PAIR = 1000  # half of them completed in the past, half scheduled ahead
DUE_PAIRS = 1000         # other pairs, so the due rows never overlap the others' times
DUE_PER_PAIR = 100       # alternately an expired hold and a session nobody started
PER_CONTRACT = 50        # the most sessions a contract may have
PRICE = 5000             # minor units, with a 10% fee
SESSION_HANDLERS = ("expire_payment_holds", "auto_missed")

# Users 1..N are coaches, N+1..2N students; pair p is coach p with student N + p.
GENERATE = [
    """INSERT INTO users (id, email, name, password_hash, role, timezone, status,
                          session_token, created_at, updated_at)
       SELECT u, 'bench' || u || '@sweep.test', 'Person ' || u, 'x',
              CASE WHEN u <= :people THEN 'coach' ELSE 'student' END, 'Europe/Berlin',
              'active', 'token-' || u, now() - interval '1 year', now() - interval '1 year'
       FROM generate_series(1, 2 * :people) AS u""",
    """INSERT INTO offerings (id, coach_id, title, description, duration_minutes,
                              price_minor, currency, status, created_at, updated_at)
       SELECT c, c, 'Lessons ' || c, '', 60, :price, 'EUR', 'active', now(), now()
       FROM generate_series(1, :people) AS c""",
    # A proposal and a contract per PER_CONTRACT sessions of a pair: contract j (0-based)
    # of pair p has id j * people + p.
    """INSERT INTO proposals (id, student_id, coach_id, offering_id, sessions_count,
                              message, status, expires_at, created_at, updated_at)
       SELECT id, :people + p, p, p, :per_contract, '', 'accepted', now(), now(), now()
       FROM (SELECT g AS id, (g - 1) % :people + 1 AS p
             FROM generate_series(1, :contracts) AS g) AS c""",
    """INSERT INTO contracts (id, proposal_id, student_id, coach_id, offering_id, title,
                              duration_minutes, price_minor, currency, total_sessions,
                              status, created_at, updated_at)
       SELECT id, id, student_id, coach_id, offering_id, 'Lessons ' || coach_id, 60,
              :price, 'EUR', :per_contract, 'active', now(), now()
       FROM proposals""",
]

# Session k (1-based) of pair p: not due — the first half completed long ago, the second
# half scheduled from two days ahead (past both reminders); every 90 minutes.
NOT_DUE_SESSIONS = """
    INSERT INTO sessions (id, contract_id, number, coach_id, student_id, starts_at, ends_at,
                          coach_block_end, status, meeting_room, created_at, updated_at,
                          completed_at)
    SELECT g, ((k - 1) / :per_contract) * :people + p, (k - 1) % :per_contract + 1, p,
           :people + p, start, start + interval '1 hour', start + interval '1 hour',
           CASE WHEN k <= :half THEN 'completed' ELSE 'scheduled' END, 'room-' || g,
           now() - interval '60 days', now() - interval '60 days',
           CASE WHEN k <= :half THEN start + interval '1 hour' END
    FROM (SELECT g, k, p,
                 CASE WHEN k <= :half
                      THEN now() - interval '60 days' + k * interval '90 minutes'
                      ELSE now() + interval '2 days' + (k - :half) * interval '90 minutes'
                 END AS start
          FROM (SELECT g, (g - 1) / :pairs + 1 AS k, (g - 1) % :pairs + 1 AS p
                FROM generate_series(1, :count) AS g) AS n) AS s"""

# Due session k of due pair p (pairs PAIRS+1 …): odd k an unpaid hold that ran out, even k
# a paid session that ended over 30 minutes ago; every 90 minutes back from 2.5 hours ago.
DUE_SESSIONS = """
    INSERT INTO sessions (id, contract_id, number, coach_id, student_id, starts_at, ends_at,
                          coach_block_end, status, hold_expires_at, meeting_room,
                          created_at, updated_at)
    SELECT :first + g, ((k - 1) / :per_contract) * :people + p, (k - 1) % :per_contract + 1,
           p, :people + p, start, start + interval '1 hour', start + interval '1 hour',
           CASE WHEN k % 2 = 1 THEN 'pending_payment' ELSE 'scheduled' END,
           CASE WHEN k % 2 = 1 THEN now() - interval '1 minute' END,
           'room-' || (:first + g), start - interval '1 day', start - interval '1 day'
    FROM (SELECT g, k, p, now() - interval '150 minutes' - (k - 1) * interval '90 minutes'
                 AS start
          FROM (SELECT g, (g - 1) / :due_pairs + 1 AS k,
                       :pairs + (g - 1) % :due_pairs + 1 AS p
                FROM generate_series(1, :count) AS g) AS n) AS s"""

# One payment per session, as the session's state implies: released for the completed,
# held for the scheduled, pending for the unpaid holds.
PAYMENTS = """
    INSERT INTO payments (session_id, student_id, coach_id, amount_minor, currency,
                          fee_minor, coach_net_minor, refunded_minor, status, gateway,
                          paid_at, released_at, created_at, updated_at)
    SELECT id, student_id, coach_id, :price, 'EUR', :price / 10, :price - :price / 10, 0,
           CASE status WHEN 'completed' THEN 'released' WHEN 'scheduled' THEN 'held'
                       ELSE 'pending' END, 'test',
           CASE WHEN status <> 'pending_payment' THEN created_at END,
           CASE WHEN status = 'completed' THEN ends_at + interval '1 day' END,
           created_at, created_at
    FROM sessions WHERE id > :from_id"""

# The escrow the paid due sessions hold, so their refunds come out of money in escrow.
HELD_POSTINGS = [
    """INSERT INTO ledger_transactions (kind, payment_id, memo, created_at)
       SELECT 'payment_held', p.id, '', now() FROM payments p
       WHERE p.session_id > :from_id AND p.status = 'held'""",
    """INSERT INTO ledger_entries (transaction_id, account, amount_minor, currency)
       SELECT t.id, e.account, e.sign * :price, 'EUR'
       FROM ledger_transactions t
       CROSS JOIN (VALUES ('student_funding', -1), ('escrow', 1)) AS e(account, sign)
       WHERE t.kind = 'payment_held'""",
]


def _run(connection, statements, **params) -> None:
    for statement in statements:
        connection.execute(text(statement), params)


@contextmanager
def indexes_built_after_loading(engine, tables: tuple[str, ...]) -> Iterator[None]:
    """Drop the tables' secondary indexes and exclusion constraints, load, then build
    them again from their own definitions: one bulk build instead of a million
    incremental updates (and the constraints are checked over every row as they are
    added back, so the data still satisfies the schema)."""
    with engine.begin() as connection:
        constraints = connection.execute(text(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'x' AND conrelid::regclass::text = ANY(:t)"),
            {"t": list(tables)}).all()
        indexes = connection.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(:t) "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"),
            {"t": list(tables)}).all()
        for table, name, _definition in constraints:
            connection.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
        for name, _definition in indexes:
            connection.execute(text(f'DROP INDEX "{name}"'))
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            for _name, definition in indexes:
                connection.execute(text(definition))
            for table, name, definition in constraints:
                connection.execute(text(
                    f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'))


LOADED_TABLES = ("sessions", "payments")


def generate_not_due(engine) -> int:
    count = PAIRS * NOT_DUE_PER_PAIR
    people = PAIRS + DUE_PAIRS
    with indexes_built_after_loading(engine, LOADED_TABLES), engine.begin() as connection:
        _run(connection, GENERATE, people=people, price=PRICE, per_contract=PER_CONTRACT,
             contracts=people * (NOT_DUE_PER_PAIR // PER_CONTRACT))
        connection.execute(text(NOT_DUE_SESSIONS), {
            "per_contract": PER_CONTRACT, "people": people, "half": NOT_DUE_PER_PAIR // 2,
            "pairs": PAIRS, "count": count})
        connection.execute(text(PAYMENTS), {"price": PRICE, "from_id": 0})
    _fix_sequences_and_analyze(engine)
    return count


def generate_due(engine) -> int:
    count = DUE_PAIRS * DUE_PER_PAIR
    first = PAIRS * NOT_DUE_PER_PAIR
    # Into tables already a million rows long: rebuilding their indexes would cost more.
    with engine.begin() as connection:
        connection.execute(text(DUE_SESSIONS), {
            "first": first, "per_contract": PER_CONTRACT, "due_pairs": DUE_PAIRS,
            "pairs": PAIRS, "people": PAIRS + DUE_PAIRS, "count": count})
        connection.execute(text(PAYMENTS), {"price": PRICE, "from_id": first})
        _run(connection, HELD_POSTINGS, from_id=first, price=PRICE)
    _fix_sequences_and_analyze(engine)
    return count


def _fix_sequences_and_analyze(engine) -> None:
    with engine.begin() as connection:
        for table in ("users", "offerings", "proposals", "contracts", "sessions"):
            connection.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))


def sweep_until_done(app, only) -> tuple[float, int, int]:
    """Seconds of sweeping, rows acted on, and sweeps run until ``only`` had nothing left."""
    from skileez.jobs.sweep import sweep

    acted, runs, started = 0, 0, time.perf_counter()
    with app.app_context():
        while True:
            runs += 1
            done = sum(sweep(only=only).values())
            acted += done
            if not done:
                break
    return time.perf_counter() - started, acted, runs


VERIFY = {
    "sessions expired, once each": """
        SELECT count(*) FROM sessions s WHERE s.id > :first AND s.status = 'expired'
        AND (SELECT count(*) FROM audit_events a WHERE a.object_type = 'sessions'
             AND a.object_id = s.id AND a.to_state = 'expired') = 1""",
    "sessions missed, once each": """
        SELECT count(*) FROM sessions s WHERE s.id > :first AND s.status = 'missed'
        AND s.missed_by = 'unattended'
        AND (SELECT count(*) FROM audit_events a WHERE a.object_type = 'sessions'
             AND a.object_id = s.id AND a.to_state = 'missed') = 1""",
    "unpaid payments failed, once each": """
        SELECT count(*) FROM payments p WHERE p.session_id > :first AND p.status = 'failed'
        AND (SELECT count(*) FROM audit_events a WHERE a.object_type = 'payments'
             AND a.object_id = p.id) = 1""",
    "paid payments refunded in full, once each": """
        SELECT count(*) FROM payments p WHERE p.session_id > :first
        AND p.status = 'refunded' AND p.refunded_minor = p.amount_minor
        AND (SELECT count(*) FROM audit_events a WHERE a.object_type = 'payments'
             AND a.object_id = p.id) = 1
        AND (SELECT count(*) FROM refunds r WHERE r.payment_id = p.id) = 1
        AND (SELECT count(*) FROM ledger_transactions t WHERE t.payment_id = p.id
             AND t.kind = 'refund') = 1""",
    "students told of their expired booking": """
        SELECT count(DISTINCT n.payload ->> 'session_id') FROM notifications n
        WHERE n.kind = 'booking_expired'""",
    "people told of the missed session (two per session)": """
        SELECT count(*) FROM notifications n WHERE n.kind = 'session_missed'""",
    "students told of their refund": """
        SELECT count(DISTINCT n.payload ->> 'session_id') FROM notifications n
        WHERE n.kind = 'refund_issued'""",
    "emails sent, one per notification": """
        SELECT count(*) FROM outbox_emails o WHERE o.status = 'sent'
        AND o.notification_id IS NOT NULL""",
    "emails sent written, naming their recipient": """
        SELECT count(*) FROM outbox_emails o JOIN users u ON u.id = o.recipient_id
        WHERE o.status = 'sent' AND o.subject <> ''
        AND position(split_part(u.name, ' ', 1) IN o.text_body) > 0
        AND position(u.email IN o.html_body) > 0""",
}


def verify(engine, due: int, first: int) -> list[str]:
    half = due // 2
    expected = {"sessions expired, once each": half, "sessions missed, once each": half,
                "unpaid payments failed, once each": half,
                "paid payments refunded in full, once each": half,
                "students told of their expired booking": half,
                "people told of the missed session (two per session)": 2 * half,
                "students told of their refund": half,
                "emails sent, one per notification": 4 * half,
                "emails sent written, naming their recipient": 4 * half}
    problems = []
    with engine.connect() as connection:
        for name, query in VERIFY.items():
            found = connection.scalar(text(query), {"first": first})
            print(f"   check: {name}: {found} (expected {expected[name]})")
            if found != expected[name]:
                problems.append(name)
        notifications = connection.scalar(text("SELECT count(*) FROM notifications"))
        if notifications != 4 * half:
            problems.append(f"{notifications} notifications in all, expected {4 * half}")
    return problems


def main() -> None:
    url = support.bench_database("sweep", fresh=True)
    app = support.build_app(url)
    engine = create_engine(url)
    try:
        started = time.perf_counter()
        not_due = generate_not_due(engine)
        print(f"   generated {not_due:,} sessions not due (with payments) in "
              f"{time.perf_counter() - started:.1f} s")
        nothing, _acted, _runs = sweep_until_done(app, None)
        print(f"   sweep with nothing due: {nothing:.3f} s")
        support.record("sweep nothing due", f"{nothing:.2f} s")

        started = time.perf_counter()
        due = generate_due(engine)
        print(f"   generated {due:,} due sessions in {time.perf_counter() - started:.1f} s")
        seconds, acted, runs = sweep_until_done(app, SESSION_HANDLERS)
        print(f"   sweep {due:,} due: {seconds:.2f} s in {runs} sweep(s), {acted:,} acted on, "
              f"{acted / seconds:,.0f} rows/s")
        support.record("sweep 100k due", f"{seconds:.2f} s")

        with engine.connect() as connection:
            pending = connection.scalar(text(
                "SELECT count(*) FROM outbox_emails WHERE status = 'pending'"))
        mail_seconds, sent, runs = sweep_until_done(app, ("send_due_mail",))
        print(f"   mail drain: {sent:,} of {pending:,} emails in {mail_seconds:.2f} s "
              f"({runs} sweep(s)), {sent / mail_seconds:,.0f} rows/s")
        problems = verify(engine, due, PAIRS * NOT_DUE_PER_PAIR)
        if problems:
            raise RuntimeError("sweep bench: wrong results: " + "; ".join(problems))
    finally:
        engine.dispose()
