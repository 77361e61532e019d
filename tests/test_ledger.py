"""The escrow ledger: balanced postings, immutable rows, invariants that catch corruption.

Statuses are set directly on the ORM objects here: the state machine that moves
payments and payouts lives elsewhere; these tests are about the books.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, delete, func, select, text, update

from skileez import clock
from skileez.core.money import share
from skileez.core.types import UTCDateTime
from skileez.extensions import db
from skileez.payments import ledger
from skileez.payments.ledger import Line
from skileez.payments.models import (
    ACCOUNTS,
    LedgerEntry,
    LedgerTransaction,
    Payment,
    Payout,
    Refund,
)
from skileez.sessions.models import Session

FEE = Decimal("0.10")
BASE_TIME = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


# --- set-up ------------------------------------------------------------------------

@pytest.fixture
def people(app, make_user, make_offering, make_contract):
    """Two coaches, one student, a contract with each coach (committed once per test)."""
    coach = make_user("coach")
    other_coach = make_user("coach")
    student = make_user("student")
    contract = make_contract(student, make_offering(coach))
    other_contract = make_contract(student, make_offering(other_coach))
    return SimpleNamespace(coach=coach, other_coach=other_coach, student=student,
                           contract=contract, other_contract=other_contract)


_slot = itertools.count()


def new_payment(people, amount: int, currency: str = "EUR", *, other: bool = False,
                status: str = "pending") -> Payment:
    """A session and its (pending) payment, written with the ORM; needs an app context."""
    contract = people.other_contract if other else people.contract
    n = next(_slot)
    starts = BASE_TIME + timedelta(hours=2 * n)  # never overlapping (PostgreSQL excludes it)
    session = Session(contract_id=contract.id, number=n + 1, coach_id=contract.coach_id,
                      student_id=contract.student_id, starts_at=starts,
                      ends_at=starts + timedelta(hours=1),
                      coach_block_end=starts + timedelta(hours=1), status="scheduled")
    db.session.add(session)
    db.session.flush()
    fee = share(amount, FEE)
    payment = Payment(session_id=session.id, student_id=contract.student_id,
                      coach_id=contract.coach_id, amount_minor=amount, currency=currency,
                      fee_minor=fee, coach_net_minor=amount - fee, refunded_minor=0,
                      status=status, gateway="test")
    db.session.add(payment)
    db.session.flush()
    return payment


def hold(payment: Payment) -> LedgerTransaction:
    payment.status = "held"
    return ledger.post_payment_held(payment)


def refund(payment: Payment, amount: int) -> LedgerTransaction:
    row = Refund(payment_id=payment.id, amount_minor=amount, currency=payment.currency,
                 reason="test", status="succeeded")
    db.session.add(row)
    payment.refunded_minor += amount
    payment.status = "refunded" if payment.remaining_minor == 0 else "partially_refunded"
    return ledger.post_refund(row)


def release(payment: Payment) -> tuple[LedgerTransaction, Payout]:
    """Release what is left with a 10% fee; the coach's share becomes a pending payout."""
    remaining = payment.remaining_minor
    fee = share(remaining, FEE)
    payment.status = "released"
    transaction = ledger.post_release(payment, fee_minor=fee, net_minor=remaining - fee)
    payout = Payout(payment_id=payment.id, coach_id=payment.coach_id,
                    amount_minor=remaining - fee, currency=payment.currency, status="pending")
    db.session.add(payout)
    db.session.flush()
    return transaction, payout


def pay(payout: Payout) -> LedgerTransaction:
    payout.status = "paid"
    return ledger.post_payout(payout)


def reverse(payout: Payout) -> LedgerTransaction:
    payout.status = "reversed"
    return ledger.post_payout_reversal(payout, reason="bank returned the transfer")


def snapshot(currency: str, coach_id: int) -> dict[str, int]:
    """Every account's balance in ``currency``, plus the coach's own share of theirs."""
    balances = {account: ledger.balance(account, currency=currency) for account in ACCOUNTS}
    for account in ("coach_payable", "paid_out"):
        balances[f"coach:{account}"] = ledger.balance(account, currency=currency,
                                                      coach_id=coach_id)
    return balances


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before if after[k] != before[k]}


def total_per_currency() -> dict[str, int]:
    rows = db.session.execute(select(LedgerEntry.currency, func.sum(LedgerEntry.amount_minor))
                              .group_by(LedgerEntry.currency))
    return {currency: int(amount) for currency, amount in rows}


def assert_balanced(transaction: LedgerTransaction) -> None:
    sums: dict[str, int] = defaultdict(int)
    for entry in transaction.entries:
        sums[entry.currency] += entry.amount_minor
    assert transaction.entries and all(v == 0 for v in sums.values()), sums


def ledger_row_counts() -> tuple[int, int]:
    return (db.session.scalar(text("SELECT COUNT(*) FROM ledger_transactions")),
            db.session.scalar(text("SELECT COUNT(*) FROM ledger_entries")))


# --- each posting ---------------------------------------------------------------------

def test_each_posting_balances_and_moves_the_right_accounts(app, people):
    with app.app_context():
        coach_id = people.coach.id
        payment = new_payment(people, 10_000)

        before = snapshot("EUR", coach_id)
        held = hold(payment)
        assert moved(before, snapshot("EUR", coach_id)) == {"student_funding": -10_000,
                                                            "escrow": 10_000}

        before = snapshot("EUR", coach_id)
        refunded = refund(payment, 2_500)
        assert moved(before, snapshot("EUR", coach_id)) == {"escrow": -2_500, "refunds": 2_500}
        assert refunded.refund_id is not None and refunded.payment_id == payment.id

        before = snapshot("EUR", coach_id)
        released, payout = release(payment)  # 7,500 left: fee 750, net 6,750
        assert moved(before, snapshot("EUR", coach_id)) == {
            "escrow": -7_500, "coach_payable": 6_750, "coach:coach_payable": 6_750,
            "platform_revenue": 750}

        before = snapshot("EUR", coach_id)
        paid = pay(payout)
        assert moved(before, snapshot("EUR", coach_id)) == {
            "coach_payable": -6_750, "coach:coach_payable": -6_750,
            "paid_out": 6_750, "coach:paid_out": 6_750}

        before = snapshot("EUR", coach_id)
        reversed_ = reverse(payout)
        assert moved(before, snapshot("EUR", coach_id)) == {
            "coach_payable": 6_750, "coach:coach_payable": 6_750,
            "paid_out": -6_750, "coach:paid_out": -6_750}
        assert reversed_.memo == "bank returned the transfer"

        kinds = [(held, "payment_held"), (refunded, "refund"), (released, "release"),
                 (paid, "payout"), (reversed_, "payout_reversal")]
        for transaction, kind in kinds:
            assert transaction.kind == kind
            assert_balanced(transaction)
        assert held.payment_id == released.payment_id == payment.id
        assert paid.payout_id == reversed_.payout_id == payout.id
        for entry in released.entries + paid.entries + reversed_.entries:
            if entry.account in ("coach_payable", "paid_out"):
                assert entry.coach_id == coach_id
        # The other coach's balances never moved.
        assert ledger.coach_balances(people.other_coach.id) == {}
        assert ledger.coach_balances(coach_id) == {
            "EUR": {"coach_payable": 6_750, "paid_out": 0}}
        assert total_per_currency() == {"EUR": 0}


def test_release_without_fee_leaves_out_the_zero_line(app, people):
    with app.app_context():
        payment = new_payment(people, 5)
        hold(payment)
        transaction, _ = release(payment)  # share(5, 10%) = 0.5 -> 0 (half-even)
        assert sorted((e.account, e.amount_minor) for e in transaction.entries) == [
            ("coach_payable", 5), ("escrow", -5)]
        assert ledger.check_invariants() == []


def test_full_life_cycle_keeps_the_invariants_at_every_step(app, people):
    with app.app_context():
        assert ledger.check_invariants() == []
        payment = new_payment(people, 8_000)
        untouched = new_payment(people, 3_000, other=True)  # stays pending throughout
        db.session.commit()
        assert ledger.check_invariants() == []

        hold(payment)
        db.session.commit()
        assert ledger.check_invariants() == []
        assert ledger.balance("escrow", currency="EUR") == 8_000

        refund(payment, 1_000)
        db.session.commit()
        assert ledger.check_invariants() == []
        assert payment.status == "partially_refunded"

        payment.status = "disputed"
        db.session.commit()
        assert ledger.check_invariants() == []

        _, payout = release(payment)
        db.session.commit()
        assert ledger.check_invariants() == []
        assert ledger.balance("escrow", currency="EUR") == 0

        pay(payout)
        db.session.commit()
        assert ledger.check_invariants() == []

        reverse(payout)
        db.session.commit()
        assert ledger.check_invariants() == []
        assert ledger.coach_balances(people.coach.id) == {
            "EUR": {"coach_payable": 6_300, "paid_out": 0}}
        assert untouched.status == "pending"
        assert total_per_currency() == {"EUR": 0}


def test_full_refund_empties_escrow(app, people):
    with app.app_context():
        payment = new_payment(people, 4_000)
        hold(payment)
        refund(payment, 1_500)
        refund(payment, 2_500)
        assert payment.status == "refunded"
        assert ledger.balance("escrow", currency="EUR") == 0
        assert ledger.balance("refunds", currency="EUR") == 4_000
        assert ledger.check_invariants() == []


def test_currencies_stay_separate(app, people):
    with app.app_context():
        eur = new_payment(people, 5_000, "EUR")
        jpy = new_payment(people, 6_000, "JPY")
        hold(eur)
        hold(jpy)
        assert ledger.balance("escrow", currency="EUR") == 5_000
        assert ledger.balance("escrow", currency="JPY") == 6_000

        _, eur_payout = release(eur)  # fee 500, net 4,500
        assert ledger.balance("escrow", currency="EUR") == 0
        assert ledger.balance("escrow", currency="JPY") == 6_000
        refund(jpy, 1_000)
        _, jpy_payout = release(jpy)  # 5,000 left: fee 500, net 4,500
        pay(jpy_payout)

        assert ledger.coach_balances(people.coach.id) == {
            "EUR": {"coach_payable": 4_500, "paid_out": 0},
            "JPY": {"coach_payable": 0, "paid_out": 4_500},
        }
        assert ledger.balance("platform_revenue", currency="EUR") == 500
        assert ledger.balance("platform_revenue", currency="JPY") == 500
        assert ledger.balance("refunds", currency="EUR") == 0
        assert ledger.balance("refunds", currency="JPY") == 1_000
        assert ledger.balance("escrow", currency="USD") == 0
        assert total_per_currency() == {"EUR": 0, "JPY": 0}
        assert eur_payout.status == "pending"
        assert ledger.check_invariants() == []


def test_balance_refuses_an_unknown_account(app):
    with app.app_context(), pytest.raises(ValueError, match="Unknown ledger account"):
        ledger.balance("pocket", currency="EUR")


# --- refusals ----------------------------------------------------------------------

@pytest.mark.parametrize(("lines", "message"), [
    ([Line("student_funding", -100, "EUR"), Line("escrow", 99, "EUR")], "sum to -1"),
    ([Line("escrow", 100, "EUR")], "sum to 100"),
    ([], "at least one non-zero entry"),
    ([Line("escrow", 0, "EUR"), Line("refunds", 0, "EUR")], "at least one non-zero entry"),
    ([Line("escrow", -100, "EUR"), Line("pocket", 100, "EUR")], "Unknown ledger account"),
    ([Line("escrow", -100, "EUR"), Line("refunds", 100, "JPY")], "one currency"),
    ([Line("escrow", -1.5, "EUR"), Line("refunds", 1.5, "EUR")], "integer minor units"),
    ([Line("escrow", -100, "EUR"), Line("coach_payable", 100, "EUR")], "must name its coach"),
    ([("escrow", -100, "EUR"), ("refunds", 101, "EUR")], "sum to 1"),
], ids=["unbalanced", "one-sided", "empty", "all-zero", "unknown-account", "mixed-currency",
        "float", "coach-account-without-coach", "plain-tuples"])
def test_post_refuses_bad_entries_and_writes_nothing(app, people, lines, message):
    with app.app_context():
        payment = new_payment(people, 100)
        before = ledger_row_counts()
        with pytest.raises(ValueError, match=message):
            ledger._post("payment_held", lines, payment=payment)
        assert not [o for o in db.session.new if isinstance(o, LedgerTransaction | LedgerEntry)]
        db.session.flush()
        assert ledger_row_counts() == before


def test_post_refuses_an_unknown_kind(app):
    with app.app_context(), pytest.raises(ValueError, match="Unknown ledger transaction kind"):
        ledger._post("gift", [Line("escrow", -1, "EUR"), Line("refunds", 1, "EUR")])


def test_postings_refuse_negative_amounts(app, people):
    with app.app_context():
        payment = new_payment(people, 1_000)
        hold(payment)
        with pytest.raises(ValueError, match="cannot be negative"):
            ledger.post_release(payment, fee_minor=-100, net_minor=1_100)
        assert ledger.check_invariants() == []


def test_refund_in_another_currency_is_refused(app, people):
    with app.app_context():
        payment = new_payment(people, 1_000)
        hold(payment)
        row = Refund(payment_id=payment.id, amount_minor=100, currency="JPY", reason="x")
        db.session.add(row)
        with pytest.raises(ValueError, match="Refund in JPY"):
            ledger.post_refund(row)


# --- immutability -----------------------------------------------------------------

@pytest.fixture
def posted(app, people):
    """A committed payment_held posting; yields (transaction id, payment id)."""
    with app.app_context():
        payment = new_payment(people, 2_000)
        transaction = hold(payment)
        db.session.commit()
        return transaction.id, payment.id


def _change_entry_amount(tx_id):
    db.session.get(LedgerTransaction, tx_id).entries[0].amount_minor += 1
    db.session.flush()


def _change_memo(tx_id):
    db.session.get(LedgerTransaction, tx_id).memo = "edited"
    db.session.flush()


def _delete_entry(tx_id):
    db.session.delete(db.session.get(LedgerTransaction, tx_id).entries[0])
    db.session.flush()


def _delete_transaction(tx_id):
    db.session.delete(db.session.get(LedgerTransaction, tx_id))
    db.session.flush()


def _add_entry_to_written_transaction(tx_id):
    db.session.add(LedgerEntry(transaction_id=tx_id, account="escrow", amount_minor=1,
                               currency="EUR"))
    db.session.flush()


def _append_entry_to_written_transaction(tx_id):
    transaction = db.session.get(LedgerTransaction, tx_id)
    transaction.entries.append(LedgerEntry(account="escrow", amount_minor=1, currency="EUR"))
    db.session.flush()


def _bulk_update(tx_id):
    db.session.execute(update(LedgerEntry).where(LedgerEntry.transaction_id == tx_id)
                       .values(amount_minor=0))


def _bulk_delete(tx_id):
    db.session.execute(delete(LedgerEntry).where(LedgerEntry.transaction_id == tx_id))


def _core_table_update(tx_id):
    db.session.execute(update(LedgerTransaction.__table__)
                       .where(LedgerTransaction.__table__.c.id == tx_id).values(memo="x"))


@pytest.mark.parametrize("tamper", [
    _change_entry_amount, _change_memo, _delete_entry, _delete_transaction,
    _add_entry_to_written_transaction, _append_entry_to_written_transaction,
    _bulk_update, _bulk_delete, _core_table_update,
])
def test_ledger_rows_cannot_be_changed_or_deleted(app, posted, tamper):
    tx_id, _ = posted
    with app.app_context():
        with pytest.raises(ledger.LedgerImmutableError):
            tamper(tx_id)
        db.session.rollback()
        transaction = db.session.get(LedgerTransaction, tx_id)
        assert sorted((e.account, e.amount_minor) for e in transaction.entries) == [
            ("escrow", 2_000), ("student_funding", -2_000)]
        assert transaction.memo == ""
        assert ledger.check_invariants() == []


def test_other_rows_still_update_normally(app, posted):
    """The guard is about ledger rows only: payments change status as usual."""
    _, payment_id = posted
    with app.app_context():
        payment = db.session.get(Payment, payment_id)
        payment.status = "disputed"
        db.session.commit()
        db.session.execute(update(Payment).where(Payment.id == payment_id)
                           .values(status="held"))
        db.session.commit()
        assert ledger.check_invariants() == []


# --- invariants catch corruption -----------------------------------------------------

def raw_transaction(kind: str, lines: list[tuple[str, int, str, int | None]], *,
                    payment_id: int | None = None, payout_id: int | None = None,
                    refund_id: int | None = None) -> int:
    """Write a ledger transaction with plain SQL, bypassing every check in ``_post``."""
    statement = text(
        "INSERT INTO ledger_transactions (kind, payment_id, payout_id, refund_id, memo, "
        "created_at) VALUES (:kind, :payment_id, :payout_id, :refund_id, '', :created_at) "
        "RETURNING id").bindparams(bindparam("created_at", type_=UTCDateTime()))
    tx_id = db.session.execute(statement, {
        "kind": kind, "payment_id": payment_id, "payout_id": payout_id,
        "refund_id": refund_id, "created_at": clock.now()}).scalar_one()
    for account, amount, currency, coach_id in lines:
        raw_entry(tx_id, account, amount, currency, coach_id)
    return tx_id


def raw_entry(tx_id: int, account: str, amount: int, currency: str = "EUR",
              coach_id: int | None = None) -> None:
    db.session.execute(text(
        "INSERT INTO ledger_entries (transaction_id, account, coach_id, amount_minor, currency) "
        "VALUES (:tx, :account, :coach_id, :amount, :currency)"),
        {"tx": tx_id, "account": account, "coach_id": coach_id, "amount": amount,
         "currency": currency})


@pytest.fixture
def books(app, people):
    """Healthy books: one payment held, one released and paid out, one still pending."""
    with app.app_context():
        held = new_payment(people, 5_000)
        hold(held)
        paid = new_payment(people, 10_000)
        hold(paid)
        _, payout = release(paid)  # fee 1,000, net 9,000
        pay(payout)
        pending = new_payment(people, 7_000, other=True)
        db.session.commit()
        assert ledger.check_invariants() == []
        return SimpleNamespace(held=held.id, paid=paid.id, payout=payout.id,
                               pending=pending.id, coach=people.coach.id)


def _unbalanced_entry(b):
    tx_id = db.session.scalar(select(LedgerTransaction.id)
                              .where(LedgerTransaction.payment_id == b.held))
    raw_entry(tx_id, "escrow", 100)
    return [f"Ledger transaction {tx_id} does not balance: its EUR entries sum to +100",
            "Escrow holds 5100 EUR but payments still in escrow add up to 5000 EUR"]


def _held_without_posting(b):
    db.session.execute(text("UPDATE payments SET status = 'held' WHERE id = :id"),
                       {"id": b.pending})
    return [f"Payment {b.pending} (held) has 0 payment_held postings, expected 1",
            f"Payment {b.pending} (held) has 0 EUR in escrow, expected 7000",
            "Escrow holds 5000 EUR but payments still in escrow add up to 12000 EUR"]


def _payout_posted_twice(b):
    raw_transaction("payout", [("coach_payable", -9_000, "EUR", b.coach),
                               ("paid_out", 9_000, "EUR", b.coach)], payout_id=b.payout)
    return [f"Payout {b.payout} (paid) is posted 2 times",
            f"Payout {b.payout} (paid) has 18000 EUR paid out in the ledger, expected 9000",
            f"Coach {b.coach}'s payable balance is negative in EUR: -9000"]


def _escrow_negative(b):
    raw_transaction("release", [("escrow", -8_000, "EUR", None),
                                ("coach_payable", 8_000, "EUR", b.coach)],
                    payment_id=b.held)
    return ["Escrow is negative in EUR: -3000",
            f"Payment {b.held} (held) has 1 release postings, expected 0",
            f"Payment {b.held} (held) has -3000 EUR in escrow, expected 5000"]


def _released_twice(b):
    raw_transaction("release", [("escrow", -1, "EUR", None),
                                ("platform_revenue", 1, "EUR", None)], payment_id=b.paid)
    return [f"Payment {b.paid} (released) has 2 release postings, expected 1",
            "Escrow holds 4999 EUR"]


def _refunded_without_posting(b):
    db.session.execute(text("UPDATE payments SET status = 'partially_refunded', "
                            "refunded_minor = 1000 WHERE id = :id"), {"id": b.held})
    return [f"Payment {b.held} (partially_refunded) records 1000 EUR refunded but its "
            "refund postings add up to 0",
            "Escrow holds 5000 EUR but payments still in escrow add up to 4000 EUR"]


def _paid_payout_without_posting(b):
    db.session.execute(text("DELETE FROM ledger_entries WHERE transaction_id IN "
                            "(SELECT id FROM ledger_transactions WHERE payout_id = :id)"),
                       {"id": b.payout})
    db.session.execute(text("DELETE FROM ledger_transactions WHERE payout_id = :id"),
                       {"id": b.payout})
    return [f"Payout {b.payout} (paid) has 0 payout postings net of reversals, expected 1"]


def _transaction_without_entries(b):
    tx_id = raw_transaction("refund", [])
    return [f"Ledger transaction {tx_id} (refund) has no entries",
            f"Ledger transaction {tx_id} (refund) is not linked"]


def _wrong_currency(b):
    tx_id = raw_transaction("payout_reversal", [("paid_out", -10, "JPY", b.coach),
                                                ("coach_payable", 10, "JPY", b.coach)],
                            payout_id=b.payout)
    return [f"Ledger transaction {tx_id} (payout_reversal) is in JPY but its payout is in EUR"]


def _coach_entry_without_coach(b):
    # A reversal (not unique per payout, unlike the payout posting) missing its coach.
    tx_id = raw_transaction("payout_reversal", [("coach_payable", 10, "EUR", None),
                                                ("paid_out", -10, "EUR", None)],
                            payout_id=b.payout)
    return [f"Ledger transaction {tx_id} has a coach_payable entry without a coach"]


@pytest.mark.parametrize("corrupt", [
    _unbalanced_entry, _held_without_posting, _escrow_negative,
    _refunded_without_posting, _paid_payout_without_posting,
    _transaction_without_entries, _wrong_currency, _coach_entry_without_coach,
])
def test_check_invariants_reports_corruption(app, books, corrupt):
    with app.app_context():
        expected = corrupt(books)
        problems = ledger.check_invariants()
        for fragment in expected:
            assert any(fragment in problem for problem in problems), (fragment, problems)


@pytest.mark.parametrize("corrupt", [_payout_posted_twice, _released_twice])
def test_the_database_refuses_a_second_release_or_payout_posting(app, books, corrupt):
    """Unique partial indexes stop a double posting at write time, before any check runs."""
    from sqlalchemy.exc import IntegrityError

    with app.app_context(), pytest.raises(IntegrityError,
                                          match=r"uq_ledger_one_|UNIQUE constraint failed"):
        corrupt(books)


def test_refund_posted_twice_is_reported(app, people):
    with app.app_context():
        payment = new_payment(people, 1_000)
        hold(payment)
        transaction = refund(payment, 300)
        raw_transaction("refund", [("escrow", -300, "EUR", None), ("refunds", 300, "EUR", None)],
                        payment_id=payment.id, refund_id=transaction.refund_id)
        problems = ledger.check_invariants()
        assert f"Refund {transaction.refund_id} is posted 2 times." in problems
        assert any("records 300 EUR refunded but its refund postings add up to 600" in p
                   for p in problems)


# --- random life cycles ----------------------------------------------------------------

currencies = st.sampled_from(["EUR", "JPY"])
payment_specs = st.lists(st.tuples(st.integers(1, 200_000), currencies, st.booleans()),
                         min_size=1, max_size=4)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=payment_specs, data=st.data())
def test_random_legal_histories_keep_the_books_sound(app, people, specs, data):
    """Random hold / refund / dispute / release / payout / reversal sequences over a few
    payments: after every step the invariants hold, money is conserved per currency,
    and each account holds what a plain model of the same history says."""
    with app.app_context():
        try:
            payments = [new_payment(people, amount, currency, other=other)
                        for amount, currency, other in specs]
            payouts: dict[int, Payout] = {}
            model: dict[tuple[str, str], int] = defaultdict(int)
            coach_model: dict[tuple[int, str, str], int] = defaultdict(int)

            def legal_moves() -> list[tuple[str, int]]:
                moves = []
                for i, p in enumerate(payments):
                    if p.status == "pending":
                        moves.append(("hold", i))
                    if p.status in ("held", "partially_refunded", "disputed"):
                        moves += [("refund", i), ("release", i)]
                    if p.status in ("held", "partially_refunded"):
                        moves.append(("dispute", i))
                    payout = payouts.get(i)
                    if payout is not None and payout.status == "pending":
                        moves.append(("pay", i))
                    if payout is not None and payout.status == "paid":
                        moves.append(("reverse", i))
                return moves

            for _ in range(data.draw(st.integers(0, 20), label="steps")):
                moves = legal_moves()
                if not moves:
                    break
                move, i = data.draw(st.sampled_from(moves), label="move")
                event(move)
                p = payments[i]
                c = p.currency
                if move == "hold":
                    hold(p)
                    model["student_funding", c] -= p.amount_minor
                    model["escrow", c] += p.amount_minor
                elif move == "refund":
                    amount = data.draw(st.integers(1, p.remaining_minor), label="refund")
                    refund(p, amount)
                    model["escrow", c] -= amount
                    model["refunds", c] += amount
                elif move == "dispute":
                    p.status = "disputed"
                elif move == "release":
                    remaining = p.remaining_minor
                    fee = share(remaining, FEE)
                    _, payouts[i] = release(p)
                    model["escrow", c] -= remaining
                    model["platform_revenue", c] += fee
                    model["coach_payable", c] += remaining - fee
                    coach_model[p.coach_id, "coach_payable", c] += remaining - fee
                else:  # pay moves the payout's amount out of coach_payable; reverse undoes it
                    amount = payouts[i].amount_minor
                    if move == "pay":
                        pay(payouts[i])
                    else:
                        reverse(payouts[i])
                        amount = -amount
                    model["coach_payable", c] -= amount
                    model["paid_out", c] += amount
                    coach_model[p.coach_id, "coach_payable", c] -= amount
                    coach_model[p.coach_id, "paid_out", c] += amount

                assert ledger.check_invariants() == []
                totals = total_per_currency()
                assert all(v == 0 for v in totals.values()), totals
                for currency in ("EUR", "JPY"):
                    assert sum(ledger.balance(a, currency=currency) for a in ACCOUNTS) == 0
                    for account in ACCOUNTS:
                        assert ledger.balance(account, currency=currency) == \
                            model[account, currency], (account, currency)
                    for coach in (people.coach.id, people.other_coach.id):
                        for account in ("coach_payable", "paid_out"):
                            assert ledger.balance(account, currency=currency,
                                                  coach_id=coach) == \
                                coach_model[coach, account, currency]
                assert ledger.balance("escrow", currency=c) >= 0
        finally:
            db.session.rollback()
