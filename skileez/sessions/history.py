"""Reading a person's own sessions: the filtered history, its CSV export, their statistics.

Nothing here writes. The history list and the CSV export share one statement so the
file someone downloads always holds exactly the rows the page showed them (all pages
of it). Dates typed into the filters mean days on the viewer's own wall clock, since
that is how they read the table.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import aliased, selectinload
from sqlalchemy.sql.elements import ColumnElement

from skileez import clock
from skileez.auth.models import User
from skileez.coaches.models import Offering
from skileez.contracts.models import Contract
from skileez.core.http import like_pattern
from skileez.core.timezones import localize, zone
from skileez.extensions import db
from skileez.sessions import lifecycle
from skileez.sessions.models import RescheduleRequest, Session

STATUSES = ("pending_payment", "scheduled", "reschedule_requested", "in_progress", "completed",
            "cancelled", "expired", "missed")
STATUS_LABELS = {status: status.replace("_", " ").capitalize() for status in STATUSES}

# Sessions that were really booked: a hold that was never paid never became a session
# anyone planned around, so it counts in no statistic.
BOOKED_STATUSES = ("scheduled", "reschedule_requested", "in_progress", "completed",
                   "cancelled", "missed")
CSV_HEADER = ("date", "start time", "end time", "time zone", "session number", "title",
              "student", "coach", "status", "late", "duration_minutes")
# A spreadsheet treats a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# A signed decimal and nothing else: safe in a spreadsheet whatever its sign.
PLAIN_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?")
MAX_SEARCH_LENGTH = 100


# --- filters ---------------------------------------------------------------------------

@dataclass(frozen=True)
class HistoryFilters:
    """What the viewer asked for, already checked; ``errors`` explains what was ignored."""

    status: str = ""
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    # The dates as typed, so a rejected one is shown back rather than silently lost.
    raw_from: str = ""
    raw_to: str = ""

    def query_args(self) -> dict[str, str]:
        """The filters as query-string arguments (for the CSV link and pagination)."""
        args = {"status": self.status, "q": self.q,
                "from": self.date_from.isoformat() if self.date_from else "",
                "to": self.date_to.isoformat() if self.date_to else ""}
        return {key: value for key, value in args.items() if value}


def _clean(value: str | None, max_length: int) -> str:
    return (value or "").replace("\x00", "").strip()[:max_length]


def _parse_date(text: str) -> date | None:
    """Only the unambiguous YYYY-MM-DD a date input sends; anything else is refused."""
    if len(text) != 10:
        raise ValueError(text)
    return date.fromisoformat(text)


def parse_filters(args: Mapping[str, str]) -> HistoryFilters:
    """Read filters from a query string; bad input is dropped with a message, never an error."""
    status = args.get("status") or ""
    status = status if status in STATUSES else ""
    errors: dict[str, str] = {}
    dates: dict[str, date | None] = {"from": None, "to": None}
    raw = {name: _clean(args.get(name), 40) for name in dates}
    for name, text in raw.items():
        if not text:
            continue
        try:
            dates[name] = _parse_date(text)
        except ValueError:
            errors[name] = f"“{text}” is not a date we can read, so it was ignored. " \
                           "Use the form YYYY-MM-DD, e.g. 2026-03-31."
    if dates["from"] and dates["to"] and dates["to"] < dates["from"]:
        errors["to"] = "This date is before the “from” date, so it was ignored."
        dates["to"] = None
    return HistoryFilters(status=status, date_from=dates["from"], date_to=dates["to"],
                          q=_clean(args.get("q"), MAX_SEARCH_LENGTH), errors=errors,
                          raw_from=raw["from"], raw_to=raw["to"])


def local_midnight(day: date, tz_name: str | None) -> datetime | None:
    """The UTC instant a day begins in a zone; None when it is beyond what datetime holds."""
    try:
        return datetime.combine(day, time(0), tzinfo=zone(tz_name)).astimezone(UTC)
    except OverflowError:
        return None


# --- the history statement -------------------------------------------------------------

def _other_person_id(user: User) -> ColumnElement:
    return Session.student_id if user.is_coach else Session.coach_id


def _taking_part(user: User) -> ColumnElement:
    """The user's sessions, on the one column their role fills: a coach is never the student
    of a session nor a student its coach, so the (person, starts_at) index gives the pages
    in order instead of every one of the person's sessions being read and sorted."""
    return Session.coach_id == user.id if user.is_coach else Session.student_id == user.id


def history_statement(user: User, filters: HistoryFilters) -> Select:
    """Sessions the user takes part in (as student or coach) matching ``filters``, newest first.

    Date bounds are the viewer's local midnights: "to 31 March" includes every session
    starting on 31 March on their own clock, whatever the UTC date was.
    """
    statement, _other = _matching(user, filters)
    return statement.options(selectinload(Session.contract), selectinload(Session.coach),
                             selectinload(Session.student)).order_by(*NEWEST_FIRST)


NEWEST_FIRST = (Session.starts_at.desc(), Session.id.desc())


def _matching(user: User, filters: HistoryFilters) -> tuple[Select, type[User]]:
    """The filtered statement, and the other participant it joins (for their name)."""
    other = aliased(User)
    statement = (select(Session)
                 .join(Contract, Session.contract_id == Contract.id)
                 .join(other, other.id == _other_person_id(user))
                 .where(_taking_part(user)))
    if filters.status:
        statement = statement.where(Session.status == filters.status)
    if filters.date_from:
        start = local_midnight(filters.date_from, user.timezone)
        if start is not None:
            statement = statement.where(Session.starts_at >= start)
    if filters.date_to:
        try:
            end = local_midnight(filters.date_to + timedelta(days=1), user.timezone)
        except OverflowError:  # 9999-12-31: no day after it, so no upper bound
            end = None
        if end is not None:
            statement = statement.where(Session.starts_at < end)
    if filters.q:
        pattern = like_pattern(filters.q)
        offering_title = (select(Offering.title).where(Offering.id == Contract.offering_id)
                          .scalar_subquery())
        statement = statement.where(or_(
            func.lower(other.name).like(pattern, escape="\\"),
            func.lower(Contract.title).like(pattern, escape="\\"),
            func.lower(offering_title).like(pattern, escape="\\"),
        ))
    return statement, other


# --- CSV -------------------------------------------------------------------------------

def neutralise(cell: object) -> str:
    """A cell as text a spreadsheet will not run: formula-looking text gets a leading quote.

    A plain number such as ``-468.00`` is left alone: it runs nothing, and quoted it would
    be read as text, so a column of amounts would no longer add up.
    """
    text = "" if cell is None else str(cell)
    if text.startswith(FORMULA_PREFIXES) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_rows(user: User, filters: HistoryFilters) -> Iterable[list[str]]:
    """The header, then one row per session with times on the viewer's clock.

    Read as plain columns, not sessions: an export is every matching session, thousands
    for a busy coach, and building an object per row cost most of the time.
    """
    statement, other = _matching(user, filters)
    rows = db.session.execute(statement.with_only_columns(
        Session.starts_at, Session.ends_at, Session.number, Contract.title, other.name,
        Session.status, Session.late).order_by(*NEWEST_FIRST))
    tz_name = user.timezone
    yield list(CSV_HEADER)
    for starts_at, ends_at, number, title, other_name, status, late in rows:
        student, coach = (other_name, user.name) if user.is_coach else (user.name, other_name)
        start, end = localize(starts_at, tz_name), localize(ends_at, tz_name)
        yield [neutralise(cell) for cell in (
            start.date().isoformat(), start.strftime("%H:%M"), end.strftime("%H:%M"), tz_name,
            number, title, student, coach, status, "yes" if late else "no",
            int((ends_at - starts_at).total_seconds() // 60))]


def export_csv(user: User, filters: HistoryFilters) -> str:
    """Every session matching ``filters`` (not one page) as a CSV document."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(csv_rows(user, filters))
    return buffer.getvalue()


# --- statistics ------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    """A share with its parts kept, so the page can say "3 of 4" and not just "75%"."""

    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    @property
    def percent(self) -> str:
        """'75%', or '—' when there is nothing to divide by (0 of 0 is not 0%)."""
        value = self.value
        return "—" if value is None else f"{round(100 * value)}%"


@dataclass(frozen=True)
class SessionStatistics:
    role: str
    sessions: int  # booked sessions (paid holds; unpaid, expired holds are left out)
    upcoming: int
    completed: int
    cancelled: int
    missed: int
    completion: Rate
    reschedule: Rate
    no_show: Rate
    late_cancellation: Rate
    # Completed sessions that recorded both a start and an end: the only ones whose
    # actual length is known. Both averages are over these, so they compare like for like.
    measured: int
    average_actual_minutes: float | None
    average_planned_minutes: float | None


def _seconds_between(start: ColumnElement, end: ColumnElement) -> ColumnElement:
    """``end - start`` in seconds, in the dialect at hand (SQLite keeps datetimes as text)."""
    if db.session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


def _count(condition: ColumnElement) -> ColumnElement:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def statistics_for(user: User) -> SessionStatistics:
    """One user's record in the role they hold, computed in a single aggregate query.

    - completion: completed / (completed + missed + cancelled) — sessions whose outcome
      is settled; upcoming and running ones are not counted yet.
    - reschedule: booked sessions with at least one reschedule request / booked sessions.
    - no-show: sessions missed by this person (``missed_by`` is their role, or
      ``unattended``, which counts against both) / booked sessions whose start has passed
      and that were not cancelled (nobody is expected at a cancelled session).
    - late cancellation: sessions this person cancelled late / booked sessions whose start
      has passed or that were cancelled.
    """
    role = "coach" if user.role == "coach" else "student"
    mine = (Session.coach_id if role == "coach" else Session.student_id) == user.id
    now = clock.now()
    started = Session.starts_at <= now
    status = Session.status
    rescheduled = exists().where(RescheduleRequest.session_id == Session.id)
    measurable = and_(status == "completed", Session.started_at.is_not(None),
                      Session.completed_at.is_not(None))
    row = db.session.execute(
        select(
            func.count(),
            _count(status.in_(lifecycle.MEETING_ON)),
            _count(status == "completed"),
            _count(status == "cancelled"),
            _count(status == "missed"),
            _count(rescheduled),
            _count(and_(status == "missed", Session.missed_by.in_((role, "unattended")))),
            _count(and_(started, status != "cancelled")),
            _count(and_(status == "cancelled", Session.cancelled_by_id == user.id,
                        Session.late.is_(True))),
            _count(or_(started, status == "cancelled")),
            _count(measurable),
            func.avg(case((measurable, _seconds_between(Session.started_at,
                                                        Session.completed_at)))),
            func.avg(case((measurable, _seconds_between(Session.starts_at, Session.ends_at)))),
        ).select_from(Session).where(mine, status.in_(BOOKED_STATUSES))
    ).one()
    (total, upcoming, completed, cancelled, missed, rescheduled_count, missed_by_me,
     past_not_cancelled, late_by_me, past_or_cancelled, measured, actual, planned) = row
    settled = completed + missed + cancelled
    return SessionStatistics(
        role=role, sessions=total, upcoming=upcoming, completed=completed,
        cancelled=cancelled, missed=missed,
        completion=Rate(completed, settled),
        reschedule=Rate(rescheduled_count, total),
        no_show=Rate(missed_by_me, past_not_cancelled),
        late_cancellation=Rate(late_by_me, past_or_cancelled),
        measured=measured,
        average_actual_minutes=None if actual is None else float(actual) / 60,
        average_planned_minutes=None if planned is None else float(planned) / 60,
    )

