"""Third-party browser code served from installed packages, never from a CDN.

htmx comes from the ``django-js-lib-htmx`` wheel (it has no Django dependency:
it only ships the files), so upgrading htmx is a dependency bump, not a copied file.
"""

from __future__ import annotations

from pathlib import Path

import js_lib_htmx
from flask import Blueprint

HTMX_STATIC = Path(js_lib_htmx.__file__).parent / "static" / "htmx"

bp = Blueprint("vendor", __name__, static_folder=str(HTMX_STATIC),
               static_url_path="/static/vendor/htmx")
