"""Transaction helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from skileez.extensions import db


def lock_coach_calendar(coach_id: int) -> None:
    """Serialize writes to one coach's calendar on PostgreSQL (released at commit).

    The exclusion constraints already refuse overlaps, but many transactions
    inserting overlapping rows at once can deadlock inside the constraint check;
    taking a per-coach advisory lock first makes them queue instead. SQLite is
    already serialized by ``core.unit_of_work.transaction(serialized=True)``.
    """
    if db.engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    db.session.execute(text("SELECT pg_advisory_xact_lock(:namespace, :coach)"),
                       {"namespace": 7001, "coach": coach_id})


def is_lock_conflict(error: Exception) -> bool:
    """A deadlock or serialization failure: another writer won; nothing was saved."""
    code = getattr(getattr(error, "orig", None), "sqlstate", None)
    return code in ("40P01", "40001")


@contextmanager
def autocommit_read() -> Iterator[Connection]:
    """A connection for a read that needs no transaction of its own (a poll asking "has it
    changed?"): in autocommit, so the read costs its statement and nothing else, not a
    BEGIN before it and a ROLLBACK after. Nothing may be written through it.

    Joined to a transaction someone else opened (a test's), it reads inside that one
    instead, which is the only place the test's rows are.
    """
    bind = db.engine
    if isinstance(bind, Connection):
        yield db.session.connection()
        return
    with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        yield connection
