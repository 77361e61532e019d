"""My contracts: the landing page of this domain; later issues fill it in."""

from __future__ import annotations

from flask import Blueprint, render_template

from skileez.core.access import require_login

bp = require_login(Blueprint("contracts", __name__, url_prefix="/contracts"))


@bp.get("/")
def index():
    return render_template("contracts/index.html")
