"""A request or a job is one unit of work: this module owns its commit and its answers.

Operations only ``flush()``. Whoever called them decides when the work is
done: a view through ``submit`` (or ``transaction`` for a write that has no
form), a job or a CLI command through ``transaction``. That keeps the rule
"all of it or none of it" in one place: a rule broken halfway through an
operation rolls back everything it had written, including audit events and
queued emails.

The mapping from outcomes to answers is also here, so every form behaves the
same way: a broken rule (``DomainError``) re-renders the form with the message
beside its field (422), an illegal move or a lost race (``Conflict``) is 409
with nothing changed, and success is a 303 — or, for htmx, ``HX-Redirect`` so
the whole page follows instead of a fragment being swapped with a page.

The only other transaction boundaries in the code are documented where they
are: a serialized write on SQLite (below), the provider calls in
``payments.attempts`` that must record "we asked Stripe" before asking, and the
outbox send in ``notifications.mail.deliver`` that claims its row before SMTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from flask import Response, flash, redirect, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection

from skileez.core.errors import DomainError
from skileez.core.forms import attach_error
from skileez.core.http import is_htmx
from skileez.extensions import db

T = TypeVar("T")


@contextmanager
def transaction(*, serialized: bool = False) -> Iterator[None]:
    """Commit once when the block ends; on any error roll everything back and re-raise.

    ``serialized=True`` is for check-then-insert writes (is this slot free? then
    book it). PostgreSQL protects those with row locks, advisory locks and
    exclusion constraints. SQLite has none of those, so the transaction must
    hold the write lock from its first statement: ``BEGIN IMMEDIATE`` makes
    concurrent writers wait their turn (busy_timeout) instead of two of them
    reading "free" and both inserting. Reads the view made before (loading the
    contract to show a 404) ran in a read transaction that is ended here first;
    nothing has been written by then, so ending it loses nothing, and the
    objects loaded are re-read inside the locked transaction.
    """
    if serialized:
        begin_serialized()
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def begin_serialized() -> None:
    if db.engine.dialect.name != "sqlite":
        return
    if isinstance(db.session.get_bind(), Connection):
        # Joined to a transaction someone else opened (a test's): it already holds the
        # write lock, and SQLite cannot begin a second one inside it.
        return
    connection = db.session.connection()
    if connection.connection.dbapi_connection.in_transaction:
        # pysqlite opens its transaction at the first write: something was written
        # already, and a serialized write must start before any.
        raise RuntimeError("A serialized write must start before anything is written.")
    db.session.rollback()  # ends the read-only transaction; nothing is lost
    db.session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def see_other(url: str, message: str | None = None, category: str = "success") -> Response:
    """After a successful POST: 303 to ``url``, or ``HX-Redirect`` for htmx (a 3xx would
    be followed inside the XHR and the next page swapped into a fragment)."""
    if message:
        flash(message, category)
    if is_htmx():
        response = Response(status=200)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)


def submit(form, action: Callable[[], T], *, page: Callable[[], str],
           done: Callable[[T], ResponseReturnValue], allowed=True,
           problems: Callable[[], Iterable[DomainError]] | None = None,
           serialized: bool = False) -> ResponseReturnValue:
    """Run one form's action as a unit of work and answer the way every form does.

    ``page`` renders the form (with its errors) and is used for GET and for every
    refusal; ``done`` turns the action's result into the success response. A GET
    only shows the page. A POST that ``allowed`` (a ``Decision``) refuses is 409 and
    runs nothing: the page states the reason. A form that does not validate is 422;
    so is one the rules object to before anything runs (``problems``: an operation's
    own check, so a person sees every problem at once, not one per attempt — a field
    whose own validator already complained is not told twice).
    A ``DomainError`` from the action is shown beside its field with its status
    (422, or 409 for a ``Conflict``), after everything the action wrote was rolled back.
    """
    if request.method != "POST":
        return page(), 200
    if not allowed:
        return page(), 409
    valid = form.validate_on_submit()
    for problem in problems() if problems else ():
        field = getattr(form, problem.field, None) if problem.field else None
        if field is None or not field.errors:
            attach_error(form, problem)
        valid = False
    if not valid:
        return page(), 422
    try:
        with transaction(serialized=serialized):
            result = action()
    except DomainError as error:
        attach_error(form, error)
        return page(), error.status_code
    return done(result)


def form_message(form) -> str:
    """All of a form's problems as one sentence, for a button that has no form page."""
    return "; ".join(message for messages in form.errors.values()
                     for message in messages if message)
