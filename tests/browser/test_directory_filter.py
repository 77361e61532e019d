"""Issue 8 item 9: the directory's price filter applies as you type, at desktop width,
without pressing Enter; a price without a currency says what to do beside the field."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


@pytest.fixture
def directory(make_user, make_offering):
    cheap = make_user("coach", name="Clara Cheap", email="clara@example.com")
    dear = make_user("coach", name="Dora Dear", email="dora@example.com")
    make_offering(cheap, price=2000, currency="EUR")
    make_offering(dear, price=9000, currency="EUR")


def test_typing_a_max_price_narrows_the_results(page, live_server, directory):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server}/coaches/")
    results = page.locator("#directory-results")
    expect(results).to_contain_text("Dora Dear")
    expect(page.get_by_test_id("directory-search")).to_be_visible()
    page.select_option("#currency", "EUR")
    page.locator("#max_price").press_sequentially("50")
    expect(results).not_to_contain_text("Dora Dear")
    expect(results).to_contain_text("Clara Cheap")


def test_a_price_without_currency_says_what_to_do_beside_the_field(page, live_server,
                                                                    directory):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server}/coaches/")
    page.locator("#min_price").press_sequentially("40")
    expect(page.get_by_test_id("price-feedback")).to_contain_text("choose a currency")
    expect(page.locator("#directory-results")).to_contain_text("Dora Dear")
