"""What the money overview reads: every figure from the ledger, in a fixed few grouped queries.

The admin's money page answers "how much is where, and why" without loading a row per
payment: balances, months and coaches are ``GROUP BY`` aggregates, so a page costs the
same handful of statements whatever the books hold. Each figure has a filter for the
ledger entries behind it (``EntryFilters``), so a number always leads to the rows that
add up to it.

Balances are per account of ``ACCOUNTS`` (a new account shows up without a change here).
Months are the admin's own calendar months: their boundaries are computed in the
viewer's zone and compared in SQL, which works the same on SQLite and PostgreSQL.

Nothing here writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, exists, func, select
from sqlalchemy.orm import joinedload

from skileez.auth.models import User
from skileez.coaches.models import CoachProfile
from skileez.core.timezones import localize, zone
from skileez.extensions import db
from skileez.payments.models import (
    ACCOUNTS,
    Dispute,
    LedgerEntry,
    LedgerTransaction,
    Payment,
    Payout,
    Refund,
)

#: "Releasing soon" windows, by the name the payments list filter takes.
RELEASE_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
#: Revenue by month goes back this many calendar months, this one included.
MONTHS_SHOWN = 12
#: Failed transfers listed on the page (newest first); the rest are one click away.
FAILED_SHOWN = 20
DISPUTE_SOURCES = {"student": "Disputes opened by students",
                   "stripe": "Chargebacks (card disputes)"}
# Payout states that leave money in the coach's payable balance ("paid" moved it out).
UNPAID_PAYOUTS = ("pending", "failed", "payable", "reversed")
MONTH_KEY = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


def _int(value: Any) -> int:
    # PostgreSQL's SUM(bigint) is NUMERIC (a Decimal); money stays int.
    return int(value or 0)


# --- balances ---------------------------------------------------------------------------

def account_balances() -> dict[str, dict[str, int]]:
    """``{account: {currency: balance}}`` for every account of ``ACCOUNTS``, in one query.

    An account with no entries is there with no currencies, so the page names it.
    """
    balances: dict[str, dict[str, int]] = {account: {} for account in ACCOUNTS}
    rows = db.session.execute(
        select(LedgerEntry.account, LedgerEntry.currency, func.sum(LedgerEntry.amount_minor))
        .group_by(LedgerEntry.account, LedgerEntry.currency)
        .order_by(LedgerEntry.account, LedgerEntry.currency))
    for account, currency, total in rows:
        balances.setdefault(account, {})[currency] = _int(total)
    return balances


# --- releasing soon ---------------------------------------------------------------------

def releasing_within(now: datetime, window: timedelta) -> list[Any]:
    """Conditions for the held payments the sweep will release by ``now + window``.

    The sweep's own rule (``deadlines.release_escrow``): in undisputed escrow, a release
    time set, no open dispute. Payments already due are in every window: the next sweep
    releases them.
    """
    return [Payment.status.in_(Payment.UNDISPUTED_ESCROW_STATES),
            Payment.release_at.is_not(None), Payment.release_at <= now + window,
            ~exists().where(Dispute.payment_id == Payment.id, Dispute.status == "open")]


def releasing_soon(now: datetime) -> dict[str, dict[str, tuple[int, int]]]:
    """``{window: {currency: (payments, amount)}}`` for each of ``RELEASE_WINDOWS``.

    The amount is what escrow still holds for those payments (after partial refunds),
    which is what releasing moves. One query for every window.
    """
    widest = max(RELEASE_WINDOWS.values())
    held = Payment.amount_minor - Payment.refunded_minor
    columns = []
    for window in RELEASE_WINDOWS.values():
        due = Payment.release_at <= now + window
        columns += [func.count(case((due, Payment.id))),
                    func.coalesce(func.sum(case((due, held), else_=0)), 0)]
    rows = db.session.execute(select(Payment.currency, *columns)
                              .where(*releasing_within(now, widest))
                              .group_by(Payment.currency).order_by(Payment.currency))
    result: dict[str, dict[str, tuple[int, int]]] = {name: {} for name in RELEASE_WINDOWS}
    for currency, *figures in rows:
        for index, name in enumerate(RELEASE_WINDOWS):
            count, amount = figures[2 * index], figures[2 * index + 1]
            if count:
                result[name][currency] = (int(count), _int(amount))
    return result


# --- months ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Month:
    key: str            # "2026-03": what the entries filter takes
    label: str          # "Mar 2026": what the page shows
    start: datetime     # UTC instant of the first midnight of the month in the viewer's zone
    end: datetime       # UTC instant the next month starts


def months(now: datetime, tz_name: str | None, count: int = MONTHS_SHOWN) -> list[Month]:
    """The last ``count`` calendar months in the viewer's zone, this one first."""
    local = localize(now, tz_name)
    year, month = local.year, local.month
    result = []
    for _ in range(count):
        result.append(month_of(year, month, tz_name))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return result


def month_of(year: int, month: int, tz_name: str | None) -> Month:
    tz = zone(tz_name)
    start = datetime(year, month, 1, tzinfo=tz)
    following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
    return Month(f"{year:04d}-{month:02d}", start.strftime("%b %Y"),
                 start.astimezone(UTC), following.astimezone(UTC))


def parse_month(key: str, tz_name: str | None) -> Month | None:
    """``"2026-03"`` as a month in the viewer's zone; None for anything else."""
    match = MONTH_KEY.fullmatch(key or "")
    if not match or not 2000 <= int(match.group(1)) <= 9998:
        return None
    return month_of(int(match.group(1)), int(match.group(2)), tz_name)


def monthly(accounts: tuple[str, ...], shown: list[Month]) -> dict[str, dict[str, dict[str, int]]]:
    """``{account: {month key: {currency: amount}}}``: what arrived in each account each
    month (by when its transaction was posted), for the months ``shown``. One query.

    The month is a CASE over the months' boundaries, so the grouping is the viewer's
    calendar on SQLite and PostgreSQL alike; it is grouped in an outer query because
    PostgreSQL does not treat two renderings of one expression with parameters as equal.
    """
    T, E = LedgerTransaction, LedgerEntry
    bucket = case(*[(T.created_at >= month.start, month.key) for month in shown])
    posted = (select(E.account, E.currency, E.amount_minor, bucket.label("month"))
              .join(T, T.id == E.transaction_id)
              .where(E.account.in_(accounts), T.created_at >= shown[-1].start,
                     T.created_at < shown[0].end)
              .subquery())
    rows = db.session.execute(
        select(posted.c.account, posted.c.month, posted.c.currency,
               func.sum(posted.c.amount_minor))
        .group_by(posted.c.account, posted.c.month, posted.c.currency))
    result: dict[str, dict[str, dict[str, int]]] = {account: {} for account in accounts}
    for account, key, currency, total in rows:
        result[account].setdefault(key, {})[currency] = _int(total)
    return result


# --- disputes -------------------------------------------------------------------------

def open_disputes() -> dict[str, dict[str, tuple[int, int]]]:
    """``{source: {currency: (disputes, amount in escrow)}}`` of the open disputes: the
    student's and the card network's (chargebacks). One query."""
    rows = db.session.execute(
        select(Dispute.source, Payment.currency, func.count(Dispute.id),
               func.sum(Payment.amount_minor - Payment.refunded_minor))
        .join(Payment, Payment.id == Dispute.payment_id)
        .where(Dispute.status == "open")
        .group_by(Dispute.source, Payment.currency).order_by(Dispute.source, Payment.currency))
    result: dict[str, dict[str, tuple[int, int]]] = {source: {} for source in DISPUTE_SOURCES}
    for source, currency, count, amount in rows:
        result.setdefault(source, {})[currency] = (int(count), _int(amount))
    return result


# --- what coaches are owed ------------------------------------------------------------

def payables_statement() -> Select:
    """Each coach's non-zero ``coach_payable`` balance per currency, with what their
    payout rows and profile say about why it has not been transferred. Biggest first.

    One statement: the balances grouped in a subquery, each coach's payouts counted in
    another, the newest failure's error read by a correlated lookup on the coach's index.
    """
    E = LedgerEntry
    total = func.sum(E.amount_minor)
    owed = (select(E.coach_id.label("coach_id"), E.currency.label("currency"),
                   total.label("balance"))
            .where(E.account == "coach_payable").group_by(E.coach_id, E.currency)
            .having(total != 0).subquery())

    def counted(status: str):
        return func.count(case((Payout.status == status, Payout.id)))

    retrying = Payout.status.in_(("failed", "pending"))
    payouts = (select(Payout.coach_id.label("coach_id"),
                      counted("failed").label("failed"), counted("pending").label("pending"),
                      counted("payable").label("payable"),
                      counted("reversed").label("reversed"),
                      func.min(case((retrying, Payout.next_attempt_at))).label("next_attempt"))
               .where(Payout.status.in_(UNPAID_PAYOUTS))
               .group_by(Payout.coach_id).subquery())
    last_error = (select(Payout.last_error)
                  .where(Payout.coach_id == owed.c.coach_id, Payout.status == "failed")
                  .order_by(Payout.updated_at.desc(), Payout.id.desc()).limit(1)
                  .correlate(owed).scalar_subquery())
    return (select(owed.c.coach_id, User.name, owed.c.currency, owed.c.balance,
                   CoachProfile.stripe_account_id, CoachProfile.payouts_enabled,
                   func.coalesce(payouts.c.failed, 0).label("failed"),
                   func.coalesce(payouts.c.pending, 0).label("pending"),
                   func.coalesce(payouts.c.payable, 0).label("payable"),
                   func.coalesce(payouts.c.reversed, 0).label("reversed"),
                   payouts.c.next_attempt, last_error.label("last_error"))
            .join(User, User.id == owed.c.coach_id)
            .outerjoin(CoachProfile, CoachProfile.user_id == owed.c.coach_id)
            .outerjoin(payouts, payouts.c.coach_id == owed.c.coach_id)
            .order_by(owed.c.balance.desc(), owed.c.coach_id, owed.c.currency))


@dataclass(frozen=True)
class Payable:
    """One coach's balance in one currency, and why it is still here."""

    coach_id: int
    coach_name: str
    currency: str
    balance_minor: int
    reason: str           # the sentence an admin reads
    when: datetime | None  # the next attempt the reason speaks of, if any


def payable(row) -> Payable:
    """The reason a balance waits, from the coach's profile and payout rows.

    The first that applies: nothing to transfer to (no connected account, or Stripe's
    onboarding not finished), a failed transfer (with its error and the retry time), a
    transfer queued, a reversed transfer, a payable balance waiting for the sweep.
    """
    when = None
    if row.balance < 0:
        reason = "Below zero: a card dispute took back money already transferred to the " \
                 "coach, until the transfer reversal succeeds (any other cause the ledger " \
                 "check lists)."
    elif not row.stripe_account_id:
        reason = "No connected Stripe account: the coach has not set up payouts yet."
    elif not row.payouts_enabled:
        reason = "Stripe onboarding unfinished: Stripe does not accept transfers to the " \
                 "coach's account yet."
    elif row.failed:
        reason = f"Transfer failed: {row.last_error or 'no error was recorded'}"
        reason += "; retried automatically" if row.next_attempt else "; not retried"
        when = row.next_attempt
    elif row.pending:
        reason, when = "Transfer queued", row.next_attempt
    elif row.reversed and not row.payable:
        reason = "A transfer was reversed; the money is owed to the coach again and waits " \
                 "for an admin."
    else:
        reason = "Payable: the account is ready now, so the next payout sweep transfers it."
    return Payable(row.coach_id, row.name, row.currency, _int(row.balance), reason, when)


def failed_payouts(limit: int = FAILED_SHOWN) -> list[Payout]:
    """The newest failed transfers with their coaches (``limit`` + 1 read, to say "more")."""
    return list(db.session.scalars(
        select(Payout).where(Payout.status == "failed").options(joinedload(Payout.coach))
        .order_by(Payout.updated_at.desc(), Payout.id.desc()).limit(limit + 1)))


# --- the entries behind a figure --------------------------------------------------------

@dataclass(frozen=True)
class EntryFilters:
    """Which ledger entries to list; every field optional, unknown values ignored."""

    account: str = ""
    currency: str = ""
    coach_id: int | None = None
    month: Month | None = None

    def args(self) -> dict[str, str]:
        """The filters as query-string arguments (for links and the CSV)."""
        values = {"account": self.account, "currency": self.currency,
                  "coach": str(self.coach_id) if self.coach_id else "",
                  "month": self.month.key if self.month else ""}
        return {name: value for name, value in values.items() if value}


def parse_entry_filters(args, tz_name: str | None) -> EntryFilters:
    """The filters from a query string; anything malformed is dropped, never a 500."""
    account = args.get("account") or ""
    currency = (args.get("currency") or "")[:3]
    coach = args.get("coach") or ""
    return EntryFilters(
        account=account if account in ACCOUNTS else "",
        currency=currency if currency.isascii() and currency.isalpha() else "",
        coach_id=int(coach) if coach.isascii() and coach.isdigit() and 0 < int(coach) < 2**31
        else None,
        month=parse_month(args.get("month") or "", tz_name))


def _entries_where(filters: EntryFilters) -> list[Any]:
    E, T = LedgerEntry, LedgerTransaction
    conditions = []
    if filters.account:
        conditions.append(E.account == filters.account)
    if filters.currency:
        conditions.append(E.currency == filters.currency.upper())
    if filters.coach_id:
        conditions.append(E.coach_id == filters.coach_id)
    if filters.month:
        conditions += [T.created_at >= filters.month.start, T.created_at < filters.month.end]
    return conditions


def entries_statement(filters: EntryFilters) -> Select:
    """The entries matching ``filters``, newest first, as plain columns: what each one
    is, when it was posted, whose it is and the payment it belongs to (directly, or
    through its payout or refund)."""
    E, T = LedgerEntry, LedgerTransaction
    return (select(E.id, E.transaction_id, T.kind, T.created_at, E.account, E.currency,
                   E.amount_minor, E.coach_id, User.name.label("coach_name"),
                   func.coalesce(T.payment_id, Payout.payment_id,
                                 Refund.payment_id).label("payment_id"),
                   T.payout_id, T.refund_id, T.memo)
            .join(T, T.id == E.transaction_id)
            .outerjoin(User, User.id == E.coach_id)
            .outerjoin(Payout, Payout.id == T.payout_id)
            .outerjoin(Refund, Refund.id == T.refund_id)
            .where(*_entries_where(filters))
            # Entries are written with their transaction and never changed, so their ids
            # are posting order: newest first is the primary key backwards, no sort.
            .order_by(E.id.desc()))


def entries_totals(filters: EntryFilters) -> dict[str, int]:
    """``{currency: sum}`` of the entries matching ``filters``: the figure they make."""
    E, T = LedgerEntry, LedgerTransaction
    statement = select(E.currency, func.sum(E.amount_minor)).where(*_entries_where(filters))
    if filters.month:
        statement = statement.join(T, T.id == E.transaction_id)
    return {currency: _int(total) for currency, total in db.session.execute(
        statement.group_by(E.currency).order_by(E.currency))}
