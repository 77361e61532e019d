"""One request is one unit of work: all of it is saved, or none of it, and every form
answers the same way (303 / HX-Redirect on success, 422 beside the field, 409 refused).

The views here are tiny stand-ins registered on a test app so the helper itself is
pinned down; the real routes' tests check each page's words.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from wtforms import StringField

from skileez.auth.models import User
from skileez.auth.operations import create_user
from skileez.core.errors import Conflict, DomainError
from skileez.core.forms import Form
from skileez.core.permissions import Decision, deny
from skileez.core.unit_of_work import see_other, submit, transaction
from skileez.extensions import db

from .conftest import TEST_PASSWORD


def accounts(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


class NameForm(Form):
    name = StringField("Name")


@pytest.fixture
def form_app(make_app):
    """A test app with one form view whose outcome the test chooses by the name posted."""
    app = make_app(WTF_CSRF_ENABLED=False)
    outcomes = {"allowed": Decision(True)}

    @app.route("/try", methods=["GET", "POST"])
    def try_it():
        form = NameForm()

        def action():
            create_user(name="Written first", email="first@example.com",
                        password=TEST_PASSWORD, role="student")
            if form.name.data == "rule":
                raise DomainError("That name breaks a rule.", field="name")
            if form.name.data == "race":
                raise Conflict("Someone else got there first.")
            return "done"

        return submit(form, action, allowed=outcomes["allowed"],
                      page=lambda: f"page:{form.errors}",
                      done=lambda result: see_other(f"/after/{result}", "Saved."))

    app.outcomes = outcomes
    return app


def test_a_failure_after_a_savepoint_undoes_everything_the_unit_wrote(app):
    """create_user's insert is its first write and sits in a savepoint: on SQLite, a
    first SAVEPOINT used to be a transaction of its own, and its release committed."""
    with app.app_context(), pytest.raises(RuntimeError), transaction():
        create_user(name="Half done", email="half@example.com", password=TEST_PASSWORD,
                    role="student")
        raise RuntimeError("something later in the same request failed")
    assert accounts(app) == 0


def test_success_commits_once_and_answers_303(form_app):
    response = form_app.test_client().post("/try", data={"name": "fine"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/after/done"
    assert accounts(form_app) == 1


def test_htmx_success_answers_hx_redirect_not_a_redirect_the_xhr_would_follow(form_app):
    response = form_app.test_client().post("/try", data={"name": "fine"},
                                           headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/after/done"
    assert "Location" not in response.headers


def test_a_broken_rule_is_422_beside_its_field_and_nothing_is_saved(form_app):
    response = form_app.test_client().post("/try", data={"name": "rule"})
    assert response.status_code == 422
    assert "'name': ['That name breaks a rule.']" in response.get_data(as_text=True)
    assert accounts(form_app) == 0


def test_a_conflict_is_409_and_nothing_is_saved(form_app):
    response = form_app.test_client().post("/try", data={"name": "race"})
    assert response.status_code == 409
    assert "Someone else got there first." in response.get_data(as_text=True)
    assert accounts(form_app) == 0


def test_a_refused_action_is_409_and_does_not_run(form_app):
    form_app.outcomes["allowed"] = deny("Not now.")
    response = form_app.test_client().post("/try", data={"name": "fine"})
    assert response.status_code == 409
    assert accounts(form_app) == 0


def test_get_only_shows_the_page(form_app):
    response = form_app.test_client().get("/try")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "page:{}"
    assert accounts(form_app) == 0


@pytest.mark.parametrize("path", ["/coaches/", "/coaches/?q=a"])
def test_a_history_restore_gets_the_full_page_not_the_fragment(app, path):
    """Back after htmx swaps, once htmx's history cache no longer holds the page: htmx
    asks again and replaces the whole body with the answer, so a fragment would leave
    a page without its navigation."""
    client = app.test_client()
    fragment = client.get(path, headers={"HX-Request": "true"}).get_data(as_text=True)
    restored = client.get(path, headers={"HX-Request": "true",
                                         "HX-History-Restore-Request": "true"})
    assert "<nav" not in fragment
    assert restored.status_code == 200
    assert "<nav" in restored.get_data(as_text=True)
