"""Pagination that no query string can break."""

from __future__ import annotations

from flask import request
from flask_sqlalchemy.pagination import SelectPagination

from skileez.extensions import db

MAX_PAGE = 100_000


def paginate(statement, *, per_page: int = 20):
    """``db.paginate`` with the page number clamped: ``?page=999…`` would otherwise ask the
    database for an OFFSET beyond its integer range and fail with a 500."""
    return db.paginate(statement, page=_page_number(), per_page=per_page, error_out=False)


def _page_number() -> int:
    try:
        page = int(request.args.get("page", 1))
    except (TypeError, ValueError):
        page = 1
    return min(max(page, 1), MAX_PAGE)


class RowPagination(SelectPagination):
    """A page of plain rows (a ``select`` of columns), not of the first column's values:
    ``db.paginate`` reads ``.scalars()``, which keeps only one column of each row."""

    def _query_items(self) -> list:
        select = self._query_args["select"]
        select = select.limit(self.per_page).offset(self._query_offset)
        return list(self._query_args["session"].execute(select))


def paginate_rows(statement, *, per_page: int = 20) -> RowPagination:
    """``paginate`` for a statement of columns: two queries, the page and the count."""
    return RowPagination(select=statement, session=db.session(), page=_page_number(),
                         per_page=per_page, error_out=False)
