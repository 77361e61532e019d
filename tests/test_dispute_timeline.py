"""What a disputed session's timeline and notices say, as the three people read them.

Found walking the demo: a partial decision wrote the same line twice on the timeline
(the refund's and the release's reasons were the same words), the coach's answer was
on no timeline, the student was told "Sam Rivera opened a dispute" about their own
dispute, and the admin's payment page still said "Release at" a time in the future
after the money had gone.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from sqlalchemy import select

from skileez.auth.models import User
from skileez.extensions import db
from skileez.notifications.compose import render_email
from skileez.notifications.models import Notification
from tests.test_disputes_both_sides import (  # noqa: F401
    ANSWER,
    answer_url,
    decide,
    disputed,
    signed_in,
)

PAGES = {"sam@example.com": "/sessions/{session}", "clara@example.com": "/sessions/{session}",
         "root@example.com": "/admin/disputes/{dispute}"}


def timeline_lines(app, email: str, ids) -> list[str]:
    """The timeline's lines without their times, as the reader sees them."""
    page = signed_in(app, email).get(PAGES[email].format(**ids)).get_data(as_text=True)
    listing = page.split('data-testid="timeline"', 1)[1].split("</ol>", 1)[0]
    items = re.findall(r"<li[^>]*>(.*?)</li>", listing, flags=re.S)
    return [unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", item))).split(" — ", 1)[1]
            .strip() for item in items]


@pytest.mark.parametrize("resolution, amount", [("release", ""), ("refund", ""),
                                                ("partial", "20.00")])
def test_every_line_of_a_decided_dispute_says_something_new(app, disputed,  # noqa: F811
                                                            resolution, amount):
    signed_in(app, "clara@example.com").post(answer_url(disputed), {"answer": ANSWER},
                                             token_page=answer_url(disputed))
    decide(app, disputed, resolution, amount=amount, note="Audio failed for 25 minutes.")
    for email in PAGES:
        lines = timeline_lines(app, email, disputed)
        assert len(lines) == len(set(lines)), (email, lines)
        assert "Coach answered the dispute (Clara Schmidt)" in lines, (email, lines)
        assert any("Audio failed for 25 minutes." in line for line in lines), lines
        if resolution == "partial":
            assert any(line.startswith("The rest released to the coach") for line in lines)


def test_an_edited_answer_is_on_the_timeline_as_an_edit(app, disputed):  # noqa: F811
    coach = signed_in(app, "clara@example.com")
    coach.post(answer_url(disputed), {"answer": ANSWER}, token_page=answer_url(disputed))
    coach.post(answer_url(disputed), {"answer": ANSWER + " And I have the recording."},
               token_page=answer_url(disputed))
    lines = timeline_lines(app, "sam@example.com", disputed)
    assert lines[-2:] == ["Coach answered the dispute (Clara Schmidt)",
                          "Coach edited their answer to the dispute (Clara Schmidt)"]


def test_the_student_is_told_they_opened_it_and_the_coach_who_did(app, disputed):  # noqa: F811
    with app.app_context():
        read = {}
        for email in ("sam@example.com", "clara@example.com"):
            user = db.session.scalar(select(User).where(User.email == email))
            notice = db.session.scalar(select(Notification).where(
                Notification.recipient_id == user.id, Notification.kind == "dispute_opened"))
            read[email] = render_email("dispute_opened", user, notice.payload)[1]
    assert "You opened a dispute about the session" in read["sam@example.com"]
    assert "Sam Rivera opened a dispute about the session" in read["clara@example.com"]
    assert "You can give your side" in read["clara@example.com"]
    assert "You can give your side" not in read["sam@example.com"]


def test_the_admin_payment_page_says_when_it_was_released_not_when_it_was_due(
        app, disputed):  # noqa: F811
    decide(app, disputed, "release", note="The session happened in full.")
    page = signed_in(app, "root@example.com").get(
        f"/admin/payments/{disputed['payment']}").get_data(as_text=True)
    assert ">Released</dt>" in page and "(due " in page
    assert ">Release at</dt>" not in page


def test_the_admin_payments_list_says_released_when_not_when_due(app, disputed):  # noqa: F811
    admin = signed_in(app, "root@example.com")

    def listing() -> str:
        page = admin.get("/admin/payments").get_data(as_text=True)
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))

    assert "due Sat 14 Mar" in listing()
    decide(app, disputed, "release", note="The session happened in full.")
    after = listing()
    # Released by the decision, a day before it was due.
    assert "released Fri 13 Mar, 21:02 JST" in after and "due Sat 14 Mar" not in after
