"""The front desk's and clinicians' scheduling pages, and the FHIR views, on the scheduling blueprint."""

from __future__ import annotations

import datetime as dt
import json
import re

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from app import policy
from app.auth.models import Role
from app.database import utcnow
from app.patients import details, onboarding
from app.patients import services as patients
from app.scheduling import availability, fhir, services, settings, states
from app.scheduling.forms import ExceptionForm, PatternForm, parse_date, parse_time
from app.scheduling.models import EXTRA, LEAVE
from app.scheduling.routes import bp, chosen_type, clinician_arg, is_htmx, refusal_status, viewer_zone
from app.scheduling.slots import day_bounds, monday_of

FRONT_DESK = (Role.RECEPTION, Role.ADMIN)


def _today() -> dt.date:
    return utcnow().astimezone(settings.clinic_zone()).date()


# Boards ---------------------------------------------------------------------------------------------

@bp.route("/scheduling/board")
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def board():
    """A clinician's day or week: every appointment with its state and the next moves."""
    everyone = availability.clinicians()
    if current_user.role is Role.CLINICIAN:
        clinician = current_user  # a clinician sees their own day
    else:
        wanted = request.args.get("clinician", type=int)
        clinician = next((c for c in everyone if c.id == wanted), everyone[0] if everyone else None)
    day = parse_date(request.args.get("date")) or _today()
    span = "week" if request.args.get("view") == "week" else "day"
    first = monday_of(day) if span == "week" else day
    last = first + dt.timedelta(days=6 if span == "week" else 0)
    rows = services.board(clinician.id, first, last) if clinician else []
    role = current_user.role.value
    mine = current_user.role is not Role.CLINICIAN or (clinician and clinician.id == current_user.id)
    moves = {row.appointment.id: states.next_moves(row.appointment, role) if mine else [] for row in rows}
    step = dt.timedelta(days=7 if span == "week" else 1)
    context = dict(clinicians=everyone, clinician=clinician, day=day, span=span, first=first, last=last, rows=rows,
                   moves=moves, previous=first - step, next=first + step, today=_today(),
                   outside=availability.outside_availability(clinician.id) if clinician else [],
                   back=request.full_path.rstrip("?"))
    if is_htmx():
        return render_template("scheduling/_board.html", **context)
    return render_template("scheduling/board.html", **context)


# Booking for a patient ---------------------------------------------------------------------------------

@bp.route("/scheduling/patients")
@policy.staff(*FRONT_DESK)
def find_patient():
    term = request.args.get("q", "").strip()[:100]
    results = services.find_patients(term) if term else []
    context = dict(term=term, results=results, can_book=onboarding.can_book)
    if is_htmx():
        return render_template("scheduling/_patients.html", **context)
    return render_template("scheduling/find_patient.html", **context)


@bp.route("/scheduling/patients/<int:patient_id>/book", methods=["GET", "POST"])
@policy.staff(*FRONT_DESK)
def book_for(patient_id: int):
    patient = patients.get(patient_id)
    if patient is None:
        abort(404)
    role = current_user.role.value
    name = patients.user_of(patient).full_name
    kind = chosen_type(request.values.get("type"), patient)
    choices = services.clinician_choices(patient, role)
    chosen = clinician_arg(choices, default=patient.clinician_id)
    error = None
    if request.method == "POST":
        slot_id = request.form.get("slot")
        if slot_id is None:
            abort(400)
        try:
            booked = services.book(patient, slot_id, by=current_user, consultation_type=kind)
        except services.BookingError as exc:
            error = exc
        else:
            flash(f"Booked: {name}, {services.describe(booked, viewer_zone())}. The patient has been emailed.",
                  "success")
            return redirect(url_for("scheduling.appointment", appointment_id=booked.id))
    view = services.week([chosen.id] if chosen else [], kind, services.parse_week(request.values.get("week")),
                         role=role, zone=viewer_zone(), exclude=services.upcoming_for_patient(patient))
    args = {"patient_id": patient.id, "type": kind, **({"clinician": chosen.id} if chosen else {})}
    context = dict(view=view, kind=kind, error=error, clinicians=choices, chosen=chosen, types=True,
                   heading=f"Book a consultation for {name}", intro=f"Born {patient.date_of_birth:%-d %B %Y}.",
                   action=url_for("scheduling.book_for", week=view.monday.isoformat(), **args),
                   nav_endpoint="scheduling.book_for", nav_args=args, back=url_for("scheduling.find_patient"),
                   choose_url=url_for("scheduling.book_for", patient_id=patient.id),
                   missing=details.missing(patient, "booking"), upcoming=services.upcoming_for_patient(patient),
                   blocked=None if onboarding.can_book(patient)
                   else services.booking.not_ready_message(patient, role))
    if is_htmx() and request.method == "GET":
        return render_template("scheduling/_week.html", **context)
    return render_template("scheduling/choose.html", **context), refusal_status(error) if error else 200


# Availability --------------------------------------------------------------------------------------------

def _pattern_form(**kwargs) -> PatternForm:
    form = PatternForm(**kwargs)
    form.consultation_type.choices = [SelectChoice(k, t.label) for k, t in settings.consultation_types().items()]
    return form


def _exception_form(**kwargs) -> ExceptionForm:
    form = ExceptionForm(**kwargs)
    form.consultation_type.choices = [SelectChoice("", "Choose…"), *(
        SelectChoice(k, t.label) for k, t in settings.consultation_types().items())]
    return form


def _clinician_or_404(clinician_id: int | None):
    clinician = availability.clinician(clinician_id)
    if clinician is None:
        abort(404)
    return clinician


def _availability_context(clinician, *, pattern_form=None, exception_form=None, message=None, notice=None) -> dict:
    now = utcnow()
    return dict(clinicians=availability.clinicians(), clinician=clinician,
                patterns=availability.patterns_of(clinician.id, current_on=_today()) if clinician else [],
                exceptions=availability.exceptions_of(clinician.id, ending_after=now) if clinician else [],
                outside=availability.outside_availability(clinician.id, now=now) if clinician else [],
                pattern_form=pattern_form or _pattern_form(formdata=None, valid_from=_today().isoformat()),
                exception_form=exception_form or _exception_form(formdata=None),
                message=message, notice=notice, describe_pattern=availability.describe_pattern,
                describe_exception=availability.describe_exception, weekdays=availability.WEEKDAYS)


def _availability_response(clinician, status: int = 200, **forms):
    context = _availability_context(clinician, **forms)
    if is_htmx():  # htmx swaps only 2xx answers: a form with errors comes back as 200 to be shown
        return render_template("scheduling/_availability.html", **context), 200
    return render_template("scheduling/availability.html", **context), status


def _after_change(clinician, done: str):
    """Say what changed and, when bookings now fall outside the hours, that they are listed to move."""
    outside = availability.outside_availability(clinician.id)
    notice = ("success", done)
    if outside:
        many = len(outside) != 1
        notice = ("warning", f"{done} {len(outside)} booked appointment{'s are' if many else ' is'} now outside "
                             f"{clinician.full_name}'s working hours. Nothing was cancelled: move "
                             f"{'them' if many else 'it'} (listed below).")
    if is_htmx():
        return _availability_response(clinician, notice=notice)
    flash(notice[1], notice[0])
    return redirect(url_for("scheduling.availability", clinician=clinician.id))


@bp.route("/scheduling/availability", endpoint="availability")
@policy.staff(*FRONT_DESK)
def availability_page():
    everyone = availability.clinicians()
    wanted = request.args.get("clinician", type=int)
    clinician = next((c for c in everyone if c.id == wanted), everyone[0] if everyone else None)
    return _availability_response(clinician)



def _pattern_data(form: PatternForm, clinician_id: int) -> availability.PatternData:
    return availability.PatternData(
        clinician_id=clinician_id, weekday=int(form.weekday.data), start_time=parse_time(form.start_time.data),
        end_time=parse_time(form.end_time.data), slot_minutes=int(form.slot_minutes.data),
        consultation_type=form.consultation_type.data, valid_from=parse_date(form.valid_from.data),
        valid_to=parse_date(form.valid_to.data) if form.valid_to.data else None)


def _attach(form, exc: services.SchedulingError) -> str | None:
    """Put a refusal on its field; return it as the form's message when it names none."""
    field = getattr(form, exc.field, None) if exc.field else None
    if field is None:
        return str(exc)
    field.errors = [*field.errors, str(exc)]
    return None


@bp.route("/scheduling/availability/<int:clinician_id>/patterns", methods=["POST"])
@policy.staff(*FRONT_DESK)
def add_pattern(clinician_id: int):
    clinician = _clinician_or_404(clinician_id)
    form = _pattern_form()
    message = None
    if form.validate_on_submit():
        try:
            availability.add_pattern(_pattern_data(form, clinician.id), by=current_user)
        except services.SchedulingError as exc:
            message = _attach(form, exc)
        else:
            return _after_change(clinician, "Pattern added.")
    return _availability_response(clinician, 400, pattern_form=form, message=message)


@bp.route("/scheduling/availability/patterns/<int:pattern_id>", methods=["GET", "POST"])
@policy.staff(*FRONT_DESK)
def edit_pattern(pattern_id: int):
    pattern = availability.get_pattern(pattern_id)
    if pattern is None:
        abort(404)
    clinician = _clinician_or_404(pattern.clinician_id)
    form = _pattern_form(formdata=request.form if request.method == "POST" else None, data={
        "weekday": str(pattern.weekday), "start_time": f"{pattern.start_time:%H:%M}",
        "end_time": f"{pattern.end_time:%H:%M}", "slot_minutes": str(pattern.slot_minutes),
        "consultation_type": pattern.consultation_type, "valid_from": pattern.valid_from.isoformat(),
        "valid_to": pattern.valid_to.isoformat() if pattern.valid_to else ""})
    message = None
    if request.method == "POST" and form.validate():
        try:
            availability.update_pattern(pattern, _pattern_data(form, clinician.id), by=current_user)
        except services.SchedulingError as exc:
            message = _attach(form, exc)
        else:
            return _after_change(clinician, "Pattern changed.")
    return render_template("scheduling/edit_pattern.html", form=form, pattern=pattern, clinician=clinician,
                           message=message, describe_pattern=availability.describe_pattern), \
        400 if request.method == "POST" else 200


@bp.route("/scheduling/availability/patterns/<int:pattern_id>/delete", methods=["POST"])
@policy.staff(*FRONT_DESK)
def delete_pattern(pattern_id: int):
    pattern = availability.get_pattern(pattern_id)
    if pattern is None:
        abort(404)
    if request.form.get("confirm") != "yes":
        abort(400)
    clinician = _clinician_or_404(pattern.clinician_id)
    availability.delete_pattern(pattern, by=current_user)
    return _after_change(clinician, "Pattern removed.")


def _exception_span(form: ExceptionForm) -> tuple[dt.datetime, dt.datetime]:
    zone = settings.clinic_zone()
    first = parse_date(form.start_date.data)
    last = parse_date(form.end_date.data) if form.end_date.data else first
    start = parse_time(form.start_time.data) if form.start_time.data else None
    end = parse_time(form.end_time.data) if form.end_time.data else None
    if form.kind.data == EXTRA and (start is None or end is None):
        raise services.AvailabilityError("An extra session needs a start and an end time", "start_time")
    if last < first:
        raise services.AvailabilityError("The last day must be on or after the first day", "end_date")
    starts_at = (dt.datetime.combine(first, start, tzinfo=zone).astimezone(dt.UTC) if start
                 else day_bounds(first, zone)[0])
    ends_at = (dt.datetime.combine(last, end, tzinfo=zone).astimezone(dt.UTC) if end else day_bounds(last, zone)[1])
    return starts_at, ends_at


@bp.route("/scheduling/availability/<int:clinician_id>/exceptions", methods=["POST"])
@policy.staff(*FRONT_DESK)
def add_exception(clinician_id: int):
    clinician = _clinician_or_404(clinician_id)
    form = _exception_form()
    message = None
    if form.validate_on_submit():
        try:
            starts_at, ends_at = _exception_span(form)
            is_extra = form.kind.data == EXTRA
            minutes = form.slot_minutes.data.strip() if is_extra and form.slot_minutes.data else ""
            if is_extra and not minutes:
                raise services.AvailabilityError("Enter the slot length in minutes, like 30", "slot_minutes")
            availability.add_exception(
                clinician_id=clinician.id, kind=form.kind.data, starts_at=starts_at, ends_at=ends_at,
                slot_minutes=int(minutes) if minutes else None,
                consultation_type=form.consultation_type.data if is_extra else None, note=form.note.data,
                by=current_user)
        except services.SchedulingError as exc:
            message = _attach(form, exc)
        else:
            return _after_change(clinician, "Leave added." if form.kind.data == LEAVE else "Extra session added.")
    return _availability_response(clinician, 400, exception_form=form, message=message)


@bp.route("/scheduling/availability/exceptions/<int:exception_id>/delete", methods=["POST"])
@policy.staff(*FRONT_DESK)
def delete_exception(exception_id: int):
    exception = availability.get_exception(exception_id)
    if exception is None:
        abort(404)
    if request.form.get("confirm") != "yes":
        abort(400)
    clinician = _clinician_or_404(exception.clinician_id)
    availability.delete_exception(exception, by=current_user)
    return _after_change(clinician, "Removed.")


# FHIR ------------------------------------------------------------------------------------------------------

def _fhir(body: dict, status: int = 200):
    return current_app.response_class(json.dumps(body), status=status, mimetype=fhir.MEDIA_TYPE)


@bp.route("/fhir/Appointment/<int:appointment_id>")
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def fhir_appointment(appointment_id: int):
    item = services.get(appointment_id)
    if item is None:
        return _fhir(fhir.outcome("not-found", f"Appointment/{appointment_id} is not known."), 404)
    policy.require(services.can_view(current_user, item), subject=("appointment", appointment_id),
                   patient_id=item.patient_id)
    patient = patients.get(item.patient_id)
    patients.record_read(patient, section="appointment (FHIR)")
    return _fhir(fhir.appointment(item, patient_name=patients.user_of(patient).full_name))


SEARCH_DATE = re.compile(r"^(ge|gt|le|lt|eq)?(\d{4}-\d{2}-\d{2})")
MAX_SEARCH_DAYS = 62


@bp.route("/fhir/Slot")
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def fhir_slots():
    """Slot?schedule=Schedule/<clinician>[&start=ge2026-12-01&start=lt2026-12-08][&status=free|busy]"""
    schedule = (request.args.get("schedule") or "").removeprefix("Schedule/")
    clinician = availability.clinician(int(schedule)) if schedule.isdigit() else None
    if clinician is None:
        return _fhir(fhir.outcome("invalid", "Give schedule=Schedule/<id> of a clinician's schedule."), 400)
    first, last = _today(), _today() + dt.timedelta(days=6)
    for value in request.args.getlist("start"):
        match = SEARCH_DATE.match(value)
        day = parse_date(match.group(2)) if match else None
        if day is None:
            return _fhir(fhir.outcome("invalid", f"start={value} is not a date search like ge2026-12-01."), 400)
        prefix = match.group(1) or "eq"
        if prefix in ("ge", "gt", "eq"):
            first = day + dt.timedelta(days=1) if prefix == "gt" else day
        if prefix in ("le", "lt", "eq"):
            last = day - dt.timedelta(days=1) if prefix == "lt" else day
    if last < first or (last - first).days > MAX_SEARCH_DAYS:
        return _fhir(fhir.outcome("invalid", f"Search at most {MAX_SEARCH_DAYS} days, with the start before the end."),
                     400)
    wanted = request.args.get("status")
    if wanted not in (None, "free", "busy"):
        return _fhir(fhir.outcome("invalid", "status must be free or busy."), 400)
    every = availability.all_slots([clinician.id], first, last)
    free = set(availability.free_slots([clinician.id], None, first, last, not_before=dt.datetime.min.replace(
        tzinfo=dt.UTC)))
    resources = [fhir.slot(s, busy=s not in free) for s in every
                 if wanted is None or (wanted == "free") == (s in free)]
    base = current_app.config["BASE_URL"].rstrip("/")
    return _fhir(fhir.searchset(resources, base=base, self_url=base + request.full_path.rstrip("?")))
