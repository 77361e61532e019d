"""Pages for looking back and ahead: history, CSV export, statistics, calendar feeds.

They share the sessions blueprint (and its sign-in requirement); only the ICS feed opts
out, because calendar apps fetch it without cookies and the token in its URL is the key.
"""

from __future__ import annotations

from flask import Response, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from skileez.auth.forms import ConfirmForm
from skileez.core.access import public
from skileez.core.pagination import paginate
from skileez.extensions import db
from skileez.policy import get_policy
from skileez.sessions import calendar, history
from skileez.sessions.routes import _is_htmx, _session_for_participant, bp

ICS_MIMETYPE = "text/calendar"


@bp.get("/", endpoint="index")
def history_index():
    filters = history.parse_filters(request.args)
    page = paginate(history.history_statement(current_user, filters),
                    per_page=current_app.config.get("PER_PAGE", 20))
    context = {"page": page, "filters": filters, "statuses": history.STATUS_LABELS}
    if _is_htmx():
        return render_template("sessions/_history_table.html", oob_feedback=True, **context)
    return render_template("sessions/index.html", **context)


@bp.get("/export.csv")
def export_csv():
    filters = history.parse_filters(request.args)
    body = history.export_csv(current_user, filters)
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": 'attachment; filename="skileez-sessions.csv"'})


@bp.get("/statistics")
def statistics():
    window = get_policy().late_cancellation_window
    return render_template("sessions/statistics.html",
                           stats=history.statistics_for(current_user),
                           late_window_hours=int(window.total_seconds() // 3600))


@bp.get("/calendar")
def calendar_page():
    if not current_user.calendar_token:
        calendar.ensure_token(current_user)
        db.session.commit()
    return render_template("sessions/calendar.html", form=ConfirmForm(),
                           feed_url=_feed_url(current_user.calendar_token))


@bp.post("/calendar/new-link")
def new_calendar_link():
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash("That form had expired, so your link was not changed. Please try again.",
              "warning")
        return redirect(url_for("sessions.calendar_page"), code=303)
    calendar.rotate_token(current_user)
    db.session.commit()
    flash("Here is your new calendar link. The old one no longer works: replace it in "
          "every calendar app that used it.", "success")
    return redirect(url_for("sessions.calendar_page"), code=303)


def _feed_url(token: str) -> str:
    return url_for("sessions.calendar_feed", token=token, _external=True)


def _page_url(session) -> str:
    return url_for("sessions.detail", session_id=session.id, _external=True)


def _ics_response(body: bytes, filename: str | None = None) -> Response:
    response = Response(body, mimetype=ICS_MIMETYPE)
    if filename:
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/calendar/<token>.ics")
@public
def calendar_feed(token: str):
    user = calendar.user_for_token(token)
    if user is None:
        return Response("No calendar at this address. It may have been replaced by a "
                        "new link.", status=404, mimetype="text/plain")
    body = calendar.build_calendar(calendar.feed_sessions(user), user, _page_url,
                                   name="Skileez sessions")
    return _ics_response(body)


@bp.get("/<int:session_id>/calendar.ics")
def session_ics(session_id: int):
    session = _session_for_participant(session_id)
    body = calendar.build_calendar([session], current_user, _page_url)
    return _ics_response(body, f"skileez-session-{session.id}.ics")
