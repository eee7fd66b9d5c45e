"""The patient's dashboard and details; the staff views of patients: search, record, onboarding board."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy
from app.auth.models import Role
from app.patients import details as patient_details
from app.patients import onboarding
from app.patients import services as patients
from app.patients.checklist import next_step
from app.patients.journey import JourneyState

bp = Blueprint("patients", __name__, template_folder="templates")


def _own_patient():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return patient


@bp.route("/dashboard")
@policy.signed_in(Role.PATIENT)
def dashboard():
    patient = _own_patient()
    steps = patients.checklist(patient)
    return render_template("patients/dashboard.html", patient=patient, steps=steps, next_step=next_step(steps),
                           state=JourneyState(patient.journey_state), reasons=onboarding.reasons_of(patient))


@bp.route("/details/<any(booking, records):purpose>", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def details(purpose: str):
    patient = _own_patient()
    spec = patient_details.PURPOSES[purpose]
    target = request.values.get("next") or ""
    safe_next = target if target.startswith("/") and not target.startswith("//") and "\\" not in target \
        and not urlsplit(target).netloc else url_for("patients.dashboard")
    values = {name: getattr(patient, name) or "" for name in spec.required + spec.optional}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = {name: request.form.get(name, "")[:300] for name in values}
        try:
            patient_details.update(patient, purpose, values)
        except patient_details.DetailsError as exc:
            errors = exc.errors
        else:
            flash("Your details are saved.", "success")
            return redirect(safe_next)
    return render_template("patients/details.html", purpose=purpose, spec=spec, values=values, errors=errors,
                           labels=patient_details.LABELS, next=safe_next), 400 if errors else 200


@bp.route("/staff")
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.PHARMACIST, Role.ADMIN)
def staff_home():
    term = request.args.get("q", "").strip()[:100]
    can_search = current_user.role in (Role.RECEPTION, Role.ADMIN, Role.CLINICIAN)
    results = patients.search(term) if term and can_search else []
    if current_user.role is Role.CLINICIAN:
        results = [(p, u) for p, u in results if policy.can_view_patient(current_user, p)]
    template = "patients/_search_results.html" if request.headers.get("HX-Request") else "patients/staff_home.html"
    return render_template(template, term=term, results=results)


@bp.route("/staff/onboarding")
@policy.staff(Role.RECEPTION, Role.ADMIN, Role.CLINICIAN)
def onboarding_board():
    state = request.args.get("state") or None
    term = request.args.get("q", "").strip()[:100] or None
    waiting = request.args.get("waiting", "")
    today = dt.date.today()
    try:
        start = dt.date.fromisoformat(request.args.get("from") or (today - dt.timedelta(days=30)).isoformat())
        end = dt.date.fromisoformat(request.args.get("to") or today.isoformat())
    except ValueError:
        abort(400)
    if start > end or (end - start).days > 366 * 2:
        abort(400)
    filters = patients.BoardFilter(state=state if state in patients.ONBOARDING_STATES else None, term=term,
                                   waiting_days=int(waiting) if waiting.isdigit() and int(waiting) < 3650 else None)
    board = patients.onboarding_board(filters)
    funnel = patients.funnel(start, end)
    context = dict(board=board, funnel=funnel, filters=filters, start=start, end=end,
                   states={s: JourneyState(s).label for s in patients.ONBOARDING_STATES})
    if request.headers.get("HX-Request"):
        return render_template("patients/_board.html", **context)
    return render_template("patients/onboarding_board.html", **context)


@bp.route("/patients/<int:patient_id>")
@policy.signed_in(Role.PATIENT, Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def record(patient_id: int):
    patient = patients.get(patient_id)
    if patient is None:
        abort(404)
    policy.require(policy.can_view_patient(current_user, patient), subject=("patient", patient_id),
                   patient_id=patient_id)
    patients.record_read(patient, section="summary")
    return render_template("patients/record.html", patient=patient, user=patients.user_of(patient),
                           state=JourneyState(patient.journey_state), reasons=onboarding.reasons_of(patient),
                           address=patient_details.address_lines(patient))
