"""The benchmarks' generated data set is data the app accepts as its own.

``make bench`` measures every page against bench/dataset.py's rows, written with plain
SQL rather than through the operations; if those rows drifted from what the operations
write (a model change, a new rule), the figures would describe a state the app never
reaches. So the small set is built here on PostgreSQL, in a database of its own, and
checked the way the app checks itself: the ledger's invariants hold, the sweep finds
nothing due, the exclusion constraints took every blocking session, and the busy pair
the benchmarks sign in as exists with its many sessions.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench import dataset, support
from skileez.config import normalise_database_url

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL.startswith("postgresql"),
    reason="the bench data set is written in PostgreSQL's SQL (TEST_DATABASE_URL)")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """The small data set, built into a bench database of this run's own (dropped after)."""
    server = make_url(normalise_database_url(TEST_DATABASE_URL)).set(database="postgres")
    saved = {key: os.environ.get(key) for key in ("BENCH_DATABASE_URL",
                                                   "BENCH_DATABASE_SUFFIX")}
    os.environ["BENCH_DATABASE_URL"] = server.render_as_string(hide_password=False)
    os.environ["BENCH_DATABASE_SUFFIX"] = f"_{os.getpid()}"
    url = support.bench_database("test_dataset", fresh=True)
    try:
        dataset.build(url, dataset.SIZES["small"], dataset.fingerprint())
        app = support.build_app(url, migrate=False)
        yield url, app
    finally:
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        admin.dispose()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_the_ledger_agrees_with_every_payment_payout_and_refund(small_set):
    from skileez.payments.ledger import check_invariants

    _url, app = small_set
    with app.app_context():
        assert check_invariants() == []


def test_the_sweep_finds_nothing_due(small_set):
    from skileez.jobs.sweep import sweep

    _url, app = small_set
    with app.app_context():
        assert set(sweep().values()) == {0}


def test_the_busy_pair_has_its_sessions_in_every_state(small_set):
    url, _app = small_set
    plan = dataset.SIZES["small"]
    engine = create_engine(url)
    with engine.connect() as connection:
        statuses = dict(connection.execute(text(
            "SELECT s.status, count(*) FROM sessions AS s "
            "JOIN users AS c ON c.id = s.coach_id JOIN users AS st ON st.id = s.student_id "
            "WHERE c.email = :coach AND st.email = :student GROUP BY s.status"),
            {"coach": dataset.ACCOUNTS["coach"],
             "student": dataset.ACCOUNTS["student"]}).all())
        roles = dict(connection.execute(text(
            "SELECT role, count(*) FROM users GROUP BY role")).all())
        unpaid_blocking = connection.scalar(text(
            "SELECT count(*) FROM sessions AS s JOIN payments AS p ON p.session_id = s.id "
            "WHERE s.status IN ('scheduled', 'completed') "
            "AND p.status NOT IN ('held', 'released', 'disputed')"))
    engine.dispose()
    assert sum(statuses.values()) >= plan.busy_sessions
    assert {"completed", "scheduled", "cancelled"} <= set(statuses)
    assert roles == {"admin": 1, "coach": plan.coaches, "student": plan.students}
    assert unpaid_blocking == 0


def test_a_complete_build_is_recognised_and_not_built_again(small_set):
    url, _app = small_set
    assert dataset._recorded(url) == dataset.fingerprint()
