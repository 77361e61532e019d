"""The public home page and the machine endpoints (favicon, health check).

The signed-in dashboard reads every domain, so it lives above them in
``skileez.dashboard``; the home page only sends signed-in people there.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    send_from_directory,
    url_for,
)
from flask_login import current_user
from sqlalchemy import select

from skileez.core.access import public, require_login
from skileez.extensions import db

bp = require_login(Blueprint("core", __name__))


@bp.get("/")
@public
def home():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    return render_template("core/home.html")


@bp.get("/favicon.ico")
@public
def favicon():
    """Browsers ask for /favicon.ico whatever the page links; answer with our icon."""
    return send_from_directory(current_app.static_folder, "img/favicon.svg",
                               mimetype="image/svg+xml", max_age=86400)


@bp.get("/healthz")
@public
def health():
    """For load balancers: the process is up and the database answers."""
    db.session.execute(select(1))
    return {"status": "ok"}

