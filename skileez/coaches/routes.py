"""The public coach directory (offerings and availability arrive with the coaches issue)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from sqlalchemy import func, or_, select

from skileez.auth.models import User
from skileez.core.access import public, require_login
from skileez.extensions import db

bp = require_login(Blueprint("coaches", __name__, url_prefix="/coaches"))


@bp.get("/")
@public
def index():
    query = (request.args.get("q") or "").strip()[:100]
    statement = select(User).where(User.role == "coach", User.status == "active")
    if query:
        pattern = f"%{query.lower()}%"
        statement = statement.where(or_(func.lower(User.name).like(pattern)))
    page = db.paginate(statement.order_by(User.name, User.id),
                       per_page=current_app.config["PER_PAGE"], error_out=False)
    return render_template("coaches/index.html", page=page, q=query)
