"""Pagination that no query string can break."""

from __future__ import annotations

from flask import request

from skileez.extensions import db

MAX_PAGE = 100_000


def paginate(statement, *, per_page: int = 20):
    """``db.paginate`` with the page number clamped: ``?page=999…`` would otherwise ask the
    database for an OFFSET beyond its integer range and fail with a 500."""
    try:
        page = int(request.args.get("page", 1))
    except (TypeError, ValueError):
        page = 1
    page = min(max(page, 1), MAX_PAGE)
    return db.paginate(statement, page=page, per_page=per_page, error_out=False)
