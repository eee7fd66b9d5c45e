"""Notifications: the list and its header badge, each person's channel preferences, the front desk's failed
deliveries, and the patient's timeline."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy
from app.auth.models import Role
from app.notifications import events
from app.notifications import services as notifications
from app.notifications import timeline as timelines
from app.patients import services as patients

bp = Blueprint("notifications", __name__, template_folder="templates")

FRONT_DESK = notifications.ALERTED_ROLES
#: How often the timeline's live part asks for changes.
POLL_SECONDS = 20


@bp.app_template_filter("clinic_time")
def clinic_time(moment: dt.datetime | None) -> str:
    """3 December 2026 at 09:05, in the clinic's time zone."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(current_app.config["CLINIC_TIMEZONE"]))
    return f"{local.day} {local:%B %Y} at {local:%H:%M}"


@bp.route("/notifications")
@policy.signed_in()
def index():
    before = request.args.get("before", type=int)
    items = notifications.recent(current_user, before_id=before)
    return render_template("notifications/index.html", items=items, unread=notifications.unread_count(current_user),
                           before=before, more=len(items) == 30)


@bp.route("/notifications/<int:notification_id>/open")
@policy.signed_in()
def open_one(notification_id: int):
    notice = notifications.get(notification_id)
    if notice is None:
        abort(404)
    policy.require(notifications.can_open(current_user, notice), subject=("notification", notification_id))
    notifications.mark_read(notice)
    return redirect(notice.link)


@bp.route("/notifications/read", methods=["POST"])
@policy.signed_in()
def mark_all_read():
    if request.form.get("all") != "1":
        abort(400)
    count = notifications.mark_all_read(current_user)
    flash(f"Marked {count} as read." if count else "Nothing was unread.", "success")
    return redirect(url_for("notifications.index"))


@bp.route("/notifications/badge")
@policy.signed_in()
def badge():
    """The header's link with the unread count (loaded by htmx on every page)."""
    return render_template("notifications/_badge.html", unread=notifications.unread_count(current_user))


@bp.route("/notifications/preferences", methods=["GET", "POST"])
@policy.signed_in()
def preferences():
    if request.method == "POST":
        chosen = [tuple(value.split(":", 1)) for value in request.form.getlist("on") if ":" in value]
        notifications.save_preferences(current_user, chosen)
        flash("Your choices are saved.", "success")
        return redirect(url_for("notifications.preferences"))
    critical = sorted({spec.name for spec in _safety_critical_events()})
    return render_template("notifications/preferences.html", prefs=notifications.preferences_of(current_user),
                           critical=critical)


def _safety_critical_events() -> list[events.Event]:
    audience = "staff" if current_user.is_staff else "patient"
    return [spec for spec in events.EVENTS.values() if spec.safety_critical
            and events.CATEGORIES[spec.category][1] in (audience, "everyone")]


# Failed deliveries ----------------------------------------------------------------------------

@bp.route("/staff/delivery-problems")
@policy.staff(*FRONT_DESK)
def delivery_problems():
    return render_template("notifications/delivery_problems.html", rows=notifications.open_alerts())


@bp.route("/staff/delivery-problems/banner")
@policy.staff(*FRONT_DESK)
def delivery_banner():
    """A banner for the front desk's home pages (htmx-loaded); empty when nothing failed."""
    return render_template("notifications/_delivery_banner.html", count=notifications.open_alert_count())


def _alert(alert_id: int):
    alert = notifications.get_alert(alert_id)
    if alert is None:
        abort(404)
    return alert


@bp.route("/staff/delivery-problems/<int:alert_id>/resend", methods=["POST"])
@policy.staff(*FRONT_DESK)
def resend(alert_id: int):
    alert = _alert(alert_id)
    if request.form.get("confirm") != "1":
        abort(400)
    try:
        notifications.resend(alert, current_user)
    except notifications.NotificationError as exc:
        flash(str(exc), "error")
    else:
        flash("Queued again: it goes as soon as the mail server answers.", "success")
    return redirect(url_for("notifications.delivery_problems"))


@bp.route("/staff/delivery-problems/<int:alert_id>/dismiss", methods=["POST"])
@policy.staff(*FRONT_DESK)
def dismiss(alert_id: int):
    alert = _alert(alert_id)
    note = request.form.get("note", "")
    if "note" not in request.form:
        abort(400)
    try:
        notifications.dismiss(alert, current_user, note)
    except notifications.NotificationError as exc:
        flash(str(exc), "error")
        return render_template("notifications/delivery_problems.html", rows=notifications.open_alerts(),
                               error_for=alert.id, error=str(exc)), 400
    flash("Dismissed. The note is kept in the record.", "success")
    return redirect(url_for("notifications.delivery_problems"))


# The patient's timeline -----------------------------------------------------------------------

@bp.route("/timeline")
@policy.signed_in(Role.PATIENT)
def timeline():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    live = request.headers.get("HX-Request") == "true"
    # A poll: answer "nothing new" without building the page when the fingerprint is unchanged.
    if live and request.args.get("since") and request.args["since"] == timelines.marker(patient):
        return "", 204
    view = timelines.build(patient)
    context = {"view": view, "poll_seconds": POLL_SECONDS}
    if live:
        response = current_app.make_response(render_template("notifications/_timeline_live.html", **context))
        response.headers["HX-Trigger"] = "verity-notifications"  # the header badge reloads its count
        return response
    return render_template("notifications/timeline.html", **context)
