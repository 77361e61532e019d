"""One shape for "may I?": every ``can_…`` answers a ``Decision``, and templates ask it.

The rules were once answered three ways (``Decision``, bare booleans and
``(bool, str)`` tuples) and templates rebuilt some of them from statuses
(``sessions/_side.html`` re-derived ``can_dispute``, ``sessions/_live.html``
listed the final states again). These tests keep it from coming back: they read
the code and the templates, not only what the rules answer.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

import skileez
from skileez.core.permissions import Decision
from skileez.models import Payment, Session, User
from skileez.payments import operations
from skileez.sessions import lifecycle

PACKAGE = Path(skileez.__file__).parent
TEMPLATES = PACKAGE / "templates"
T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # where the clock fixture freezes time

STUDENT = User(id=1, name="Sam Rivera", status="active", timezone="America/New_York")
COACH = User(id=2, name="Clara Schmidt", status="active", timezone="Europe/Berlin")


def _session(status: str, **values) -> Session:
    return Session(id=7, student_id=STUDENT.id, coach_id=COACH.id, status=status,
                   starts_at=T0 + timedelta(days=1), ends_at=T0 + timedelta(days=1, hours=1),
                   **values)


def _payment(status: str, session: Session, **values) -> Payment:
    payment = Payment(id=9, student_id=STUDENT.id, coach_id=COACH.id, amount_minor=4990,
                      refunded_minor=0, currency="EUR", status=status, **values)
    payment.session = session
    payment.student = STUDENT
    return payment


# --- the answers ------------------------------------------------------------------------

@pytest.mark.parametrize(("who", "payment_status", "session_status", "release_in", "reason"), [
    (COACH, "held", "completed", timedelta(hours=3), "Only the student who paid"),
    (STUDENT, "held", "scheduled", None, "once the session is completed"),
    (STUDENT, "disputed", "completed", timedelta(hours=3), "This payment is disputed."),
    (STUDENT, "released", "completed", timedelta(hours=3), "This payment is released."),
    (STUDENT, "held", "completed", -timedelta(seconds=1), "already been released"),
])
def test_can_dispute_refuses_with_the_reason_a_person_reads(app, clock, who, payment_status,
                                                          session_status, release_in, reason):
    with app.app_context():
        release_at = T0 + release_in if release_in is not None else None
        payment = _payment(payment_status, _session(session_status), release_at=release_at)
        decision = operations.can_dispute(payment, who)
        assert isinstance(decision, Decision)
        assert not decision and reason in decision.reason


@pytest.mark.parametrize("payment_status", Payment.UNDISPUTED_ESCROW_STATES)
def test_can_dispute_allows_the_student_until_release(app, clock, payment_status):
    with app.app_context():
        payment = _payment(payment_status, _session("completed"),
                           release_at=T0 + timedelta(hours=3))
        assert operations.can_dispute(payment, STUDENT) == Decision(True)
        assert not operations.can_dispute(payment, SimpleNamespace(id=None))


def test_payment_can_be_paid_answers_a_decision(app, clock):
    with app.app_context():
        waiting = _session("pending_payment", hold_expires_at=T0 + timedelta(minutes=10))
        decision = operations.payment_can_be_paid(_payment("pending", waiting))
        assert isinstance(decision, Decision) and decision.allowed

        paid = operations.payment_can_be_paid(_payment("held", _session("scheduled")))
        assert paid == Decision(False, "This session is already paid.")

        expired = operations.payment_can_be_paid(_payment("pending", _session("expired")))
        assert not expired and "hold on this time ran out before payment" in expired.reason

        ran_out = _session("pending_payment", hold_expires_at=T0 - timedelta(seconds=1))
        late = operations.payment_can_be_paid(_payment("failed", ran_out))
        assert not late and late.reason.startswith("The hold on this time ran out.")


def test_can_pay_is_the_students_while_the_hold_lasts(app, clock):
    with app.app_context():
        held = _session("pending_payment", hold_expires_at=T0 + timedelta(minutes=10))
        allowed = lifecycle.can_pay(held, STUDENT)
        assert allowed and allowed.reason.startswith("Held for you until ")
        assert lifecycle.can_pay(held, COACH).reason == "Only the student pays for a session."
        assert not lifecycle.can_pay(held, STUDENT, now=T0 + timedelta(minutes=10))
        assert lifecycle.can_pay(_session("scheduled"), STUDENT).reason == \
            "The session is scheduled."


def test_state_sets_are_one_each():
    assert set(lifecycle.FINAL) | set(lifecycle.GOING_AHEAD) == \
        set(Session.__transitions__["status"])
    assert not set(lifecycle.FINAL) & set(lifecycle.GOING_AHEAD)
    for subset in (lifecycle.BOOKED, lifecycle.MEETING_ON, lifecycle.AWAITING_OUTCOME):
        assert set(subset) <= set(lifecycle.GOING_AHEAD)
    assert set(Payment.UNDISPUTED_ESCROW_STATES) < set(Payment.ESCROW_STATES) \
        < set(Payment.FUNDED_STATES) < set(Payment.__transitions__["status"])
    assert set(Payment.__transitions__["status"]) - set(Payment.FUNDED_STATES) == \
        {"pending", "failed"}


# --- the code ---------------------------------------------------------------------------

def _modules():
    for info in pkgutil.walk_packages(skileez.__path__, "skileez."):
        yield importlib.import_module(info.name)


def test_every_can_function_answers_a_decision():
    """``can_…`` functions and methods (and ``…_can_…`` helpers) say ``-> Decision``."""
    found, wrong = [], []
    for module in _modules():
        tree = ast.parse(Path(module.__file__).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
                    and re.match(r"(can|may)_|.+_can_", node.name):
                found.append(node.name)
                returns = ast.unparse(node.returns) if node.returns else None
                if returns != "Decision":
                    wrong.append(f"{module.__name__}.{node.name} -> {returns}")
    assert {"can_dispute", "payment_can_be_paid", "can_pay", "can_book"} <= set(found)
    assert not wrong, "These permission functions do not answer a Decision: " + \
        ", ".join(wrong)


STATE_SETS = {
    "skileez/sessions/lifecycle.py": (lifecycle.FINAL, lifecycle.GOING_AHEAD, lifecycle.BOOKED,
                                      lifecycle.MEETING_ON, lifecycle.AWAITING_OUTCOME),
    "skileez/payments/models.py": (Payment.FUNDED_STATES, Payment.ESCROW_STATES,
                                   Payment.UNDISPUTED_ESCROW_STATES),
}
QUOTED_TUPLE = re.compile(r"\(\s*((?:['\"]\w+['\"]\s*,\s*)+['\"]\w+['\"])\s*,?\s*\)")


def test_named_state_sets_are_not_spelled_out_again():
    """A tuple of states equal to a named set is written only where the set is defined."""
    named = {frozenset(states): (home, states) for home, sets in STATE_SETS.items()
             for states in sets}
    repeats = []
    for path in sorted([*PACKAGE.rglob("*.py"), *TEMPLATES.rglob("*.html")]):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for match in QUOTED_TUPLE.finditer(line):
                states = frozenset(re.findall(r"['\"](\w+)['\"]", match.group(1)))
                if states in named and named[states][0] != relative:
                    repeats.append(f"{relative}:{number} repeats {named[states]}")
    assert not repeats, "\n".join(repeats)


# --- the templates ----------------------------------------------------------------------

IF_TAG = re.compile(r"\{%-?\s*(?:el)?if\b(?P<condition>.*?)-?%\}", re.S)
STATUS_TEST = re.compile(r"\bstatus\s*(?:==|!=|\bin\b|\bnot\s+in\b)")
STATUS_FILTER = re.compile(r"(?:select|reject)attr\(\s*['\"]status['\"]")
# The whole branch is a word or two (" selected", " active"): it marks up, it shows nothing.
ONLY_MARKS_UP = re.compile(r"[\w\s-]{0,40}\{%-?\s*(?:endif|else)\b")
# Lines that test a status for something other than an action or a section, and why.
ALLOWED = {
    ("errors/error.html", "status in (401, 403)"): "an HTTP status code, not a state",
    ("payments/_status.html", "payment.status == 'held'"):
        "chooses the sentence; its one action asks payment.is_awaited",
    ("payments/_status.html", "payment.status == 'failed'"):
        "chooses the sentence; its one action asks payment.is_awaited",
}


def test_templates_ask_rules_instead_of_comparing_statuses():
    offenders, used = [], set()
    for path in sorted(TEMPLATES.rglob("*.html")):
        name = path.relative_to(TEMPLATES).as_posix()
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), start=1):
            if STATUS_FILTER.search(line):
                offenders.append(f"{name}:{number}: filters by status: {line.strip()}")
        for tag in IF_TAG.finditer(text):
            condition = tag.group("condition")
            if not STATUS_TEST.search(condition):
                continue
            if ONLY_MARKS_UP.match(text, tag.end()):
                continue
            allowed = [key for key in ALLOWED if key[0] == name and key[1] in condition]
            if allowed:
                used.update(allowed)
                continue
            line = text.count("\n", 0, tag.start()) + 1
            offenders.append(f"{name}:{line}: {{% if{condition}%}}")
    assert not offenders, ("Ask a rule (lifecycle.can_…, payment.is_…) instead of comparing "
                           "statuses:\n" + "\n".join(offenders))
    assert used == set(ALLOWED), f"Allow-list entries no longer needed: {set(ALLOWED) - used}"


def test_the_template_check_catches_a_rebuilt_rule():
    """The check itself: a status comparison around a button is caught, a class is not."""
    rebuilt = "{% if payment.status in ('held', 'partially_refunded') %}<a href='#'>Go</a>" \
              "{% endif %}"
    tag = IF_TAG.search(rebuilt)
    assert STATUS_TEST.search(tag.group("condition"))
    assert not ONLY_MARKS_UP.match(rebuilt, tag.end())
    marked = "<option{% if status == 'active' %} selected{% endif %}>"
    assert ONLY_MARKS_UP.match(marked, IF_TAG.search(marked).end())
