"""Pagination that no query string can break."""

from __future__ import annotations

from flask import request
from flask_sqlalchemy.pagination import SelectPagination
from sqlalchemy import func

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
    """A page of plain rows (a ``select`` of columns), not of the first column's values
    (``db.paginate`` reads ``.scalars()``, which keeps one column of each row).

    The total comes with the page, as a ``COUNT(*) OVER ()`` column: one statement, and
    the rows are not grouped and joined a second time to be counted. Only a page past
    the end (no rows to carry it) asks for the count on its own.
    """

    _total: int | None = None

    def _query_items(self) -> list:
        statement = self._query_args["select"]
        counted = statement.add_columns(func.count().over().label("page_total"))
        rows = list(self._query_args["session"].execute(
            counted.limit(self.per_page).offset(self._query_offset)))
        if rows:
            self._total = rows[0].page_total
        return rows

    def _query_count(self) -> int:
        if self._total is not None:
            return self._total
        return super()._query_count()


def paginate_rows(statement, *, per_page: int = 20) -> RowPagination:
    """``paginate`` for a statement of columns: one query for the page and its total."""
    return RowPagination(select=statement, session=db.session(), page=_page_number(),
                         per_page=per_page, error_out=False)


class CountedPagination(SelectPagination):
    """A page of ORM objects whose total comes with the page (``COUNT(*) OVER ()``), as
    ``RowPagination`` does for rows: one statement where ``db.paginate`` spends two. For
    a page that is at its statement budget (the coach's earnings with card disputes).
    Eager loads of the statement still apply; a page past the end counts on its own."""

    _total: int | None = None

    def _query_items(self) -> list:
        statement = self._query_args["select"]
        counted = statement.add_columns(func.count().over().label("page_total"))
        rows = list(self._query_args["session"].execute(
            counted.limit(self.per_page).offset(self._query_offset)))
        if rows:
            self._total = rows[0].page_total
        return [row[0] for row in rows]

    def _query_count(self) -> int:
        if self._total is not None:
            return self._total
        return super()._query_count()


def paginate_counted(statement, *, per_page: int = 20) -> CountedPagination:
    """``paginate`` for a statement of ORM objects: one query for the page and its total."""
    return CountedPagination(select=statement, session=db.session(), page=_page_number(),
                             per_page=per_page, error_out=False)
