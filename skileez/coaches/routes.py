"""The public coach directory (offerings and availability arrive with the coaches issue)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from sqlalchemy import func, select

from skileez.auth.models import User
from skileez.core.access import public, require_login
from skileez.core.http import like_pattern, text_arg
from skileez.extensions import db

bp = require_login(Blueprint("coaches", __name__, url_prefix="/coaches"))


@bp.get("/")
@public
def index():
    query = text_arg("q")
    statement = select(User).where(User.role == "coach", User.status == "active")
    if query:
        statement = statement.where(func.lower(User.name).like(like_pattern(query),
                                                               escape="\\"))
    page = db.paginate(statement.order_by(User.name, User.id),
                       per_page=current_app.config["PER_PAGE"], error_out=False)
    return render_template("coaches/index.html", page=page, q=query)
