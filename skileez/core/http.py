"""Reading query-string input safely: whatever a browser sends, never a 500."""

from __future__ import annotations

from flask import request


def is_htmx() -> bool:
    """The one test for "this request came from htmx" (it sends ``HX-Request: true``).

    A URL that answers htmx with a fragment and a browser with the full page
    must say so to caches: ``core.web`` adds ``Vary: HX-Request`` to every response.
    When Back lands on a page htmx no longer holds in its history cache, htmx asks
    for it again with ``HX-History-Restore-Request`` and puts the answer in place
    of the whole body: that request wants the full page, not the fragment.
    """
    return (request.headers.get("HX-Request") == "true"
            and request.headers.get("HX-History-Restore-Request") != "true")


def text_arg(name: str, max_length: int = 100) -> str:
    """A trimmed, length-capped query parameter with NUL characters removed."""
    return (request.args.get(name) or "").replace("\x00", "").strip()[:max_length]


def choice_arg(name: str, allowed) -> str:
    value = request.args.get(name) or ""
    return value if value in allowed else ""


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` literally anywhere (``%`` and ``_`` escaped)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
