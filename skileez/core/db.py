"""Transaction helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from sqlalchemy import insert

from skileez.extensions import db


def insert_many(model: Any, rows: list[dict], *, key: tuple[str, ...]) -> list[int]:
    """Insert ``rows`` in one statement (per thousand rows); their new ids, in ``rows``' order.

    A multi-row ``INSERT … RETURNING`` does not promise its rows back in order, and
    SQLAlchemy's way of making it (``sort_by_parameter_order``) falls back to one
    statement per row on SQLite; so the ids come back with the ``key`` columns and are
    matched to the rows given. Rows equal in ``key`` are interchangeable, so any match
    is right.
    """
    if not rows:
        return []
    returned = db.session.execute(insert(model).returning(
        model.id, *(getattr(model, name) for name in key)), rows).all()
    ids_by_key: dict[str, list[int]] = defaultdict(list)
    for row_id, *values in returned:
        ids_by_key[_key(values)].append(row_id)
    return [ids_by_key[_key([row[name] for name in key])].pop() for row in rows]


def _key(values: list) -> str:
    return json.dumps(values, sort_keys=True, default=str)


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
