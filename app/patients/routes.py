"""The patient's dashboard and the staff view of a patient's record."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user

from app import policy
from app.auth.models import Role
from app.patients import services as patients

bp = Blueprint("patients", __name__, template_folder="templates")


@bp.route("/dashboard")
@policy.signed_in(Role.PATIENT)
def dashboard():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return render_template("patients/dashboard.html", patient=patient)


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


@bp.route("/patients/<int:patient_id>")
@policy.signed_in(Role.PATIENT, Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def record(patient_id: int):
    patient = patients.get(patient_id)
    if patient is None:
        abort(404)
    policy.require(policy.can_view_patient(current_user, patient), subject=("patient", patient_id),
                   patient_id=patient_id)
    patients.record_read(patient, section="summary")
    return render_template("patients/record.html", patient=patient, user=patients.user_of(patient))
