"""Records requests: the patient authorises; reception tracks requested → chased → received."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy
from app.auth.models import Role
from app.patients import details
from app.patients import services as patients
from app.records import services as records

bp = Blueprint("records", __name__, template_folder="templates")
MAX_SUMMARY_BYTES = 50 * 1024 * 1024


@bp.route("/records", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def authorise():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    if request.method == "POST":
        if details.missing(patient, "records"):
            return redirect(url_for("patients.details", purpose="records", next=url_for("records.authorise")))
        records.authorise(patient)
        flash("Thank you. We will ask your GP practice for your records and tell you when they arrive.", "success")
        return redirect(url_for("records.authorise"))
    return render_template("records/authorise.html", patient=patient, request_=records.latest(patient),
                           status_text=records.STATUS_TEXT)


@bp.route("/records/requests")
@policy.staff(Role.RECEPTION, Role.ADMIN)
def requests():
    return render_template("records/requests.html", rows=records.open_requests(), names=_names())


def _names() -> dict[int, str]:
    return {p.id: patients.user_of(p).full_name for _, p in records.open_requests()}


@bp.route("/records/requests/<int:request_id>/<any(requested, chased, cancelled):step>", methods=["POST"])
@policy.staff(Role.RECEPTION, Role.ADMIN)
def advance(request_id: int, step: str):
    item = records.get(request_id)
    if item is None:
        abort(404)
    try:
        records.advance(item, step)
    except records.RecordsError as exc:
        flash(str(exc), "error")
        return redirect(url_for("records.requests"))
    flash({"requested": "Marked as requested.", "chased": "Marked as chased.",
           "cancelled": "Request cancelled."}[step], "success")
    return redirect(url_for("records.requests"))


@bp.route("/records/requests/<int:request_id>/attach", methods=["POST"])
@policy.staff(Role.RECEPTION, Role.ADMIN)
def attach(request_id: int):
    from app.documents.services import DocumentRejected

    item = records.get(request_id)
    if item is None:
        abort(404)
    request.max_content_length = MAX_SUMMARY_BYTES  # a GP summary can be a long scanned PDF
    upload = request.files.get("summary")
    if upload is None or not upload.filename:
        flash("Choose the file the GP practice sent.", "error")
        return redirect(url_for("records.requests"))
    try:
        records.attach(item, filename=upload.filename, stream=upload.stream, uploaded_by=current_user.id)
    except (records.RecordsError, DocumentRejected) as exc:
        flash(str(exc), "error")
        return redirect(url_for("records.requests"))
    flash("The records are attached to the patient's documents and the request is closed.", "success")
    return redirect(url_for("records.requests"))
