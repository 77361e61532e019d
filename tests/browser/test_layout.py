"""Issue 8 item 10: every main page loads without console errors (a CSP refusal of an
inline style shows up there) and, at phone width, no page scrolls sideways as a whole."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.browser.conftest import screenshot
from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.browser

WEDNESDAY = datetime(2026, 3, 11, 13, 0, tzinfo=UTC)
PAGES = {
    "clara@example.com": ["/dashboard", "/coaches/me/profile", "/coaches/me/offerings",
                          "/coaches/me/availability", "/sessions/", "/contracts/",
                          "/notifications/"],
    "sam@example.com": ["/dashboard", "/coaches/", "/sessions/", "/contracts/"],
    "admin@example.com": ["/dashboard", "/admin/", "/admin/money",
                          "/admin/money/entries?account=escrow"],
}


@pytest.fixture
def portal(clock, coaching, paid_session, make_user, add_hours):
    add_hours(coaching["coach"], [2], "17:00", "20:00")
    paid_session(coaching["student"], coaching["contract"], WEDNESDAY)
    make_user("admin", email="admin@example.com", name="Alex Admin")
    return coaching


def _sign_in(page, base, email):
    page.goto(f"{base}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/dashboard")


@pytest.mark.parametrize("email", list(PAGES))
def test_main_pages_have_no_console_errors(browser, live_server, portal, email):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    _sign_in(page, live_server, email)
    for path in PAGES[email]:
        response = page.goto(f"{live_server}{path}")
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
    assert errors == []
    context.close()


@pytest.mark.parametrize(("email", "path", "name"), [
    ("sam@example.com", "/sessions/", "history"),
    ("sam@example.com", "/dashboard", "dashboard-student"),
    ("clara@example.com", "/dashboard", "dashboard-coach"),
    ("clara@example.com", "/coaches/me/availability", "availability"),
    ("clara@example.com", "/sessions/", "history-coach"),
    ("admin@example.com", "/admin/money", "admin-money"),
    ("admin@example.com", "/admin/money/entries", "admin-money-entries"),
])
def test_no_sideways_scroll_at_phone_width(browser, live_server, portal, email, path, name):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    _sign_in(page, live_server, email)
    page.goto(f"{live_server}{path}")
    page.wait_for_load_state("networkidle")
    screenshot(page, f"layout-390-{name}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_unread_badge_sits_on_the_bell_on_a_phone(browser, live_server, portal):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    _sign_in(page, live_server, "clara@example.com")
    page.click(".navbar-toggler")
    badge = page.locator("#notification-bell [data-unread-count]")
    badge.wait_for(state="visible")
    icon = page.locator("#notification-bell svg").bounding_box()
    box = badge.bounding_box()
    assert abs(box["x"] - (icon["x"] + icon["width"])) < 30
    context.close()


def test_weekday_names_are_not_broken_and_chips_fit(browser, live_server, portal):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, live_server, "clara@example.com")
    page.goto(f"{live_server}/coaches/me/availability")
    overflow = page.evaluate("""() => [...document.querySelectorAll('.day-column')].filter(
        d => d.scrollWidth > d.clientWidth + 1 ||
             [...d.querySelectorAll('.rule-chip')].some(c => c.getBoundingClientRect().right
                 > d.getBoundingClientRect().right + 1)).length""")
    assert overflow == 0
    heights = page.evaluate("""() => [...document.querySelectorAll('.day-name')].map(
        e => e.getBoundingClientRect().height)""")
    assert max(heights) < 1.6 * min(heights)  # every name on one line: "Wednesday" whole
    context.close()
