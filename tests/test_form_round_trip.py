"""Every edit form survives a round trip: submitted exactly as rendered, twice, it changes nothing.

The forms are read the way a browser reads them (every input's value, the selected
option, textarea text, checkboxes only when checked) from pages of the demo data, as
the person who owns what the form edits. A discovery test walks every GET route a
demo person can open and requires each POST form it finds to be either round-tripped
here or named, with the reason, among the action forms that are not edit forms.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from skileez.extensions import db
from skileez.seed import DEMO_PASSWORD

COACH = "clara.coach@skileez.test"
STUDENT = "sam.student@skileez.test"
ADMIN = "admin@skileez.test"


class FormParser(HTMLParser):
    """Collects every <form method=post>, with what a browser would submit from it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._form = None
        self._select = None
        self._textarea = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._form = {"method": (a.get("method") or "get").lower(),
                          "action": a.get("action") or "", "fields": [], "buttons": []}
            self.forms.append(self._form)
            return
        form = self._form
        if form is not None and tag in ("button", "input") and a.get("formaction"):
            form["buttons"].append(a["formaction"])
        if form is None or ("name" not in a and tag != "option"):
            return
        if tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "image", "reset", "file") or "disabled" in a:
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    form["fields"].append((a["name"], a.get("value", "on")))
                return
            form["fields"].append((a["name"], a.get("value", "")))
        elif tag == "select" and "disabled" not in a:
            self._select = {"name": a["name"], "first": None, "chosen": None}
        elif tag == "option" and self._select is not None:
            self._option = a
            self._option_text = ""
        elif tag == "textarea" and "disabled" not in a:
            self._textarea = [a["name"], ""]

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data
        elif self._select is not None and getattr(self, "_option", None) is not None:
            self._option_text += data

    def handle_endtag(self, tag):
        if tag == "option" and self._select is not None and getattr(self, "_option", None):
            value = self._option.get("value", self._option_text.strip())
            if self._select["first"] is None:
                self._select["first"] = value
            if "selected" in self._option:
                self._select["chosen"] = value
            self._option = None
        elif tag == "select" and self._select is not None:
            chosen = self._select["chosen"]
            if chosen is None:
                chosen = self._select["first"]
            if chosen is not None and self._form is not None:
                self._form["fields"].append((self._select["name"], chosen))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            name, text = self._textarea
            # html.parser keeps it all; a browser drops the one newline after <textarea>
            # and sends every line break as CR LF.
            text = text.replace("\r\n", "\n")
            text = text[1:] if text.startswith("\n") else text
            self._form["fields"].append((name, text.replace("\n", "\r\n")))
            self._textarea = None
        elif tag == "form":
            self._form = None


def post_forms(html: str) -> list[dict]:
    parser = FormParser()
    parser.feed(html)
    return [form for form in parser.forms if form["method"] == "post"]


def editable(fields) -> list:
    return [(name, value) for name, value in fields if name != "csrf_token"]


# --- the demo, signed in as its owners ----------------------------------------

@pytest.fixture
def demo(app):
    result = app.test_cli_runner().invoke(args=["skileez", "seed"])
    assert result.exit_code == 0, result.output
    return app


def signed_in(app, make_client, email):
    client = make_client(app)
    client.login(email, DEMO_PASSWORD)
    return client


def rows(model, **where):
    """Every column of the matching rows, in id order, as plain values."""
    table = model.__table__
    query = select(table)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    return [dict(row._mapping) for row in db.session.execute(query.order_by(table.c.id))]


def user_id(email):
    from skileez.auth.models import User

    return db.session.scalar(select(User.id).where(User.email == email))


def coach_profile_rows():
    from skileez.coaches.models import CoachProfile, CoachSubject

    profile = rows(CoachProfile, user_id=user_id(COACH))
    subjects = sorted(row["name"] for row in rows(CoachSubject, profile_id=profile[0]["id"]))
    return {"profile": profile, "subjects": subjects}


def first_offering_id():
    from skileez.coaches.models import Offering

    return db.session.scalar(select(Offering.id).where(Offering.coach_id == user_id(COACH))
                             .order_by(Offering.id))


def offering_rows():
    from skileez.coaches.models import Offering

    return rows(Offering, id=first_offering_id())


def user_rows(email):
    from skileez.auth.models import User

    def snapshot():
        return [{k: v for k, v in row.items() if k not in ("updated_at",)}
                for row in rows(User, email=email)]
    return snapshot


# (page endpoint, form action endpoint) → who owns it, how to reach it, what it stores.
ROUND_TRIP = {
    ("coaches.edit_profile", "coaches.edit_profile"):
        (COACH, lambda: "/coaches/me/profile", coach_profile_rows),
    ("coaches.edit_offering", "coaches.edit_offering"):
        (COACH, lambda: f"/coaches/me/offerings/{first_offering_id()}/edit", offering_rows),
    ("auth.profile", "auth.profile"):
        (STUDENT, lambda: "/profile", user_rows(STUDENT)),
}

EDIT_ACTIONS = {action for _page, action in ROUND_TRIP}

# POST forms that do not edit a stored object, so an unchanged resubmission is not a
# round trip: they create something, act once, or need a secret typed in.
ACTION_FORMS = {
    "auth.logout": "signs out",
    "auth.sign_out_everywhere": "ends every signed-in session",
    "auth.login": "signs in",
    "auth.register": "creates an account",
    "auth.change_password": "needs the current and a new password typed in",
    "coaches.new_offering": "creates an offering (starts empty)",
    "coaches.add_rule": "adds a weekly rule (starts empty)",
    "coaches.delete_rule": "deletes a weekly rule",
    "coaches.add_time_off": "adds time off (starts empty)",
    "coaches.delete_time_off": "deletes time off",
    "coaches.set_offering_status": "activates or deactivates an offering",
    "contracts.propose": "sends a proposal",
    "contracts.answer": "accepts, declines or withdraws a proposal",
    "contracts.pause": "pauses or resumes new bookings on a contract",
    "contract_end.end": "ends a contract (cancels its booked sessions)",
    "notifications.mark_read": "marks a notification read",
    "notifications.mark_all_read": "marks every notification read",
    "sessions.confirm": "books a time",
    "sessions.cancel": "cancels a session",
    "sessions.complete": "completes a session",
    "sessions.missed": "reports a no-show",
    "sessions.rate": "rates a session (once)",
    "sessions.notes": "adds notes (once)",
    "sessions.reschedule": "asks for a new time",
    "sessions.start": "starts a session",
    "sessions.join": "joins the meeting",
    "sessions.confirm_attendance": "the coach confirms they will be there",
    "sessions.answer_reschedule": "approves or declines a reschedule request",
    "sessions.new_calendar_link": "replaces the calendar feed's secret",
    "payments.test_card": "pays with a test card",
    "payments.confirm_card": "pays with a card collected by Stripe.js",
    "payments.connect": "starts Stripe onboarding",
    "payments.save_card": "saves a card confirmed by Stripe.js (JSON)",
    "payments.test_save_card": "saves a test card (a button per card)",
    "payments.remove_card": "removes the saved card",
    "payments.pay_with_saved_card": "pays with the saved card",
    "payments.book_pattern": "books the chosen times of a weekly pattern",
    "payments.dispute": "opens a dispute",
    "payments.answer_dispute": "the coach's side of a dispute (starts empty; tells the "
                               "student; an unchanged answer is saved as a no-op)",
    "admin.change_user_status": "suspends or restores an account, with a reason",
    "admin.payment_action": "releases or refunds money, with a reason",
    "admin.resolve_dispute": "resolves a dispute (after the admin confirms the amounts)",
    "admin.decide_dispute": "reviews, then confirms, a dispute's decision",
    "admin.dispute_evidence": "sends a card dispute's evidence to the bank, once",
    "admin.reverse_payout": "takes a coach's transfer back, with a reason",
    "admin.mail_retry": "sends an email again",
    "admin.job_action": "requeues or deletes a job",
    "admin.ledger_check_now": "queues a ledger check (a button, no fields)",
    "admin.reconcile_now": "queues a comparison with Stripe (a button, no fields)",
    "admin.resolve_difference": "closes a difference with Stripe, with a note (starts empty)",
}


def resolve(app, page_url, action):
    """The endpoint a form posts to (an empty action posts to the page itself)."""
    path = urlsplit(action).path if action else urlsplit(page_url).path
    adapter = app.url_map.bind("skileez.test")
    try:
        endpoint, _ = adapter.match(path, method="POST")
    except HTTPException as error:
        return f"{path} ({error.code} on POST)"
    return endpoint


@pytest.mark.parametrize("key", list(ROUND_TRIP), ids=lambda k: k[0])
def test_edit_form_round_trips_twice(demo, make_client, key):
    owner, url_of, stored = ROUND_TRIP[key]
    client = signed_in(demo, make_client, owner)
    with demo.app_context():
        url = url_of()
        before = stored()

    def the_form():
        page = client.get(url)
        assert page.status_code == 200
        forms = [f for f in post_forms(page.get_data(as_text=True))
                 if resolve(demo, url, f["action"]) == key[1]]
        assert len(forms) == 1, forms
        return forms[0]

    rendered = the_form()
    for attempt in (1, 2):
        form = the_form()
        assert editable(form["fields"]) == editable(rendered["fields"]), attempt
        response = client.http.post(form["action"] or url, data=MultiDict(form["fields"]))
        assert response.status_code == 303, (attempt, response.status_code,
                                             response.get_data(as_text=True)[:2000])
        with demo.app_context():
            assert stored() == before, attempt
    assert editable(the_form()["fields"]) == editable(rendered["fields"])


def page_urls(app, viewer):
    """Every GET page this person can reach: rules without arguments, and rules whose
    integer arguments are filled with ids of the demo rows they can see."""
    from skileez.coaches.models import Offering
    from skileez.contracts.models import Contract, Proposal
    from skileez.notifications.models import OutboxEmail
    from skileez.payments.models import Payment
    from skileez.sessions.models import Session

    with app.app_context():
        me = user_id(viewer)
        admin = viewer == ADMIN

        def mine(model, *columns):
            query = select(model.id)
            if not admin:
                query = query.where(db.or_(*(getattr(model, c) == me for c in columns)))
            return list(db.session.scalars(query.order_by(model.id)))

        ids = {
            "offering_id": mine(Offering, "coach_id"),
            "session_id": mine(Session, "student_id", "coach_id"),
            "contract_id": mine(Contract, "student_id", "coach_id"),
            "proposal_id": mine(Proposal, "student_id", "coach_id"),
            "payment_id": mine(Payment, "student_id", "coach_id"),
            "coach_id": [user_id(COACH)],
            "user_id": [user_id(STUDENT)],
            "email_id": list(db.session.scalars(select(OutboxEmail.id).limit(1))),
        }
        urls = []
        adapter = app.url_map.bind("skileez.test")
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint.endswith("static"):
                continue
            if not rule.arguments:
                urls.append((rule.endpoint, adapter.build(rule.endpoint)))
            elif len(rule.arguments) == 1 and next(iter(rule.arguments)) in ids:
                name = next(iter(rule.arguments))
                for value in ids[name]:
                    urls.append((rule.endpoint, adapter.build(rule.endpoint, {name: value})))
        return urls


@pytest.mark.parametrize("viewer", [COACH, STUDENT, ADMIN])
def test_every_post_form_is_round_tripped_or_named_as_an_action(demo, make_client, viewer):
    client = signed_in(demo, make_client, viewer)
    unknown = set()
    pages = 0
    for endpoint, url in page_urls(demo, viewer):
        page = client.get(url)
        if page.status_code != 200 or "text/html" not in page.content_type:
            continue
        pages += 1
        for form in post_forms(page.get_data(as_text=True)):
            # A form whose buttons carry their own formaction posts to those instead.
            targets = form["buttons"] if form["buttons"] and not form["action"] \
                else [form["action"]]
            for target in targets:
                action = resolve(demo, url, target)
                if action not in EDIT_ACTIONS and action not in ACTION_FORMS:
                    unknown.add((endpoint, action))
    assert pages > 10
    assert not unknown, ("add these forms to ROUND_TRIP (edit forms) or ACTION_FORMS "
                         f"(with the reason): {sorted(unknown)}")


def test_the_lists_name_real_endpoints(app):
    """A renamed route must not leave a stale entry that would excuse a new form."""
    posts = {rule.endpoint for rule in app.url_map.iter_rules() if "POST" in rule.methods}
    assert set(ACTION_FORMS) - posts == set()
    assert EDIT_ACTIONS - posts == set()
    # Every POST endpoint a browser form can reach is accounted for.
    assert posts - set(ACTION_FORMS) - EDIT_ACTIONS == {"payments.webhook"}
