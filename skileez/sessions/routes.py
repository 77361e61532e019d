"""My sessions: the landing page of this domain; later issues fill it in."""

from __future__ import annotations

from flask import Blueprint, render_template

from skileez.core.access import require_login

bp = require_login(Blueprint("sessions", __name__, url_prefix="/sessions"))


@bp.get("/")
def index():
    return render_template("sessions/index.html")
