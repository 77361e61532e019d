"""Read a rendered HTML form's fields and current values, the way a browser submits them."""

from __future__ import annotations

from html.parser import HTMLParser


class _FormReader(HTMLParser):
    def __init__(self, action: str | None):
        super().__init__(convert_charrefs=True)
        self.want_action = action
        self.forms: list[dict] = []
        self._form: dict | None = None
        self._textarea: str | None = None
        self._select: str | None = None
        self._select_first: str | None = None
        self._option: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._form = {"action": attrs.get("action", ""), "method": attrs.get("method", "get"),
                          "fields": {}}
            return
        if self._form is None:
            return
        fields = self._form["fields"]
        name = attrs.get("name")
        if tag == "input" and name:
            kind = attrs.get("type", "text")
            if kind in {"submit", "button", "image", "reset", "file"}:
                return
            if kind in {"checkbox", "radio"}:
                if "checked" in attrs:
                    fields[name] = attrs.get("value", "on")
                return
            fields[name] = attrs.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            fields[name] = ""
        elif tag == "select" and name:
            self._select, self._select_first = name, None
        elif tag == "option" and self._select:
            value = attrs.get("value")
            self._option = {"value": value, "text": ""}
            if self._select_first is None:
                self._select_first = value
            if "selected" in attrs:
                self._form["fields"][self._select] = value

    def handle_data(self, data):
        if self._textarea and self._form is not None:
            self._form["fields"][self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "textarea" and self._textarea and self._form is not None:
            # Browsers drop one newline right after <textarea>, as WTForms expects.
            value = self._form["fields"][self._textarea]
            self._form["fields"][self._textarea] = value.removeprefix("\r\n").removeprefix("\n")
            self._textarea = None
        elif tag == "select" and self._select and self._form is not None:
            self._form["fields"].setdefault(self._select, self._select_first or "")
            self._select = None
        elif tag == "form" and self._form is not None:
            self.forms.append(self._form)
            self._form = None


def form_values(html: str, *, index: int | None = None, with_field: str | None = None) -> dict:
    """The fields of one form on the page: the first that has ``with_field``, or by index."""
    reader = _FormReader(None)
    reader.feed(html)
    forms = reader.forms
    if with_field is not None:
        forms = [f for f in forms if with_field in f["fields"]]
        assert forms, f"no form with a field {with_field!r}"
        return dict(forms[0]["fields"])
    return dict(forms[index or 0]["fields"])
