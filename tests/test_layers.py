"""The package layers: contracts kept, and every announcement heard by its listener."""

from __future__ import annotations

from pathlib import Path

import pytest

from skileez.core import events

ROOT = Path(__file__).resolve().parent.parent

# What lower packages announce, and who must be listening once an app exists.
ANNOUNCEMENTS = {
    "session_booked": "skileez.payments.listeners",
    "holds_expired": "skileez.payments.listeners",
    "sessions_closed": "skileez.payments.listeners",
    "calendar_blocks": "skileez.sessions.listeners",
    "account_created": "skileez.coaches.listeners",
}


@pytest.mark.parametrize(("name", "module"), sorted(ANNOUNCEMENTS.items()))
def test_every_announcement_has_its_one_listener(app, name, module):
    heard_by = [listener.__module__ for listener in events.listeners(name)]
    assert heard_by == [module]


def test_listeners_answer_in_order_and_register_once():
    name = "test_layers.question"
    try:
        def first(**data):
            return ("first", data)

        events.listen(name)(first)
        events.listen(name)(first)
        events.listen(name)(lambda **data: "second")
        assert events.announce(name, x=1) == [("first", {"x": 1}), "second"]
        assert events.announce("test_layers.nobody_listens") == []
    finally:
        events._listeners.pop(name, None)
        events._listeners.pop("test_layers.nobody_listens", None)


def test_import_contracts_are_kept(monkeypatch):
    """The same check ``make test`` runs, so a plain pytest run catches a layer broken too."""
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0
