"""The admin money overview: where the money is, what leaves soon, who is owed what and why.

Every figure is read from the ledger (``payments.overview``) and links to the ledger
entries that make it (``/admin/money/entries``), or to the payments and disputes behind
it. The page and its CSV export are built from the same figures, so the file says what
the page said. Exports stream: the per-coach balances and the entries are written as
they are read, never loaded whole.
"""

from __future__ import annotations

import base64
import csv
import io
import re
from collections.abc import Iterable, Iterator

import pygal
from flask import Response, current_app, render_template, request, stream_with_context
from flask_login import current_user
from pygal.style import Style

from skileez import clock
from skileez.admin.routes import bp
from skileez.core.money import to_decimal
from skileez.core.pagination import paginate_rows
from skileez.core.timezones import format_local, localize
from skileez.extensions import db
from skileez.payments import overview, reconciliation
from skileez.payments.models import ACCOUNTS
from skileez.sessions.history import neutralise

ACCOUNT_LABELS = {account: account.replace("_", " ").capitalize() for account in ACCOUNTS}
# Read this many rows at a time when an export streams a long list.
STREAM_BATCH = 500
# The app's colours, big enough labels to read when the chart shrinks to a phone's width.
CHART_STYLE = Style(background="transparent", plot_background="transparent",
                    foreground="#1f2433", foreground_strong="#1f2433",
                    foreground_subtle="#6b7185", colors=("#3b4cca", "#e07a2f", "#2a9d6f"),
                    label_font_size=17, major_label_font_size=17, legend_font_size=17,
                    font_family="system-ui, sans-serif")
SCRIPT = re.compile(r"<script\b[^>]*(/>|>.*?</script>)", re.S)
CSV_HEADER = ("section", "item", "currency", "amount", "count", "detail")
ENTRIES_CSV_HEADER = ("entry", "transaction", "date", "time", "time zone", "kind", "account",
                      "coach", "currency", "amount", "payment", "memo")


def _figures() -> dict:
    """Everything the page and the CSV state, except the per-coach list (paginated on the
    page, streamed in the file): a fixed handful of grouped queries."""
    now = clock.now()
    tz_name = current_user.timezone
    shown = overview.months(now, tz_name)
    monthly = overview.monthly(("platform_revenue", "refunds"), shown)
    failed = overview.failed_payouts()
    return {
        "now": now, "tz_name": tz_name, "months": shown,
        "balances": overview.account_balances(),
        "releasing": overview.releasing_soon(now),
        "revenue": monthly["platform_revenue"],
        "refunds_this_month": monthly["refunds"].get(shown[0].key, {}),
        "disputes": overview.open_disputes(),
        "failed": failed[:overview.FAILED_SHOWN],
        "more_failed": len(failed) > overview.FAILED_SHOWN,
    }


def _revenue_chart(shown: list[overview.Month], revenue: dict) -> str | None:
    """The revenue bars as an SVG data URI (no script: pygal's is taken out), or None
    when there is no revenue to draw. The table beside it carries the exact numbers."""
    currencies = sorted({currency for per_month in revenue.values() for currency in per_month})
    if not currencies:
        return None
    oldest_first = list(reversed(shown))
    chart = pygal.Bar(js=[], style=CHART_STYLE, width=640, height=340,
                      show_legend=len(currencies) > 1, legend_at_bottom=True,
                      y_title=currencies[0] if len(currencies) == 1 else None,
                      x_label_rotation=45, margin=12, print_values=False)
    chart.x_labels = [month.label for month in oldest_first]
    for currency in currencies:
        chart.add(currency, [float(to_decimal(revenue.get(month.key, {}).get(currency, 0),
                                              currency)) for month in oldest_first])
    # pygal always embeds its configuration as a script; an image needs none of it.
    svg = SCRIPT.sub("", chart.render(is_unicode=True))
    return "data:image/svg+xml;charset=utf-8;base64," + base64.b64encode(svg.encode()).decode()


@bp.get("/money")
def money():
    figures = _figures()
    payables = paginate_rows(overview.payables_statement(),
                             per_page=current_app.config["PER_PAGE"])
    return render_template(
        "admin/money.html", **figures, account_labels=ACCOUNT_LABELS,
        windows=overview.RELEASE_WINDOWS, sources=overview.DISPUTE_SOURCES,
        payables=payables, owed=[overview.payable(row) for row in payables.items],
        # Differences with Stripe belong with the figures they would contradict.
        reconciliation=reconciliation.reconciliation_state(),
        chart=_revenue_chart(figures["months"], figures["revenue"]))


def _amount(minor: int, currency: str) -> str:
    return f"{to_decimal(minor, currency):f}"


def _money_rows(figures: dict) -> Iterator[list]:
    """The page's figures as CSV rows, then every coach's balance (streamed)."""
    yield list(CSV_HEADER)
    for account, per_currency in figures["balances"].items():
        for currency, amount in per_currency.items():
            yield ["balance", account, currency, _amount(amount, currency), "", ""]
    for name, per_currency in figures["releasing"].items():
        for currency, (count, amount) in per_currency.items():
            yield ["releasing", f"within {name}", currency, _amount(amount, currency), count, ""]
    for month in figures["months"]:
        for currency, amount in sorted(figures["revenue"].get(month.key, {}).items()):
            yield ["revenue", month.key, currency, _amount(amount, currency), "", ""]
    for currency, amount in sorted(figures["refunds_this_month"].items()):
        yield ["refunds", f"this month ({figures['months'][0].key})", currency,
               _amount(amount, currency), "", ""]
    for currency, amount in figures["balances"].get("refunds", {}).items():
        yield ["refunds", "total", currency, _amount(amount, currency), "", ""]
    for source, per_currency in figures["disputes"].items():
        for currency, (count, amount) in per_currency.items():
            yield ["open disputes", "chargebacks" if source == "stripe" else source, currency,
                   _amount(amount, currency), count, "in escrow"]
    for payout in figures["failed"]:
        yield ["failed transfer", f"payout {payout.id} (payment {payout.payment_id})",
               payout.currency, _amount(payout.amount_minor, payout.currency), payout.attempts,
               payout.last_error or ""]
    tz_name = figures["tz_name"]
    rows = db.session.execute(overview.payables_statement()
                              .execution_options(yield_per=STREAM_BATCH))
    for row in rows:
        owed = overview.payable(row)
        detail = owed.reason
        if owed.when:
            detail += f" (next attempt {format_local(owed.when, tz_name)})"
        yield ["payable", f"{owed.coach_name} (coach {owed.coach_id})", owed.currency,
               _amount(owed.balance_minor, owed.currency), "", detail]


def _streamed_csv(rows: Iterable[list], filename: str) -> Response:
    """``rows`` written out as they come, each cell neutralised against spreadsheet
    formulas (the sessions export's rule)."""
    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        for row in rows:
            writer.writerow([neutralise(cell) for cell in row])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    return Response(stream_with_context(generate()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})


@bp.get("/money.csv")
def money_csv():
    return _streamed_csv(_money_rows(_figures()), "skileez-money.csv")


@bp.get("/money/entries")
def money_entries():
    """The ledger entries behind a figure, newest first, with the sum they make."""
    filters = overview.parse_entry_filters(request.args, current_user.timezone)
    page = paginate_rows(overview.entries_statement(filters),
                         per_page=current_app.config["PER_PAGE"])
    return render_template("admin/money_entries.html", page=page, filters=filters,
                           totals=overview.entries_totals(filters),
                           account_labels=ACCOUNT_LABELS, accounts=ACCOUNTS)


def _entry_rows(filters: overview.EntryFilters, tz_name: str) -> Iterator[list]:
    yield list(ENTRIES_CSV_HEADER)
    rows = db.session.execute(overview.entries_statement(filters)
                              .execution_options(yield_per=STREAM_BATCH))
    for row in rows:
        posted = localize(row.created_at, tz_name)
        yield [row.id, row.transaction_id, posted.date().isoformat(), posted.strftime("%H:%M"),
               tz_name, row.kind, row.account,
               row.coach_name or "", row.currency, _amount(row.amount_minor, row.currency),
               row.payment_id or "", row.memo]


@bp.get("/money/entries.csv")
def money_entries_csv():
    filters = overview.parse_entry_filters(request.args, current_user.timezone)
    return _streamed_csv(_entry_rows(filters, current_user.timezone),
                         "skileez-ledger-entries.csv")
