"""Pieces of the route fuzz (tests/test_fuzz_routes.py) that know nothing of Skileez.

A request class that records which query parameters, form fields, JSON bodies and
WTForms forms a view reads; a parser for the forms a page renders (as a browser
would submit them); and the hostile values a browser can send.
"""

from __future__ import annotations

from html.parser import HTMLParser

from flask import Request
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.utils import cached_property

# What the view handling the current request read; reset before every request.
READS: dict = {"args": set(), "form": set(), "json": False, "forms": set()}


def reset_reads() -> None:
    READS["args"] = set()
    READS["form"] = set()
    READS["json"] = False
    READS["forms"] = set()


class _Recording(ImmutableMultiDict):
    kind = "form"

    def _seen(self, key):
        if isinstance(key, str):
            READS[self.kind].add(key)

    def __getitem__(self, key):
        self._seen(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self._seen(key)
        return super().__contains__(key)

    def get(self, key, default=None, type=None):
        self._seen(key)
        return super().get(key, default, type)

    def getlist(self, key, type=None):
        self._seen(key)
        return super().getlist(key, type)


class _RecordingArgs(_Recording):
    kind = "args"


class RecordingRequest(Request):
    """Flask's request, noting every parameter name a view asks for."""

    parameter_storage_class = _Recording

    @cached_property
    def args(self):
        return _RecordingArgs(ImmutableMultiDict(super().args))

    def get_json(self, *args, **kwargs):
        READS["json"] = True
        return super().get_json(*args, **kwargs)

    @property
    def is_json(self):
        READS["json"] = True
        return super().is_json


def record_form_fields(form) -> None:
    """Called from a patched FlaskForm.__init__: every field of every form a view builds."""
    READS["forms"].add(type(form).__name__)
    for field in form:
        READS["form"].add(field.name)


class FormParser(HTMLParser):
    """The forms of a page, each as (method, action, [(name, value)]) a browser would send."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._form: dict | None = None
        self._select: dict | None = None
        self._textarea: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._form = {"method": (attrs.get("method") or "get").upper(),
                          "action": attrs.get("action"), "fields": [], "names": set()}
            self.forms.append(self._form)
            return
        form = self._form
        if form is None:
            return
        name = attrs.get("name")
        if tag == "input" and name:
            kind = (attrs.get("type") or "text").lower()
            form["names"].add(name)
            if kind in ("checkbox", "radio"):
                if "checked" in attrs:
                    form["fields"].append((name, attrs.get("value") or "on"))
            elif kind not in ("submit", "button", "image", "reset", "file"):
                form["fields"].append((name, attrs.get("value") or ""))
        elif tag == "button" and name:
            form["names"].add(name)
        elif tag == "select" and name:
            form["names"].add(name)
            self._select = {"name": name, "first": None, "selected": None}
        elif tag == "option" and self._select is not None:
            value = attrs.get("value", "")
            if self._select["first"] is None:
                self._select["first"] = value
            if "selected" in attrs:
                self._select["selected"] = value
        elif tag == "textarea" and name:
            form["names"].add(name)
            self._textarea = {"name": name, "text": ""}

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea["text"] += data

    def handle_endtag(self, tag):
        if self._form is None:
            return
        if tag == "select" and self._select is not None:
            chosen = self._select["selected"] if self._select["selected"] is not None \
                else self._select["first"]
            if chosen is not None:
                self._form["fields"].append((self._select["name"], chosen))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self._form["fields"].append((self._textarea["name"],
                                         self._textarea["text"].removeprefix("\n")))
            self._textarea = None
        elif tag == "form":
            self._form = None


def page_forms(html: str) -> list[dict]:
    parser = FormParser()
    try:
        parser.feed(html)
    except Exception:  # pragma: no cover - a broken page is a failure found elsewhere
        return []
    return parser.forms


# Every value goes once into every parameter, the others keeping their valid values.
HOSTILE = [
    "",
    "x" * 100_000,
    "a\x00b",
    "\r\n\t\x01\x1b\x7f\x85",
    "😀👍🏽‍👩‍👩‍👧 ﷽",
    "-1",
    str(2**63),
    str(10**30),
    "1e309",
    "0001-01-01",
    "9999-12-31",
    "0001-01-01T00:30:00+05:00",
    "9999-12-31T23:00:00-05:00",
    "Mars/Olympus",
    "/\n/evil.example",
]

# Bodies that are JSON but not the object a view expects (plus one that is not JSON).
JSON_BODIES = ['"pm_x"', "[]", "null", "1", "[[1, 2]]", '{"payment_method": {"a": 1}}',
               '{"payment_method": "pm_' + "x" * 300 + '"}', "{"]

# Leaf values for a signed webhook's fields.
JSON_VALUES = ["pm_x", "9" * 30, 10**30, None, [], {}, "x" * 10_000]


def short(value) -> str:
    """A payload as it reads in a report: long strings shortened."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return repr(value) if len(value) <= 120 else f"<{len(value)} chars {value[:40]!r}…>"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(short(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {short(v)}" for k, v in value.items()) + "}"
    return repr(value)
