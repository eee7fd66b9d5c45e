"""The consultation's pages: the call page (patient, clinician, guest), the pre-call check, the waiting
board, the join and check tokens, the clinician's side panel fragments and the notes.

The call itself runs in the browser (app/static/js/consult*.js) against the signaling server; these
routes only hand out short-lived tokens and render what the side panel and the boards show.
"""

from __future__ import annotations

import datetime as dt

import click
from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from markupsafe import Markup

from app import policy, security
from app.auth.models import Role
from app.consult import services
from app.consult.forms import AmendForm, GuestForm, NoteForm
from app.consult.models import CLINICIAN, FINAL, GUEST, PATIENT
from app.database import utcnow
from app.patients import services as patients
from app.scheduling import services as scheduling
from app.scheduling import settings as scheduling_settings
from app.scheduling.models import Appointment

bp = Blueprint("consult", __name__, template_folder="templates")

SIGNED_IN_PEOPLE = (Role.PATIENT, Role.CLINICIAN, Role.RECEPTION, Role.ADMIN, Role.PHARMACIST)


def is_htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


def media_page(body: str, status: int = 200) -> Response:
    """A page that uses the camera, microphone or screen: only these pages lift the Permissions-Policy ban."""
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Permissions-Policy"] = security.PERMISSIONS_MEDIA
    return response


def _appointment(appointment_id: int, *, seats: tuple[str, ...] = (PATIENT, CLINICIAN)) -> tuple[Appointment, str]:
    appointment = scheduling.get(appointment_id)
    if appointment is None:
        abort(404)
    seat = services.seat_of(current_user, appointment)
    policy.require(seat in seats, subject=("appointment", appointment_id), patient_id=appointment.patient_id)
    return appointment, seat


def _clinician_appointment(appointment_id: int) -> Appointment:
    return _appointment(appointment_id, seats=(CLINICIAN,))[0]


def _local(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(scheduling_settings.clinic_zone())


@bp.app_template_global("consult_join")
def consult_join(appointment: Appointment) -> Markup:
    """For the appointment page: `{{ consult_join(item) }}` shows the join button (or when it opens)."""
    if not current_user.is_authenticated:
        return Markup("")
    link = services.join_link(appointment, current_user)
    # render_template autoescapes every value: its output is safe HTML.
    return Markup(render_template("consult/_join.html", link=link)) if link else Markup("")  # noqa: S704


@bp.app_template_global("consult_waiting")
def consult_waiting(appointment: Appointment) -> Markup:
    """For the appointments board: `{{ consult_waiting(a) }}` says who is waiting and for how long."""
    presence = services.presence_of(appointment)
    if presence is None:
        return Markup("")
    return Markup(render_template("consult/_presence_tag.html", presence=presence,  # noqa: S704 (autoescaped)
                                  now=utcnow(), appointment=appointment))


# The call page -------------------------------------------------------------------------------------

@bp.route("/consult/<int:appointment_id>")
@policy.signed_in(Role.PATIENT, Role.CLINICIAN)
def call(appointment_id: int):
    appointment, seat = _appointment(appointment_id)
    patient = patients.get(appointment.patient_id)
    if seat == CLINICIAN:
        patients.record_read(patient, section="consultation")
    context = dict(appointment=appointment, seat=seat, patient=patient,
                   patient_name=patients.user_of(patient).full_name,
                   clinician_name=scheduling.notify.clinician_name(appointment.clinician_id),
                   problem=services.join_problem(appointment), starts=_local(appointment.starts_at),
                   token_url=url_for("consult.token", appointment_id=appointment.id),
                   end_url=url_for("patients.record", patient_id=patient.id),
                   session=services.session_of(appointment), guest_form=GuestForm(formdata=None),
                   prescribing_url=url_for("prescribing.panel", patient_id=patient.id,
                                           appointment_id=appointment.id),
                   auto_admit=request.args.get("admit") == "1")
    return media_page(render_template("consult/call.html", **context))


@bp.route("/consult/<int:appointment_id>/token", methods=["POST"])
@policy.signed_in(Role.PATIENT, Role.CLINICIAN)
def token(appointment_id: int):
    appointment, _seat = _appointment(appointment_id)
    try:
        ticket = services.issue_join(appointment, current_user)
    except services.ConsultError as exc:
        return jsonify({"error": str(exc)}), 409
    return jsonify({**ticket.as_json(), "appointment": appointment.id})


# The pre-call check -------------------------------------------------------------------------------

@bp.route("/consult/check")
@policy.signed_in(*SIGNED_IN_PEOPLE)
def precall():
    return media_page(render_template("consult/check.html"))


@bp.route("/consult/check/token", methods=["POST"])
@policy.signed_in(*SIGNED_IN_PEOPLE)
def precall_token():
    return jsonify(services.issue_precall(current_user).as_json())


# The waiting board -------------------------------------------------------------------------------

@bp.route("/consult/waiting")
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def waiting():
    today = _local(utcnow()).date()
    rows = services.waiting_board(current_user, today)
    context = dict(rows=rows, now=utcnow(), is_clinician=current_user.role is Role.CLINICIAN,
                   zone=scheduling_settings.clinic_zone())
    if is_htmx():
        return render_template("consult/_waiting.html", **context)
    return render_template("consult/waiting.html", **context)


# The clinician's side panel --------------------------------------------------------------------------

@bp.route("/consult/<int:appointment_id>/panel/summary")
@policy.staff(Role.CLINICIAN)
def panel_summary(appointment_id: int):
    appointment = _clinician_appointment(appointment_id)
    patient = patients.get(appointment.patient_id)
    patients.record_read(patient, section="consultation summary")
    return render_template("consult/_summary.html", summary=services.summary(patient, appointment),
                           appointment=appointment)


@bp.route("/consult/<int:appointment_id>/panel/intake")
@policy.staff(Role.CLINICIAN)
def panel_intake(appointment_id: int):
    from app.intake import services as intake

    appointment = _clinician_appointment(appointment_id)
    patient = patients.get(appointment.patient_id)
    steps = []
    if intake.response_for(patient) is not None:
        patients.record_read(patient, section="intake answers")
        steps = intake.answers_by_step(intake.open_intake(patient), include_computed=False)
    return render_template("consult/_intake.html", steps=steps, status=intake.status_text(patient))


@bp.route("/consult/<int:appointment_id>/panel/documents")
@policy.staff(Role.CLINICIAN)
def panel_documents(appointment_id: int):
    from app.documents import services as documents

    appointment = _clinician_appointment(appointment_id)
    patient = patients.get(appointment.patient_id)
    patients.record_read(patient, section="documents")
    return render_template("consult/_documents.html", documents=documents.documents_of(patient.id))


# The note ------------------------------------------------------------------------------------------

def _note_fragment(appointment: Appointment, *, form=None, amend_form=None, message: str | None = None,
                   status: int = 200):
    note = services.note_of(appointment)
    revisions = services.revisions_of(note) if note else []
    current = revisions[-1] if revisions else None
    if form is None:
        form = NoteForm(formdata=None, data={"text": current.text if current else ""})
    if amend_form is None and current is not None and current.status == FINAL:
        amend_form = AmendForm(formdata=None, data={"text": current.text, "based_on": str(current.number)})
    html = render_template("consult/_note.html", appointment=appointment, note=note, revisions=revisions,
                           current=current, form=form, amend_form=amend_form, message=message)
    return html, status


def _back_to_call(appointment: Appointment):
    return redirect(url_for("consult.call", appointment_id=appointment.id) + "#note")


@bp.route("/consult/<int:appointment_id>/note", methods=["GET", "POST"])
@policy.staff(Role.CLINICIAN)
def note(appointment_id: int):
    appointment = _clinician_appointment(appointment_id)
    if request.method == "GET":
        return _note_fragment(appointment)
    if "text" not in request.form:
        abort(400)
    form = NoteForm()
    if not form.validate():
        return render_template("consult/_note_status.html", error=form.text.errors[0]), 400
    try:
        revision = services.save_draft(appointment, current_user, form.text.data)
    except services.ConsultError as exc:
        return render_template("consult/_note_status.html", error=str(exc)), 409
    if not is_htmx():
        return _back_to_call(appointment)
    return render_template("consult/_note_status.html", revision=revision, saved=_local(revision.saved_at))


@bp.route("/consult/<int:appointment_id>/note/sign", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def note_sign(appointment_id: int):
    appointment = _clinician_appointment(appointment_id)
    if "text" not in request.form:
        abort(400)
    form = NoteForm()
    if not form.validate():
        return _note_fragment(appointment, form=form, status=400)
    try:
        services.finalise(appointment, current_user, form.text.data)
    except services.ConsultError as exc:
        return _note_fragment(appointment, form=form, message=str(exc), status=409)
    if not is_htmx():
        return _back_to_call(appointment)
    return _note_fragment(appointment, message="Note signed.")


@bp.route("/consult/<int:appointment_id>/note/amend", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def note_amend(appointment_id: int):
    appointment = _clinician_appointment(appointment_id)
    form = AmendForm()
    if not form.validate():
        if not request.form:
            abort(400)
        return _note_fragment(appointment, amend_form=form, status=400)
    based_on = int(form.based_on.data) if (form.based_on.data or "").isdigit() else None
    try:
        services.amend(appointment, current_user, form.text.data, form.reason.data, based_on=based_on)
    except services.ConsultError as exc:
        return _note_fragment(appointment, amend_form=form, message=str(exc), status=409)
    if not is_htmx():
        return _back_to_call(appointment)
    return _note_fragment(appointment, message="Amendment saved as a new revision.")


@bp.route("/consult/patients/<int:patient_id>/notes")
@policy.staff(Role.CLINICIAN, Role.ADMIN)
def patient_notes(patient_id: int):
    patient = patients.get(patient_id)
    if patient is None:
        abort(404)
    policy.require(services.can_read_notes(current_user, patient), subject=("patient", patient_id),
                   patient_id=patient_id)
    patients.record_read(patient, section="consultation notes")
    notes = [(note, revisions, scheduling.get(note.appointment_id)) for note, revisions in services.notes_of(patient)]
    return render_template("consult/notes.html", patient=patient, name=patients.user_of(patient).full_name,
                           notes=notes, people=_names({user_id for _, revs, _ in notes for r in revs
                                                     for user_id in (r.author_id, r.signed_by) if user_id}))


def _names(user_ids: set[int]) -> dict[int, str]:
    return {user_id: scheduling.notify.clinician_name(user_id) for user_id in user_ids}


# Guests --------------------------------------------------------------------------------------------

@bp.route("/consult/<int:appointment_id>/guest", methods=["POST"])
@policy.staff(Role.CLINICIAN)
def invite_guest(appointment_id: int):
    appointment = _clinician_appointment(appointment_id)
    form = GuestForm()
    if not form.validate():
        if not request.form:
            abort(400)
        return render_template("consult/_guest.html", guest_form=form, appointment=appointment), 400
    try:
        key = services.invite_guest(appointment, current_user, name=form.name.data, role=form.role.data)
    except services.ConsultError as exc:
        return render_template("consult/_guest.html", guest_form=form, appointment=appointment,
                               message=str(exc)), 409
    link = url_for("consult.guest", link=services.guest_link_token(appointment, key), _external=True)
    return render_template("consult/_guest.html", guest_form=GuestForm(formdata=None), appointment=appointment,
                           link=link, session=services.session_of(appointment))


def _guest_or_404(link: str) -> tuple[Appointment, str]:
    found = services.guest_from_link(link)
    if found is None:
        abort(404)
    return found


@bp.route("/consult/guest/<link>")
@policy.public
def guest(link: str):
    appointment, _key = _guest_or_404(link)
    session = services.session_of(appointment)
    context = dict(appointment=appointment, seat=GUEST, patient=None, patient_name=None,
                   clinician_name=scheduling.notify.clinician_name(appointment.clinician_id),
                   problem=services.join_problem(appointment), starts=_local(appointment.starts_at),
                   token_url=url_for("consult.guest_token", link=link), end_url=None, session=session,
                   guest_name=session.guest_name, guest_form=None, prescribing_url=None, auto_admit=False)
    return media_page(render_template("consult/call.html", **context))


@bp.route("/consult/guest/<link>/token", methods=["POST"])
@policy.public
def guest_token(link: str):
    appointment, key = _guest_or_404(link)
    try:
        ticket = services.issue_guest_join(appointment, key)
    except services.ConsultError as exc:
        return jsonify({"error": str(exc)}), 409
    return jsonify({**ticket.as_json(), "appointment": appointment.id})


# Demo ----------------------------------------------------------------------------------------------

@bp.cli.command("demo-call", help="Book the demo patient with the demo clinician a few minutes from now and "
                "print the appointment's id and call page (demo mode only).")
@click.option("--patient", "patient_email", default="patient@demo.example.com", show_default=True)
@click.option("--clinician", "clinician_email", default="clinician@demo.example.com", show_default=True)
@click.option("--lead", "lead_minutes", default=5, show_default=True, help="Minutes until it starts.")
def demo_call_command(patient_email: str, clinician_email: str, lead_minutes: int) -> None:
    from app.auth import services as accounts
    from app.consult import demo

    if not current_app.config["DEMO_MODE"]:
        raise click.ClickException("demo-call books demo accounts only: set VERITY_DEMO=1.")
    patient_user = accounts.find_by_email(patient_email)
    clinician = accounts.find_by_email(clinician_email)
    patient = patients.for_user(patient_user) if patient_user else None
    if patient is None or clinician is None or clinician.role is not Role.CLINICIAN:
        raise click.ClickException("No such patient or clinician (run `flask demo load` first).")
    appointment = demo.book_soon(patient, clinician, by=clinician, lead_minutes=lead_minutes)
    click.echo(f"{appointment.id} /consult/{appointment.id}")
