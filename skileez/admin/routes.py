"""Admin pages: users, the local mailbox, failed jobs.

The money pages (``admin.payments``) add their views to this blueprint; the app
factory imports both modules by name.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, url_for
from flask_login import current_user
from redis.exceptions import RedisError
from sqlalchemy import func, or_, select

from skileez.admin import jobs as job_admin
from skileez.admin.forms import AccountStatusForm
from skileez.auth import operations as account_operations
from skileez.auth.forms import ConfirmForm
from skileez.auth.models import ROLES, User
from skileez.core.access import require_role
from skileez.core.http import choice_arg, is_htmx, like_pattern, text_arg
from skileez.core.models import AuditEvent
from skileez.core.pagination import paginate
from skileez.core.unit_of_work import see_other, submit, transaction
from skileez.extensions import db
from skileez.notifications import compose, mail
from skileez.notifications.models import OutboxEmail

bp = require_role(Blueprint("admin", __name__, url_prefix="/admin"), "admin")

MAIL_STATUSES = ("pending", "sending", "sent", "failed")
# An email's history is a few attempts; the cap keeps a pathological one bounded.
MAIL_HISTORY_SHOWN = 100


@bp.get("/")
def index():
    counts = dict(db.session.execute(
        select(User.role, func.count()).group_by(User.role)).all())
    mail_counts = dict(db.session.execute(
        select(OutboxEmail.status, func.count()).group_by(OutboxEmail.status)).all())
    failed_jobs = None
    if current_app.config["JOBS_BACKEND"] == "rq":
        try:
            failed_jobs = job_admin.failed_job_count()
        except RedisError:
            failed_jobs = None
    recent_audit = db.session.scalars(
        select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(10)).all()
    return render_template("admin/index.html", counts=counts, mail_counts=mail_counts,
                           failed_jobs=failed_jobs, recent_audit=recent_audit)


@bp.get("/users")
def users():
    query = text_arg("q")
    role = choice_arg("role", ROLES)
    status = choice_arg("status", ("active", "deactivated"))
    statement = select(User)
    if query:
        pattern = like_pattern(query)
        statement = statement.where(or_(func.lower(User.name).like(pattern, escape="\\"),
                                        User.email.like(pattern, escape="\\")))
    if role:
        statement = statement.where(User.role == role)
    if status:
        statement = statement.where(User.status == status)
    page = paginate(statement.order_by(User.created_at.desc(), User.id.desc()),
                       per_page=current_app.config["PER_PAGE"])
    template = "admin/_users_table.html" if is_htmx() \
        else "admin/users.html"
    return render_template(template, page=page, q=query, role=role, status=status,
                           roles=ROLES)


def _user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.route("/users/<int:user_id>/<any(deactivate, reactivate):action>",
          methods=["GET", "POST"])
def change_user_status(user_id: int, action: str):
    """Ask for confirmation on GET; act on POST. Works with and without JavaScript."""
    user = _user_or_404(user_id)
    form = AccountStatusForm()
    verb = "reactivated" if action == "reactivate" else "deactivated and signed out"
    decision = account_operations.can_set_active(user, action == "reactivate", current_user)
    return submit(form, lambda: account_operations.set_active(
        user, action == "reactivate", actor=current_user, reason=form.reason.data or None),
        allowed=decision,
        page=lambda: render_template("admin/confirm_user_status.html", user=user, form=form,
                                     action=action, decision=decision),
        done=lambda _: see_other(url_for("admin.users"),
                                 f"{user.name}'s account has been {verb}."))


@bp.get("/mail", endpoint="mail")
def mail_index():
    status = choice_arg("status", MAIL_STATUSES)
    query = text_arg("q")
    statement = select(OutboxEmail)
    if status:
        statement = statement.where(OutboxEmail.status == status)
    if query:
        pattern = like_pattern(query)
        statement = statement.where(or_(
            OutboxEmail.to_address.like(pattern, escape="\\"),
            func.lower(OutboxEmail.subject).like(pattern, escape="\\")))
    page = paginate(statement.order_by(OutboxEmail.created_at.desc(),
                                          OutboxEmail.id.desc()),
                       per_page=current_app.config["PER_PAGE"])
    return render_template("admin/mail.html", page=page, status=status, q=query,
                           statuses=MAIL_STATUSES,
                           smtp=bool(current_app.config["MAIL_SERVER"]))


def _email_or_404(email_id: int) -> OutboxEmail:
    email = db.session.get(OutboxEmail, email_id)
    if email is None:
        abort(404)
    return email


@bp.get("/mail/<int:email_id>")
def mail_detail(email_id: int):
    email = _email_or_404(email_id)
    history = db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == OutboxEmail.__tablename__,
                                 AuditEvent.object_id == email.id)
        .order_by(AuditEvent.created_at, AuditEvent.id).limit(MAIL_HISTORY_SHOWN)).all()
    return render_template("admin/mail_detail.html", email=email, history=history,
                           written=compose.preview(email), form=ConfirmForm())


@bp.get("/mail/<int:email_id>/html")
def mail_html(email_id: int):
    """The HTML part, sandboxed: no scripts, no forms, shown inside an iframe."""
    email = _email_or_404(email_id)
    written = compose.preview(email)
    response = current_app.response_class(written[2] if written else "", mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; img-src data: https:; style-src 'unsafe-inline'; "
        "frame-ancestors 'self'")
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.post("/mail/<int:email_id>/retry")
def mail_retry(email_id: int):
    email = _email_or_404(email_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    with transaction():
        mail.retry(email, actor=current_user)
        mail.queue_delivery(email.id)
    return see_other(url_for("admin.mail_detail", email_id=email.id),
                     "The email will be sent again now.")


@bp.get("/jobs")
def jobs():
    enabled = current_app.config["JOBS_BACKEND"] == "rq"
    failed, error = [], None
    if enabled:
        try:
            failed = job_admin.failed_jobs()
        except RedisError as exc:
            error = f"Redis could not be reached: {exc}"
    failed_mail = db.session.scalars(
        select(OutboxEmail).where(OutboxEmail.status.in_(("failed",)) |
                                  (OutboxEmail.last_error.is_not(None) &
                                   (OutboxEmail.status == "pending")))
        .order_by(OutboxEmail.updated_at.desc()).limit(50)).all()
    return render_template("admin/jobs.html", enabled=enabled, failed=failed, error=error,
                           failed_mail=failed_mail, form=ConfirmForm())


@bp.post("/jobs/<queue_name>/<job_id>/<any(requeue, delete):action>")
def job_action(queue_name: str, job_id: str, action: str):
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    if current_app.config["JOBS_BACKEND"] != "rq" or \
            queue_name not in current_app.config["RQ_QUEUES"]:
        abort(404)
    try:
        done = job_admin.act_on_failed_job(queue_name, job_id, action)
    except RedisError as exc:
        return see_other(url_for("admin.jobs"), f"Redis could not be reached: {exc}", "danger")
    if not done:
        abort(404)
    return see_other(url_for("admin.jobs"), "The job has been queued again."
                     if action == "requeue" else "The failed job has been deleted.")
