"""The generated data sets the benchmarks measure against: ``small`` and ``large``.

``large`` is the size issue 10 was measured at (200 coaches, 2,000 students, 55k sessions
and payments, ~245k ledger entries where the issue had 220k, ~100k notifications and
outbox emails, 55k audit events, one coach–student pair with 5,000 sessions); ``small``
has the same shapes at about 1% (the busy pair included, with 50 sessions). A page that
costs more statements on ``large`` than on ``small`` grows with data.

The rows are made with plain ``INSERT … SELECT … generate_series`` from one plan of the
sessions, with a fixed seed (every "random" choice is a hash of a row id), so two builds
are the same apart from the moment they are anchored to. They are valid as the app sees
them: a session's status agrees with its payment, payout, refund and dispute; the ledger
posts what ``skileez/payments/ledger.py`` posts for each of them, so
``check_invariants()`` finds nothing; no two blocking sessions of a coach (with the
buffer) or of a student overlap, so the exclusion constraints accept them.

Nothing in a set is due for the sweep when it is made: past sessions are final and ended
more than a day ago (released, refunded or paid out), future ones start at least
``QUIET_DAYS`` ahead, and nothing waits on a deadline closer than that. A set is rebuilt
when it is missing, when its fingerprint (``VERSION`` and the migrations' head) differs,
or when it is older than ``MAX_AGE`` (its future would have started to fall due).

``ensure(size)`` answers the URL of ``skileez_bench_<size>``; ``copy_of(size, purpose)``
a fresh ``skileez_bench_<purpose>`` cloned from it, for benchmarks that write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from bench import support

# Bump when the shape of the generated data changes: every set is rebuilt.
VERSION = 2
MAX_AGE = timedelta(days=6)
QUIET_DAYS = 8  # no blocking session between a day before the build and this many after
FINGERPRINT_TABLE = "skileez_bench_dataset"
SEED = 20261203  # the salt of every hash that stands in for a random choice


@dataclass(frozen=True)
class Size:
    """How many of each thing; everything else follows from these."""

    coaches: int
    busy_sessions: int  # the one coach–student pair with many sessions

    @property
    def students(self) -> int:
        return 10 * self.coaches

    @property
    def contracts(self) -> int:
        """Regular contracts: 25 per coach, each of ``SESSIONS_PER_CONTRACT`` weekly sessions
        at a weekly slot of its own (see the plan)."""
        return 25 * self.coaches


SIZES = {"small": Size(coaches=2, busy_sessions=50),
         "large": Size(coaches=200, busy_sessions=5000)}
SESSIONS_PER_CONTRACT = 10
BUSY_PER_CONTRACT = 50  # the policy's maximum per proposal
BUFFER_MINUTES = 15

# The accounts a benchmark signs in as (password ``support.PASSWORD``). The busy coach and
# the busy student are the pair with ``busy_sessions`` sessions.
ACCOUNTS = {"admin": "admin@bench.example",
            "coach": "coach-0001@bench.example",
            "student": "student-0001@bench.example"}


def ensure(size: str) -> URL:
    """The URL of ``skileez_bench_<size>`` holding that data set, built if needed."""
    plan = SIZES[size]
    url = support.bench_database(size, fresh=False)
    wanted = fingerprint()
    if _recorded(url) != wanted:
        started = time.perf_counter()
        print(f"   building the {size} data set (fingerprint {wanted}) …", flush=True)
        url = support.bench_database(size, fresh=True)
        build(url, plan, wanted)
        print(f"   {size} data set built in {time.perf_counter() - started:.0f} s",
              flush=True)
    return url


def copy_of(size: str, purpose: str) -> URL:
    """A fresh ``skileez_bench_<purpose>``, a copy of the ``size`` data set, to write to.

    Made with ``CREATE DATABASE … TEMPLATE``, which copies files rather than rows, so it
    takes seconds even for ``large``; the template must have no open connections then.
    """
    source = ensure(size)
    target = support.bench_database(purpose, fresh=True)  # refuses a database not ours
    admin = create_engine(support.server_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{target.database}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{target.database}" '
                                    f'TEMPLATE "{source.database}"'))
    except DBAPIError as exc:
        raise support.Skip(f"could not copy {source.database}: "
                           f"{support.first_line(exc)}") from exc
    finally:
        admin.dispose()
    return target


def fingerprint() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory(str(support.ROOT / "migrations")).get_heads()
    return f"v{VERSION}:{'+'.join(sorted(heads))}"


def _recorded(url: URL) -> str | None:
    """The fingerprint a complete build wrote last (None if incomplete, or too old)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if not connection.scalar(text("SELECT to_regclass(:t) IS NOT NULL"),
                                     {"t": FINGERPRINT_TABLE}):
                return None
            row = connection.execute(text(
                f"SELECT fingerprint, made_at FROM {FINGERPRINT_TABLE}")).first()
    finally:
        engine.dispose()
    if row is None or datetime.now(UTC) - row.made_at > MAX_AGE:
        return None
    return row.fingerprint


def password_hash() -> str:
    """One hash of ``support.PASSWORD`` with the app's hasher at the bench's cost settings,
    shared by every generated account (sign-in verifies it and asks for no rehash)."""
    from skileez import create_app
    from skileez.auth.passwords import hash_password

    app = create_app(support.app_config("sqlite://"))
    with app.app_context():
        return hash_password(support.PASSWORD)


def build(url: URL, plan: Size, stamp: str) -> None:
    """Schema by the migrations, then every table filled from the session plan."""
    from skileez.extensions import db

    app = support.build_app(url)
    with app.app_context():
        # The schema is what was wanted; the rows go in over plain SQL. Its pooled
        # connections are closed now, or a TEMPLATE copy of this database would refuse.
        db.engine.dispose()
    now = datetime.now(UTC).replace(microsecond=0)
    params = {
        "now": now, "coaches": plan.coaches, "students": plan.students,
        "contracts": plan.contracts, "per_contract": SESSIONS_PER_CONTRACT,
        "busy": plan.busy_sessions, "busy_per_contract": BUSY_PER_CONTRACT,
        "quiet": QUIET_DAYS, "buffer": BUFFER_MINUTES, "seed": SEED,
        "hash": password_hash(),
    }
    engine = create_engine(url)
    event.listen(engine, "connect", _integers_as_int4)
    try:
        with engine.begin() as connection:
            for sql in _statements():
                statement = text(sql)
                connection.execute(statement, {name: params[name]
                                               for name in statement.compile().params})
            connection.execute(text(
                f"CREATE TABLE {FINGERPRINT_TABLE} (fingerprint text, made_at timestamptz)"))
            connection.execute(text(f"INSERT INTO {FINGERPRINT_TABLE} VALUES (:f, :now)"),
                               {"f": stamp, "now": now})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


def _integers_as_int4(dbapi_connection, _record) -> None:
    """psycopg sends a small Python int as smallint, so ``:contracts * :per_contract``
    would overflow; the counts here are int4 like the id columns they fill."""
    from psycopg.types.numeric import Int4Dumper

    dbapi_connection.adapters.register_dumper(int, Int4Dumper)


def _statements() -> list[str]:
    """The SQL of a build, in order: statements separated by a line holding ``;``, without
    the comment lines (a colon in one would read as a bind)."""
    source = Path(__file__).with_name("dataset.sql").read_text()
    code = "\n".join(line for line in source.splitlines()
                     if not line.lstrip().startswith("--"))
    return [part.strip() for part in code.split("\n;\n") if part.strip()]
