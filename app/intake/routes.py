"""The intake's pages: a patient's health questions step by step, the clinician's review queue and
decisions, the admin's questionnaire versions, and the FHIR read endpoints.

Every step works without JavaScript (the form posts, is saved, and redirects). With htmx, a change
to an answer that shows or hides other questions on the page posts the form to the preview
endpoint, which saves it and sends back the re-rendered questions.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy
from app.auth.models import Role
from app.errors import render_error
from app.intake import answers as answer_forms
from app.intake import cli, fhir, services
from app.intake.answers import FieldError
from app.intake.forms import DecisionForm, UploadForm
from app.intake.services import Intake, IntakeError
from app.patients import journey
from app.patients import services as patients
from app.patients.models import Patient

bp = Blueprint("intake", __name__, template_folder="templates")
cli.register(bp)

OUTCOME_LABELS = {"eligible": "Eligible", "needs_clinical_review": "Needs clinical review",
                  "not_eligible": "Not eligible"}
TITLES = {400: "Something in that form was not right", 404: "Page not found",
          409: "That cannot be changed now", 503: "Health questions are not available"}
MAX_ID = 2**31 - 1


@bp.errorhandler(IntakeError)
def _refused(exc: IntakeError):
    return render_error(exc.status, TITLES.get(exc.status), str(exc))


def _patient() -> Patient:
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return patient


def _posted() -> dict[str, list[str]]:
    return {key: request.form.getlist(key) for key in request.form if key != "csrf_token"}


def _return_to() -> str | None:
    return "check" if request.values.get("return") == "check" else None


def _documents_url() -> str | None:
    return url_for("documents.index") if "documents.index" in current_app.view_functions else None


def _step_url(number: int | None, return_to: str | None = None) -> str:
    if number is None:
        return url_for("intake.check")
    return url_for("intake.step", number=number, **({"return": return_to} if return_to else {}))


def _step_context(intake: Intake, number: int, data: dict[str, list[str]], errors: list[FieldError],
                  return_to: str | None) -> dict[str, Any]:
    step = intake.step(number)
    previous = intake.previous_step(number)
    if return_to:
        back = url_for("intake.check")
    elif previous:
        back = _step_url(previous)
    else:
        back = url_for("intake.start") if intake.response is None else url_for("patients.dashboard")
    return {
        "intake": intake, "step": step, "number": number, "position": intake.position(number), "data": data,
        "errors": {e.link_id: e.message for e in errors},
        "errors_list": [{"href": f"#{e.anchor}", "message": e.message,
                         "question": intake.questionnaire.by_link_id[e.link_id].text} for e in errors],
        "controls": services.controls(intake, step), "preview_url": url_for("intake.preview", number=number),
        "urgent_help": intake.urgent_help(), "documents_url": _documents_url(), "back_url": back,
        "return_to": return_to,
    }


# The patient's health questions --------------------------------------------------------------

@bp.route("/intake")
@policy.signed_in(Role.PATIENT)
def start():
    intake = services.open_intake(_patient())
    if intake.submitted:
        return redirect(url_for("intake.check"))
    if intake.response is None:
        return render_template("intake/start.html", intake=intake, first_step=intake.enabled_steps()[0])
    return redirect(_step_url(intake.resume_step()))


@bp.route("/intake/step/<int:number>", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def step(number: int):
    patient = _patient()
    intake = services.open_intake(patient)
    if intake.submitted:
        flash("You have sent your health questions, so they cannot be changed now. Contact the clinic if "
              "something has changed.", "info")
        return redirect(url_for("intake.check"))
    item = intake.step(number)
    return_to = _return_to()
    if request.method == "GET":
        if not intake.is_enabled(item):
            return redirect(_step_url(intake.next_step(number), return_to))
        data = answer_forms.form_data(intake.questionnaire, intake.answers)
        return render_template("intake/step.html", **_step_context(intake, number, data, [], return_to))
    complete = request.form.get("action", "continue") != "later"
    try:
        result = services.save_step(patient, number, _posted(), questionnaire_id=request.form.get("questionnaire"),
                                    complete=complete)
    except services.StepNotAvailable as exc:
        flash(str(exc), "info")
        return redirect(url_for("intake.start"))
    if result.errors:
        context = _step_context(result.intake, number, _posted(), result.errors, return_to)
        return render_template("intake/step.html", **context), 400
    if not complete:
        flash("Your answers are saved. Sign in on any device to carry on where you stopped.", "success")
        return redirect(url_for("patients.dashboard"))
    if return_to:
        # Back to the summary, unless the change opened questions that still need answers.
        incomplete = result.intake.incomplete_steps()
        return redirect(_step_url(incomplete[0], return_to) if incomplete else url_for("intake.check"))
    return redirect(_step_url(result.next_step))


@bp.route("/intake/step/<int:number>/preview", methods=["POST"])
@policy.signed_in(Role.PATIENT)
def preview(number: int):
    """Save what the step's form holds so far and send back its questions, re-rendered for these answers.
    Nothing is reported as missing here: that waits for "Save and continue"."""
    try:
        result = services.save_step(_patient(), number, _posted(), questionnaire_id=request.form.get("questionnaire"),
                                    complete=False)
    except (services.StepNotAvailable, services.AlreadySubmitted):
        if not request.headers.get("HX-Request"):
            raise
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url_for("intake.start")
        return response
    if not request.headers.get("HX-Request"):
        return redirect(url_for("intake.step", number=number))
    context = _step_context(result.intake, number, _posted(), [], _return_to())
    return render_template("intake/_preview.html", **context)


def _render_check(intake: Intake, errors_list: list[dict[str, str]] | None = None, message: str | None = None,
                  status: int = 200):
    sections = services.answers_by_step(intake, include_computed=False)
    missing_ids = {item.link_id for item in answer_forms.missing(intake.questionnaire, intake.answers)}
    return render_template("intake/check.html", intake=intake, sections=sections, missing_ids=missing_ids,
                           errors_list=errors_list or [], message=message), status


@bp.route("/intake/check")
@policy.signed_in(Role.PATIENT)
def check():
    intake = services.open_intake(_patient())
    if intake.response is None:
        return redirect(url_for("intake.start"))
    return _render_check(intake)


@bp.route("/intake/submit", methods=["POST"])
@policy.signed_in(Role.PATIENT)
def submit():
    patient = _patient()
    try:
        services.submit(patient, questionnaire_id=request.form.get("questionnaire"))
    except services.IncompleteIntake as exc:
        intake = services.open_intake(patient)
        errors = [{"href": _step_url(intake.questionnaire.step_of(item), "check") + f"#{item.html_id}--group",
                   "message": answer_forms.required_message(item), "question": item.text} for item in exc.items]
        return _render_check(intake, errors, str(exc), 400)
    except services.AlreadySubmitted:
        pass
    return redirect(url_for("intake.sent"))


@bp.route("/intake/sent")
@policy.signed_in(Role.PATIENT)
def sent():
    response = services.response_for(_patient())
    if response is None or response.status != "completed":
        return redirect(url_for("intake.start"))
    return render_template("intake/sent.html", response=response, findings=services.findings_of(response))


# Staff ---------------------------------------------------------------------------------------

def _staff_patient(patient_id: int) -> Patient:
    patient = patients.get(patient_id) if patient_id <= MAX_ID else None
    if patient is None:
        abort(404)
    policy.require(policy.can_view_patient(current_user, patient), subject=("patient", patient_id),
                   patient_id=patient_id)
    return patient


def _decision_form(patient: Patient, form: DecisionForm | None = None) -> DecisionForm | None:
    if current_user.role is not Role.CLINICIAN or not services.can_read_answers(current_user, patient):
        return None
    form = form or DecisionForm(formdata=None)
    form.outcome.choices = services.decision_choices(patient)
    return form if form.outcome.choices else None


def _render_staff_answers(patient: Patient, form: DecisionForm | None = None, status: int = 200):
    can_read = services.can_read_answers(current_user, patient)
    patients.record_read(patient, section="intake" if can_read else "intake_status")
    response = services.response_for(patient)
    sections, scores = [], []
    if can_read and response is not None:
        intake = services.open_intake(patient)
        sections = services.answers_by_step(intake, include_computed=True)
        scores = services.scores(intake)
    state = journey.state_of(patient)
    return render_template(
        "intake/staff_answers.html", patient=patient, user=patients.user_of(patient), response=response,
        can_read=can_read, sections=sections, scores=scores,
        findings=services.findings_of(response) if can_read else [],
        decisions=services.decisions_of(patient) if can_read else [], stage=state.label, stage_state=state.value,
        status=services.status_text(patient), outcome_labels=OUTCOME_LABELS,
        form=_decision_form(patient, form) if response is not None and response.status == "completed" else None,
    ), status


@bp.route("/patients/<int:patient_id>/intake")
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def staff_answers(patient_id: int):
    return _render_staff_answers(_staff_patient(patient_id))


@bp.route("/patients/<int:patient_id>/intake/decision", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def decide(patient_id: int):
    patient = _staff_patient(patient_id)
    form = DecisionForm()
    form.outcome.choices = services.decision_choices(patient)
    if form.validate_on_submit():
        try:
            services.decide(patient, form.outcome.data, form.reason.data, clinician=current_user)
        except services.DecisionError as exc:
            getattr(form, exc.field).errors.append(str(exc))
        else:
            flash(f"Decision recorded: {OUTCOME_LABELS[form.outcome.data].lower()}.", "success")
            if request.form.get("back") == "reviews":
                return redirect(url_for("intake.reviews"))
            return redirect(url_for("intake.staff_answers", patient_id=patient.id))
    return _render_staff_answers(patient, form, 400)


@bp.route("/intake/reviews")
@policy.staff(Role.CLINICIAN)
def reviews():
    queue = services.review_queue(current_user)
    sections, scores, forms = {}, {}, {}
    for entry in queue:
        patients.record_read(entry.patient, section="intake")
        intake = services.open_intake(entry.patient)
        sections[entry.patient.id] = services.answers_by_step(intake, include_computed=True)
        scores[entry.patient.id] = services.scores(intake)
        forms[entry.patient.id] = _decision_form(entry.patient)
    return render_template("intake/reviews.html", queue=queue, sections=sections, scores=scores, forms=forms)


# Questionnaire versions (admin) --------------------------------------------------------------

@bp.route("/admin/questionnaires")
@policy.staff(Role.ADMIN)
def questionnaires():
    versions = services.versions()
    current = (services.current_version(url) for url in {v.url for v in versions})
    return render_template("intake/questionnaires.html", versions=versions,
                           current_ids={v.id for v in current if v is not None})


def _read_upload(storage, label: str) -> Any:
    data = storage.stream.read(services.MAX_UPLOAD_BYTES + 1)
    if len(data) > services.MAX_UPLOAD_BYTES:
        raise services.LoadError([f"The {label} file is larger than 1 MB."])
    return services.read_json(data, storage.filename or label)


@bp.route("/admin/questionnaires/upload", methods=["GET", "POST"])
@policy.staff(Role.ADMIN, step_up=True)
def upload_questionnaire():
    form = UploadForm()
    problems: list[str] = []
    if form.validate_on_submit():
        try:
            resource = _read_upload(form.questionnaire.data, "questionnaire")
            rules_file = form.rules.data
            rules_data = _read_upload(rules_file, "rules") if rules_file and rules_file.filename else None
            result = services.load(resource, rules_data, loaded_by=current_user)
        except services.LoadError as exc:
            problems = exc.problems
        else:
            version = result.version
            flash(f"Loaded {version.title} version {version.version}." if result.created else
                  f"{version.title} version {version.version} was already loaded: nothing changed.", "success")
            return redirect(url_for("intake.questionnaires"))
    status = 400 if form.errors or problems else 200
    return render_template("intake/upload.html", form=form, problems=problems, release=fhir.FHIR_RELEASE), status


# FHIR ----------------------------------------------------------------------------------------

def _fhir(resource: dict[str, Any], status: int = 200):
    return current_app.response_class(json.dumps(resource, ensure_ascii=False), status=status,
                                      mimetype=fhir.MEDIA_TYPE)


def _not_found(kind: str, resource_id: str):
    return _fhir(fhir.operation_outcome("not-found", f"No {kind} with id {resource_id[:64]}"), 404)


def _numeric_id(resource_id: str) -> int | None:
    return int(resource_id) if resource_id.isdigit() and int(resource_id) <= MAX_ID else None


@bp.route("/fhir/QuestionnaireResponse/<resource_id>")
@policy.staff(Role.CLINICIAN, Role.ADMIN)
def fhir_questionnaire_response(resource_id: str):
    number = _numeric_id(resource_id)
    response = services.get_response(number) if number is not None else None
    if response is None:
        return _not_found("QuestionnaireResponse", resource_id)
    patient = patients.get(response.patient_id)
    policy.require(services.can_read_answers(current_user, patient), subject=("intake_response", response.id),
                   patient_id=patient.id)
    patients.record_read(patient, section="intake")
    return _fhir(services.fhir_response(response))


@bp.route("/fhir/Questionnaire/<resource_id>")
@policy.staff()
def fhir_questionnaire(resource_id: str):
    number = _numeric_id(resource_id)
    version = services.get_version(number) if number is not None else None
    if version is None:
        return _not_found("Questionnaire", resource_id)
    return _fhir(services.fhir_questionnaire(version))
