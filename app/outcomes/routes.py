"""Outcomes' pages: the patient's questionnaires, check-in, charts, side-effect reports and health-data
imports; the clinician's page and consultation panel; the clinic's summary, overdue list, exports and
instruments.

Health-data uploads speak the chunked, resumable protocol of app/documents/routes.py (what
app/static/js/uploads.js sends), at /outcomes/imports/uploads:

1. POST /outcomes/imports/uploads   filename, size -> 201 {"id", "offset", "size", "chunk_bytes", "status_url",
   "chunk_url", "complete_url"}; 413/422 {"error"} for an empty or too large file
2. POST <chunk_url>   raw bytes with Content-Range: bytes first-last/size -> 200 {"offset", "size", "done"};
   409 {"error", "offset"} to resume from the server's offset; 422 for a zip or binary file
3. GET <status_url>   -> {"offset", "size", "status": "open" | ...}
4. POST <complete_url>   -> 201 {"document": {"id", "kind", "filename", "url"}} (url: the import's progress page)

Without JavaScript, the page's form posts the file (up to the request size limit) to the same checks.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user
from werkzeug.http import parse_content_range_header

from app import policy
from app.auth.models import Role
from app.errors import render_error
from app.intake import answers as answer_forms
from app.outcomes import (
    adverse,
    answering,
    exports,
    history,
    imports,
    instruments,
    parsers,
    schedule,
    services,
    settings,
    summary,
)
from app.outcomes import cli as outcomes_cli
from app.patients import services as patients
from app.patients.models import Patient

bp = Blueprint("outcomes", __name__, template_folder="templates")
outcomes_cli.register(bp)

MAX_ID = 2**31 - 1
READERS = (Role.CLINICIAN, Role.ADMIN)


@bp.app_template_filter("outcome_number")
def _outcome_number(value) -> str:
    from app.outcomes.scoring import number

    return number(value)


def _own_patient() -> Patient:
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return patient


def _staff_patient(patient_id: int, *, scores: bool = True) -> Patient:
    patient = patients.get(patient_id) if patient_id <= MAX_ID else None
    if patient is None:
        abort(404)
    allowed = services.can_read_outcomes(current_user, patient) if scores else policy.can_view_patient(current_user,
                                                                                                         patient)
    policy.require(allowed, subject=("patient", patient_id), patient_id=patient_id)
    return patient


def _is_htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


def _date(prefix: str) -> dt.date | None:
    parts = [request.form.get(f"{prefix}_{p}", "").strip() for p in ("day", "month", "year")]
    if not any(parts):
        return None
    try:
        return dt.date(int(parts[2]), int(parts[1]), int(parts[0]))
    except ValueError:
        return dt.date.min  # a date that is no date: the service says so


# The patient ---------------------------------------------------------------------------------

@bp.route("/outcomes")
@policy.signed_in(Role.PATIENT)
def mine():
    patient = _own_patient()
    waiting = schedule.open_dues(patient)
    views = history.chart_views(patient, element_prefix="mine")
    titles = {d.id: (instruments.current(d.instrument_url).title if instruments.current(d.instrument_url) else "")
              for d in waiting}
    return render_template("outcomes/mine.html", patient=patient, waiting=waiting, titles=titles, views=views,
                           today_checkin=services.checkin_of(patient, dt.date.today()),
                           label=schedule.timepoint_label)


def _answer_context(form: answering.Form, data: dict[str, list[str]], errors: list) -> dict[str, Any]:
    return {"form": form, "intake": form, "step": form.root, "data": data,
            "errors": {e.link_id: e.message for e in errors},
            "errors_list": [{"href": f"#{e.anchor}", "message": e.message,
                             "question": form.questionnaire.by_link_id[e.link_id].text} for e in errors],
            "controls": form.controls(), "preview_url": url_for("outcomes.preview", due_id=form.due.id),
            "urgent_help": form.urgent_help(), "documents_url": None, "label": schedule.timepoint_label}


def _own_due(due_id: int):
    patient = _own_patient()
    due = schedule.get_due(due_id) if due_id <= MAX_ID else None
    if due is None:
        abort(404)
    policy.require(due.patient_id == patient.id, subject=("outcome_due", due_id), patient_id=due.patient_id)
    return patient, due


def _posted() -> dict[str, list[str]]:
    return {key: request.form.getlist(key) for key in request.form if key not in ("csrf_token", "action")}


@bp.route("/outcomes/due/<int:due_id>", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def answer(due_id: int):
    patient, due = _own_due(due_id)
    try:
        if request.method == "GET":
            form = answering.open_form(patient, due)
            if form.completed or due.status != schedule.DUE:
                flash("You have already answered this questionnaire. Thank you.", "info")
                return redirect(url_for("outcomes.mine"))
            data = answer_forms.form_data(form.questionnaire, form.answers)
            return render_template("outcomes/answer.html", **_answer_context(form, data, []))
        complete = request.form.get("action", "submit") != "later"
        result = answering.save(patient, due, _posted(), author=current_user, complete=complete)
    except answering.AnswerError as exc:
        flash(str(exc), "info")
        return redirect(url_for("outcomes.mine"))
    if result.errors:
        return render_template("outcomes/answer.html", **_answer_context(result.form, _posted(), result.errors)), 400
    if not complete:
        flash("Your answers are saved. Come back to finish them at any time.", "success")
        return redirect(url_for("outcomes.mine"))
    names = ", ".join(f"{s.display}: {_outcome_number(s.value)}" for s in result.scores)
    flash(f"Thank you: your answers are sent to your clinician. {names}.", "success")
    return redirect(url_for("outcomes.mine") + ("#urgent-help" if result.form.urgent_help() else ""))


@bp.route("/outcomes/due/<int:due_id>/preview", methods=["POST"])
@policy.signed_in(Role.PATIENT)
def preview(due_id: int):
    """Save what the form holds and send back its questions re-rendered (urgent help shows at once)."""
    patient, due = _own_due(due_id)
    try:
        result = answering.save(patient, due, _posted(), author=current_user, complete=False)
    except answering.AnswerError:
        if not _is_htmx():
            return redirect(url_for("outcomes.mine"))
        response = Response("", 204)
        response.headers["HX-Redirect"] = url_for("outcomes.mine")
        return response
    if not _is_htmx():
        return redirect(url_for("outcomes.answer", due_id=due_id))
    return render_template("intake/_fields.html", **_answer_context(result.form, _posted(), []))


@bp.route("/outcomes/check-in", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def checkin():
    patient = _own_patient()
    today = dt.date.today()
    existing = services.checkin_of(patient, today)
    values: dict[str, Any] = {"pain": str(existing.pain) if existing and existing.pain is not None else "",
                              "sleep": str(existing.sleep) if existing and existing.sleep is not None else "",
                              "side_effects": list(existing.side_effects) if existing else [],
                              "note": existing.note or "" if existing else ""}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = {"pain": request.form.get("pain", ""), "sleep": request.form.get("sleep", ""),
                  "side_effects": request.form.getlist("side_effects"), "note": request.form.get("note", "")[:5000]}
        try:
            services.save_checkin(patient, values, today=today)
        except services.CheckinError as exc:
            errors = exc.errors
        else:
            flash("Check-in saved. Thank you.", "success")
            return redirect(url_for("outcomes.mine"))
    return render_template("outcomes/checkin.html", values=values, errors=errors, effects=services.SIDE_EFFECTS,
                           today=today, existing=existing), 400 if errors else 200


def _event_values() -> dict[str, Any]:
    return {"description": request.form.get("description", "")[:8000], "started_on": _date("started"),
            "ended_on": _date("ended"), "severity": request.form.get("severity"),
            "criteria": request.form.getlist("criteria"), "outcome": request.form.get("outcome") or "unknown",
            "product_id": request.form.get("product_id") or None}


def _report_page(patient: Patient, *, staff: bool):
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    if request.method == "POST":
        values = _event_values()
        try:
            event = adverse.report(patient, values, by=current_user)
        except adverse.AdverseEventError as exc:
            errors = exc.errors
        else:
            if event.serious:
                flash("Thank you. Your clinician has been alerted now. If you feel very unwell, call 999 or go to "
                      "A&E." if not staff else "Recorded. The prescriber has been alerted.", "warning")
            else:
                flash("Thank you: your clinician will read this." if not staff else "Recorded.", "success")
            if staff:
                return redirect(url_for("outcomes.adverse_event", event_id=event.id))
            return redirect(url_for("outcomes.mine"))
    return render_template("outcomes/report_event.html", patient=patient, staff=staff, errors=errors,
                           values=request.form, products=adverse.products_for(patient),
                           severities=adverse.SEVERITIES, criteria=adverse.SERIOUS_CRITERIA,
                           outcomes=adverse.OUTCOMES), 400 if errors else 200


@bp.route("/outcomes/side-effects", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def report_event():
    return _report_page(_own_patient(), staff=False)


@bp.route("/outcomes/export.<any(csv, json):fmt>")
@policy.signed_in(Role.PATIENT)
def my_export(fmt: str):
    patient = _own_patient()
    return _export_patient(patient, fmt, identified=True, filename="my-progress")


def _export_patient(patient: Patient, fmt: str, *, identified: bool, filename: str):
    members = [(patient, exports.context_of(patient))]
    exports.record_export(by=current_user, scope="patient", patient_id=patient.id, count=1, identified=identified,
                          fmt=fmt)
    if fmt == "csv":
        return _csv_response(exports.csv_lines(members, None, identified=identified), f"{filename}.csv")
    data = exports.bundle(members, None, identified=identified, with_responses=identified)
    return _download(exports.bundle_json(data), "application/fhir+json", f"{filename}.json")


def _csv_response(lines, filename: str) -> Response:
    """Written to a spooled temporary file first (memory up to 4 MB, then disk), so a large cohort neither
    fills memory nor keeps a database session open while the browser downloads it."""
    spool = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024)  # noqa: SIM115 (send_file closes it)
    for line in lines:
        spool.write(line.encode("utf-8"))
    spool.seek(0)
    return send_file(spool, mimetype="text/csv", as_attachment=True, download_name=filename)


def _download(body: str, mimetype: str, filename: str) -> Response:
    response = current_app.response_class(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# Health-data imports --------------------------------------------------------------------------

@bp.route("/outcomes/imports", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def imports_page():
    patient = _own_patient()
    error = None
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            error = "Choose a CSV file or an Apple Health export.xml"
        else:
            upload.stream.seek(0, 2)
            size = upload.stream.tell()
            upload.stream.seek(0)
            try:
                row = imports.stage_file(patient, by=current_user, filename=upload.filename, stream=upload.stream,
                                         size=size)
            except imports.ImportRefused as exc:
                error = str(exc)
            else:
                return redirect(url_for("outcomes.import_status", import_id=row.id))
    return render_template("outcomes/imports.html", rows=imports.imports_of(patient), error=error,
                           limits=settings.current(), columns=parsers.COLUMNS), 400 if error else 200


@bp.route("/outcomes/imports/list")
@policy.signed_in(Role.PATIENT)
def imports_list():
    return render_template("outcomes/_imports.html", rows=imports.imports_of(_own_patient()))


@bp.route("/outcomes/imports/template.csv")
@policy.signed_in(Role.PATIENT)
def import_template():
    return _download(parsers.TEMPLATE, "text/csv", "verity-health-data-template.csv")


def _json_error(message: str, status: int, **extra):
    return jsonify(error=message, **extra), status


def _upload_state(row) -> dict[str, Any]:
    return {"id": row.id, "offset": row.received_bytes, "size": row.size_bytes,
            "status": "open" if row.status == imports.UPLOADING else row.status,
            "chunk_bytes": settings.current().import_chunk_bytes,
            "status_url": url_for("outcomes.import_upload_status", import_id=row.id),
            "chunk_url": url_for("outcomes.import_chunk", import_id=row.id),
            "complete_url": url_for("outcomes.import_complete", import_id=row.id)}


def _own_import(import_id: str):
    row = imports.get(import_id)
    if row is None:
        abort(404)
    patient = patients.for_user(current_user)
    policy.require(patient is not None and row.patient_id == patient.id and row.user_id == current_user.id,
                   subject=("outcome_import", import_id), patient_id=row.patient_id)
    return row


@bp.route("/outcomes/imports/uploads", methods=["POST"])
@policy.signed_in(Role.PATIENT)
def import_create():
    patient = _own_patient()
    size_text = (request.form.get("size") or "").strip()
    if not size_text.isdigit():
        return _json_error("Send the file's size in bytes.", 400)
    try:
        row = imports.start(patient, by=current_user, filename=request.form.get("filename", ""), size=int(size_text))
    except imports.ImportRefused as exc:
        return _json_error(str(exc), exc.status)
    return jsonify(_upload_state(row)), 201


@bp.route("/outcomes/imports/uploads/<import_id>")
@policy.signed_in(Role.PATIENT)
def import_upload_status(import_id: str):
    return jsonify(_upload_state(_own_import(import_id)))


@bp.route("/outcomes/imports/uploads/<import_id>", methods=["POST"])
@policy.signed_in(Role.PATIENT)
def import_chunk(import_id: str):
    row = _own_import(import_id)
    content_range = parse_content_range_header(request.headers.get("Content-Range"))
    if content_range is None or content_range.units != "bytes" or content_range.start is None:
        return _json_error("Send the chunk with a Content-Range header: bytes first-last/size.", 400)
    length = content_range.stop - content_range.start
    if length > settings.current().import_chunk_bytes or content_range.length not in (None, row.size_bytes):
        return _json_error(f"Send at most {settings.current().import_chunk_bytes} bytes at a time, of the size "
                           "declared.", 400)
    try:
        row = imports.append(row, start_at=content_range.start, stream=request.stream)
    except imports.UploadConflict as exc:
        return jsonify(error=str(exc), offset=exc.offset), 409
    except imports.ImportRefused as exc:
        return _json_error(str(exc), exc.status)
    return jsonify(offset=row.received_bytes, size=row.size_bytes, done=row.received_bytes == row.size_bytes)


@bp.route("/outcomes/imports/uploads/<import_id>/complete", methods=["POST"])
@policy.signed_in(Role.PATIENT)
def import_complete(import_id: str):
    row = _own_import(import_id)
    try:
        row = imports.complete(row)
    except imports.UploadConflict as exc:
        return jsonify(error=str(exc), offset=exc.offset), 409
    except imports.ImportRefused as exc:
        return _json_error(str(exc), exc.status)
    return jsonify(document={"id": row.id, "kind": "health-data", "kind_label": "Health data",
                             "filename": row.filename,
                             "url": url_for("outcomes.import_status", import_id=row.id)}), 201


@bp.route("/outcomes/imports/<import_id>")
@policy.signed_in(Role.PATIENT)
def import_status(import_id: str):
    row = _own_import(import_id)
    if _is_htmx():
        return render_template("outcomes/_import_status.html", row=row)
    return render_template("outcomes/import_status.html", row=row)


# Staff ---------------------------------------------------------------------------------------

@bp.route("/patients/<int:patient_id>/outcomes")
@policy.staff(*READERS)
def staff_page(patient_id: int):
    patient = _staff_patient(patient_id)
    patients.record_read(patient, section="outcomes")
    instruments.ensure_built_in()
    return render_template(
        "outcomes/staff.html", patient=patient, user=patients.user_of(patient),
        views=history.chart_views(patient, element_prefix="staff"), changes=history.treatment_changes(patient),
        dues=schedule.dues_of(patient)[:30], plan=schedule.schedule_of(patient),
        responses=answering.responses_of(patient)[:30], events=adverse.events_of(patient),
        checkins=services.recent_checkins(patient), effects=services.SIDE_EFFECTS,
        instruments=instruments.current_all(), label=schedule.timepoint_label, is_overdue=schedule.is_overdue,
        titles={i.url: i.title for i in instruments.all_versions()},
        instrument_titles={i.id: i.title for i in instruments.all_versions()})


@bp.route("/patients/<int:patient_id>/outcomes/panel")
@policy.staff(*READERS)
def panel(patient_id: int):
    """The consultation side panel's fragment: the scores over time, what is due, and alerts."""
    patient = _staff_patient(patient_id)
    patients.record_read(patient, section="outcomes")
    data = services.panel_data(patient)
    titles = {i.url: i.title for i in instruments.all_versions()}
    return render_template("outcomes/_panel.html", patient=patient, data=data, titles=titles,
                           label=schedule.timepoint_label)


@bp.route("/outcomes/responses/<int:response_id>")
@policy.staff(*READERS)
def response(response_id: int):
    found = answering.get_response(response_id) if response_id <= MAX_ID else None
    if found is None:
        abort(404)
    patient = _staff_patient(found.patient_id)
    patients.record_read(patient, section="outcomes")
    return render_template("outcomes/response.html", patient=patient, response=found,
                           rows=answering.answered_rows(found), instrument=instruments.get(found.instrument_id),
                           observations=[o for o in history.observations_of(patient) if o.response_id == found.id])


@bp.route("/patients/<int:patient_id>/outcomes/request", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def request_questionnaire(patient_id: int):
    patient = _staff_patient(patient_id)
    key = request.form.get("instrument", "")
    if not key:
        return render_error(400, "Choose a questionnaire", "Choose which questionnaire to ask for.")
    try:
        due = schedule.request_extra(patient, key, by=current_user)
    except schedule.ScheduleError as exc:
        flash(str(exc), "warning")
    else:
        flash(f"Asked for. The patient has been told (questionnaire {due.id}).", "success")
    return redirect(url_for("outcomes.staff_page", patient_id=patient.id))


@bp.route("/patients/<int:patient_id>/outcomes/schedule", methods=["GET", "POST"])
@policy.staff(Role.CLINICIAN)
def schedule_edit(patient_id: int):
    patient = _staff_patient(patient_id)
    instruments.ensure_built_in()
    plan = schedule.schedule_of(patient)
    errors: dict[str, str] = {}
    months_text = ", ".join(str(m) for m in plan.months)
    chosen = list(plan.follow_up)
    if request.method == "POST":
        months_text = request.form.get("months", "")[:200]
        chosen = request.form.getlist("instruments")
        parts = [p.strip() for p in months_text.replace(";", ",").split(",") if p.strip()]
        if any(not p.isdigit() for p in parts):
            errors["months"] = "Enter months as whole numbers separated by commas, like 1, 3, 6, 12"
        else:
            try:
                schedule.set_schedule(patient, months=[int(p) for p in parts], instrument_keys=chosen,
                                      by=current_user)
            except schedule.ScheduleError as exc:
                errors = exc.errors
            else:
                flash("Schedule saved. It applies from the next time point.", "success")
                return redirect(url_for("outcomes.staff_page", patient_id=patient.id))
    return render_template("outcomes/schedule.html", patient=patient, user=patients.user_of(patient), plan=plan,
                           months_text=months_text, chosen=chosen, errors=errors,
                           instruments=instruments.current_all()), 400 if errors else 200


@bp.route("/patients/<int:patient_id>/outcomes/export.<any(csv, json):fmt>")
@policy.staff(*READERS)
def patient_export(patient_id: int, fmt: str):
    patient = _staff_patient(patient_id)
    return _export_patient(patient, fmt, identified=True, filename=f"outcomes-patient-{patient.id}")


@bp.route("/patients/<int:patient_id>/outcomes/adverse-events/new", methods=["GET", "POST"])
@policy.staff(Role.CLINICIAN)
def staff_report_event(patient_id: int):
    return _report_page(_staff_patient(patient_id), staff=True)


def _event(event_id: int):
    event = adverse.get(event_id) if event_id <= MAX_ID else None
    if event is None:
        abort(404)
    patient = _staff_patient(event.patient_id)
    return event, patient


@bp.route("/outcomes/adverse-events/<int:event_id>")
@policy.staff(*READERS)
def adverse_event(event_id: int):
    event, patient = _event(event_id)
    patients.record_read(patient, section="adverse_events")
    return render_template("outcomes/adverse_event.html", event=event, patient=patient,
                           user=patients.user_of(patient), card=adverse.yellow_card_for(event, by=current_user),
                           severities=adverse.SEVERITIES)


@bp.route("/outcomes/adverse-events/<int:event_id>/review", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def review_event(event_id: int):
    event, _patient = _event(event_id)
    adverse.mark_reviewed(event, current_user)
    flash("Marked as reviewed.", "success")
    return redirect(url_for("outcomes.adverse_event", event_id=event.id))


@bp.route("/outcomes/adverse-events/<int:event_id>/yellow-card.csv")
@policy.staff(*READERS)
def yellow_card(event_id: int):
    event, _patient = _event(event_id)
    lines = ["section,field,value"] + [",".join(json.dumps(v, ensure_ascii=False) for v in (f.section, f.name, f.value))
                                       for f in adverse.yellow_card_for(event, by=current_user)]
    return _download("\n".join(lines) + "\n", "text/csv", f"yellow-card-{event.id}.csv")


@bp.route("/outcomes/overdue")
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def overdue():
    mine_only = current_user if current_user.role is Role.CLINICIAN else None
    rows = [(due, patient, patients.user_of(patient)) for due, patient in schedule.overdue(clinician=mine_only)]
    return render_template("outcomes/overdue.html", rows=rows, label=schedule.timepoint_label,
                           titles={i.url: i.title for i in instruments.all_versions()}, today=dt.date.today())


@bp.route("/outcomes/summary")
@policy.staff(*READERS)
def clinic_summary():
    return render_template("outcomes/summary.html", summary=summary.clinic_summary(user=current_user))


def _cohort_filters() -> tuple[exports.CohortFilter, dict[str, str]]:
    errors: dict[str, str] = {}
    product = request.args.get("product", "")
    filters = exports.CohortFilter(product_id=int(product) if product.isdigit() and int(product) <= MAX_ID else None,
                                   condition_code=(request.args.get("condition") or None),
                                   identified=request.args.get("identified") == "1" and current_user.role is Role.ADMIN)
    for name in ("date_from", "date_to"):
        text = request.args.get(name, "").strip()
        if text:
            try:
                setattr(filters, name, dt.date.fromisoformat(text))
            except ValueError:
                errors[name] = "Enter a date like 2026-03-14"
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        errors["date_to"] = "The end date is before the start date"
    return filters, errors


@bp.route("/outcomes/export")
@policy.staff(*READERS)
def cohort_export():
    from app.prescribing import formulary

    filters, errors = _cohort_filters()
    fmt = request.args.get("format")
    if fmt in ("csv", "json") and not errors:
        members = exports.cohort(filters, user=current_user)
        exports.record_export(by=current_user, scope="cohort", patient_id=None, count=len(members),
                              identified=filters.identified, fmt=fmt)
        if fmt == "csv":
            return _csv_response(exports.csv_lines(members, filters, identified=filters.identified),
                                 "outcomes-cohort.csv")
        data = exports.bundle(members, filters, identified=filters.identified)
        return _download(exports.bundle_json(data), "application/fhir+json", "outcomes-cohort.json")
    return render_template("outcomes/export.html", filters=filters, errors=errors,
                           products=formulary.products(), conditions=exports.conditions(),
                           args=request.args), 400 if errors else 200


# Instruments (admin) -------------------------------------------------------------------------

@bp.route("/admin/outcome-instruments")
@policy.staff(Role.ADMIN)
def instruments_index():
    instruments.ensure_built_in()
    return render_template("outcomes/instruments.html", versions=instruments.all_versions(),
                           current_ids={i.id for i in instruments.current_all()}, clinic=settings.current())


@bp.route("/admin/outcome-instruments/upload", methods=["GET", "POST"])
@policy.staff(Role.ADMIN, step_up=True)
def instrument_upload():
    problems: list[str] = []
    if request.method == "POST":
        upload = request.files.get("questionnaire")
        if upload is None or not upload.filename:
            problems = ["Choose the Questionnaire's JSON file."]
        else:
            data = upload.stream.read(instruments.MAX_UPLOAD_BYTES + 1)
            try:
                if len(data) > instruments.MAX_UPLOAD_BYTES:
                    raise instruments.InstrumentError(["The file is larger than 1 MB."])
                result = instruments.load(instruments.read_json(data, upload.filename), loaded_by=current_user)
            except instruments.InstrumentError as exc:
                problems = exc.problems
            else:
                flash(f"Loaded {result.instrument.title} version {result.instrument.version}." if result.created else
                      "That version was already loaded: nothing changed.", "success")
                return redirect(url_for("outcomes.instruments_index"))
    return render_template("outcomes/instrument_upload.html", problems=problems), 400 if problems else 200
