"""Payments: the landing page of this domain; later issues fill it in."""

from __future__ import annotations

from flask import Blueprint, render_template

from skileez.core.access import require_login

bp = require_login(Blueprint("payments", __name__, url_prefix="/payments"))


@bp.get("/")
def index():
    return render_template("payments/index.html")
