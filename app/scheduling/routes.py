"""Scheduling pages: booking (patients), an appointment's page, moving and cancelling, the waiting list.

The front desk's pages (boards, finding a patient, availability) and the FHIR views are in
staff_routes.py, on this same blueprint.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import click
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app import policy
from app.auth.models import Role
from app.database import utcnow
from app.patients import details, onboarding
from app.patients import services as patients
from app.scheduling import display, services, settings, states
from app.scheduling import waitlist as waiting_list
from app.scheduling.models import BOOKED, CANCELLED, COMPLETED, IN_CALL, Appointment

bp = Blueprint("scheduling", __name__, template_folder="templates")

#: Cookie in which scheduling.js stores the browser's IANA time zone, so times show in the viewer's zone.
ZONE_COOKIE = "verity_tz"


# Helpers ------------------------------------------------------------------------------------------

def viewer_zone():
    return settings.viewer_zone(request.cookies.get(ZONE_COOKIE))


def is_htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


def safe_back(target: str | None, default: str) -> str:
    """A local path to return to (never another site)."""
    target = target or ""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and not urlsplit(target).netloc:
        return target
    return default


def own_patient():
    patient = patients.for_user(current_user)
    if patient is None:
        abort(404)
    return patient


def appointment_or_404(appointment_id: int, *, change: bool = False) -> Appointment:
    appointment = services.get(appointment_id)
    if appointment is None:
        abort(404)
    allowed = services.can_change(current_user, appointment) if change else services.can_view(current_user,
                                                                                             appointment)
    policy.require(allowed, subject=("appointment", appointment_id), patient_id=appointment.patient_id)
    return appointment


def chosen_type(value: str | None, patient=None) -> str:
    types = settings.consultation_types()
    if value in types:
        return value
    if patient is not None and "follow-up" in types and any(
            a.status == COMPLETED for a in services.history_for_patient(patient)):
        return "follow-up"
    return "initial" if "initial" in types else next(iter(types))


def refusal_status(error: services.BookingError) -> int:
    return 409 if isinstance(error, services.SlotTaken) else 400


@bp.context_processor
def _helpers() -> dict:
    zone = viewer_zone()
    return {"zone": zone, "zone_label": display.zone_label(zone), "display": display,
            "clinic_zone_label": display.zone_label(settings.clinic_zone()),
            "type_label": settings.type_label, "consultation_types": settings.consultation_types(),
            "state_labels": states.LABELS, "state_tags": states.TAGS, "state_actions": states.ACTIONS,
            "clinician_name": services.notify.clinician_name}


# Booking (patients) -------------------------------------------------------------------------------

@bp.route("/book", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def book():
    patient = own_patient()
    if not onboarding.can_book(patient):
        return render_template("scheduling/book.html", patient=patient,
                               blocked=services.booking.not_ready_message(patient, "patient"))
    kind = chosen_type(request.values.get("type"), patient)
    monday = services.parse_week(request.values.get("week"))
    if details.missing(patient, "booking"):
        back = url_for("scheduling.book", type=kind, week=monday.isoformat())
        return redirect(url_for("patients.details", purpose="booking", next=back))
    error = None
    if request.method == "POST":
        slot_id = request.form.get("slot")
        if slot_id is None:
            abort(400)
        try:
            appointment = services.book(patient, slot_id, by=current_user, consultation_type=kind)
        except services.BookingError as exc:
            error = exc
        else:
            flash("Your consultation is booked. We have emailed you the details and a calendar invitation.",
                  "success")
            return redirect(url_for("scheduling.appointment", appointment_id=appointment.id))
    upcoming = services.upcoming_for_patient(patient)
    choices = services.clinician_choices(patient, "patient")
    view = services.week([c.id for c in choices], kind, monday, role="patient", zone=viewer_zone(), exclude=upcoming)
    context = dict(patient=patient, view=view, kind=kind, error=error, upcoming=upcoming,
                   action=url_for("scheduling.book", type=kind, week=view.monday.isoformat()),
                   nav_endpoint="scheduling.book", nav_args={"type": kind},
                   offers=waiting_list.open_offers(patient))
    if is_htmx() and request.method == "GET":
        return render_template("scheduling/_week.html", **context)
    return render_template("scheduling/book.html", **context), refusal_status(error) if error else 200


@bp.route("/appointments")
@policy.signed_in(Role.PATIENT)
def my_appointments():
    patient = own_patient()
    return render_template("scheduling/my_appointments.html", upcoming=services.upcoming_for_patient(patient),
                           past=services.history_for_patient(patient), offers=waiting_list.open_offers(patient),
                           can_book=onboarding.can_book(patient))


# One appointment ----------------------------------------------------------------------------------

@bp.route("/appointments/<int:appointment_id>")
@policy.signed_in(Role.PATIENT, Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def appointment(appointment_id: int):
    item = appointment_or_404(appointment_id)
    patient = patients.get(item.patient_id)
    role = current_user.role.value
    is_patient = current_user.role is Role.PATIENT
    if not is_patient:
        patients.record_read(patient, section="appointment")
    moves = states.next_moves(item, role) if services.can_change(current_user, item) else []
    if is_patient:
        moves = [m for m in moves if m == states.CHECKED_IN]
    return render_template(
        "scheduling/appointment.html", item=item, patient=patient, patient_name=patients.user_of(patient).full_name,
        moves=moves, can_change=services.can_change(current_user, item) and item.status == BOOKED,
        can_follow_up=current_user.role in (Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
        and services.can_change(current_user, item) and item.status in (IN_CALL, COMPLETED),
        cancel_hours=settings.patient_cancel_hours(), is_patient=is_patient,
        patient_may_change=not is_patient or _patient_may_change(item))


def _patient_may_change(item: Appointment) -> bool:
    try:
        services.booking.check_patient_may_change(item, utcnow())
    except services.BookingError:
        return False
    return True


@bp.route("/appointments/<int:appointment_id>/cancel", methods=["POST"])
@policy.signed_in(Role.PATIENT, Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def cancel(appointment_id: int):
    item = appointment_or_404(appointment_id, change=True)
    if request.form.get("confirm") != "yes":
        abort(400)
    page = url_for("scheduling.appointment", appointment_id=item.id)
    try:
        services.cancel(item, by=current_user)
    except services.SchedulingError as exc:
        flash(str(exc), "error")
        return redirect(page)
    flash("The consultation is cancelled. The patient has been emailed." if current_user.is_staff
          else "Your consultation is cancelled. We have emailed you to confirm.", "success")
    return redirect(safe_back(request.form.get("back"), page))


@bp.route("/appointments/<int:appointment_id>/reschedule", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT, Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def reschedule(appointment_id: int):
    item = appointment_or_404(appointment_id, change=True)
    page = url_for("scheduling.appointment", appointment_id=item.id)
    if item.status != BOOKED:
        flash(f"Only a booked appointment can be moved; this one is “{states.LABELS[item.status].lower()}”.",
              "error")
        return redirect(page)
    patient = patients.get(item.patient_id)
    role = current_user.role.value
    if role == "patient" and not _patient_may_change(item):
        flash(f"You cannot cancel or move a consultation less than {settings.patient_cancel_hours()} hours before "
              "it starts. If you cannot make it, contact the clinic.", "error")
        return redirect(page)
    choices = services.clinician_choices(patient, role)
    chosen = clinician_arg(choices, default=item.clinician_id) if current_user.is_staff else None
    error = None
    if request.method == "POST":
        slot_id = request.form.get("slot")
        if slot_id is None:
            abort(400)
        try:
            services.reschedule(item, slot_id, by=current_user)
        except services.BookingError as exc:
            error = exc
        else:
            flash("The consultation has moved. "
                  + ("The patient has been emailed the new time." if current_user.is_staff
                     else "We have emailed you the new time; your calendar will update."), "success")
            return redirect(page)
    ids = [chosen.id] if chosen else [c.id for c in choices]
    others = [a for a in services.upcoming_for_patient(patient) if a.id != item.id]
    view = services.week(ids, item.consultation_type, services.parse_week(request.values.get("week")), role=role,
                         zone=viewer_zone(), moving=item, exclude=others)
    args = {"appointment_id": item.id, **({"clinician": chosen.id} if chosen else {})}
    context = dict(view=view, kind=item.consultation_type, error=error, item=item, clinicians=choices if
                   current_user.is_staff else [], chosen=chosen, heading="Move this consultation",
                   intro=f"Now: {services.describe(item, viewer_zone(), year=True)}. Choose a new time.",
                   action=url_for("scheduling.reschedule", week=view.monday.isoformat(), **args),
                   nav_endpoint="scheduling.reschedule", nav_args=args, back=page,
                   choose_url=url_for("scheduling.reschedule", appointment_id=item.id),
                   missing=details.missing(patient, "booking") if current_user.is_staff else [])
    if is_htmx() and request.method == "GET":
        return render_template("scheduling/_week.html", **context)
    return render_template("scheduling/choose.html", **context), refusal_status(error) if error else 200


def clinician_arg(choices, default: int | None):
    wanted = request.values.get("clinician", type=int) or default
    return next((c for c in choices if c.id == wanted), choices[0] if choices else None)


@bp.route("/appointments/<int:appointment_id>/follow-up", methods=["GET", "POST"])
@policy.staff(Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def follow_up(appointment_id: int):
    """At the end of a consultation: book the patient's next one (a follow-up, by default with the same clinician)."""
    item = appointment_or_404(appointment_id, change=True)
    patient = patients.get(item.patient_id)
    page = url_for("scheduling.appointment", appointment_id=item.id)
    role = current_user.role.value
    kind = chosen_type(request.values.get("type") or ("follow-up" if "follow-up" in settings.consultation_types()
                                                      else item.consultation_type))
    choices = services.clinician_choices(patient, role)
    chosen = clinician_arg(choices, default=item.clinician_id)
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
            flash(f"Follow-up booked: {services.describe(booked, viewer_zone())}. The patient has been emailed.",
                  "success")
            return redirect(page)
    view = services.week([chosen.id] if chosen else [], kind, services.parse_week(request.values.get("week")),
                         role=role, zone=viewer_zone(), exclude=services.upcoming_for_patient(patient))
    args = {"appointment_id": item.id, "type": kind, **({"clinician": chosen.id} if chosen else {})}
    context = dict(view=view, kind=kind, error=error, item=item, clinicians=choices, chosen=chosen,
                   heading="Book a follow-up", types=True,
                   intro=f"For {patients.user_of(patient).full_name}. Choose a time.",
                   action=url_for("scheduling.follow_up", week=view.monday.isoformat(), **args),
                   nav_endpoint="scheduling.follow_up", nav_args=args, back=page,
                   choose_url=url_for("scheduling.follow_up", appointment_id=item.id),
                   missing=details.missing(patient, "booking"),
                   blocked=None if onboarding.can_book(patient)
                   else services.booking.not_ready_message(patient, role))
    if is_htmx() and request.method == "GET":
        return render_template("scheduling/_week.html", **context)
    return render_template("scheduling/choose.html", **context), refusal_status(error) if error else 200


@bp.route("/appointments/<int:appointment_id>/status", methods=["POST"])
@policy.signed_in(Role.PATIENT, Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)
def set_status(appointment_id: int):
    item = appointment_or_404(appointment_id, change=True)
    to = request.form.get("status")
    if to not in states.LABELS or to == CANCELLED:
        abort(400)
    page = url_for("scheduling.appointment", appointment_id=item.id)
    try:
        services.mark(item, to, by=current_user)
    except services.StateError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Marked as “{states.LABELS[to].lower()}”.", "success")
    return redirect(safe_back(request.form.get("back"), page))


# The waiting list -----------------------------------------------------------------------------------

@bp.route("/waiting-list", methods=["GET", "POST"])
@policy.signed_in(Role.PATIENT)
def waitlist():
    patient = own_patient()
    if request.method == "POST":
        action = request.form.get("action")
        if action == "join":
            try:
                waiting_list.join(patient, request.form.get("consultation_type", ""))
            except services.SchedulingError as exc:
                flash(str(exc), "error")
            else:
                flash("You are on the waiting list. If an earlier time comes free we will email you, and hold it "
                      f"for you for {display.duration(settings.waitlist_offer_minutes())}.", "success")
        elif action == "leave":
            entry = waiting_list.get_entry(request.form.get("entry_id", type=int) or 0)
            if entry is None or entry.patient_id != patient.id:
                abort(404)
            waiting_list.leave(entry)
            flash("You have left the waiting list.", "success")
        else:
            abort(400)
        return redirect(url_for("scheduling.waitlist"))
    return render_template("scheduling/waitlist.html", entries=waiting_list.entries_of(patient),
                           offers=waiting_list.open_offers(patient), can_book=onboarding.can_book(patient),
                           upcoming=services.upcoming_for_patient(patient),
                           hold=display.duration(settings.waitlist_offer_minutes()))



@bp.route("/waiting-list/offers/<int:offer_id>", methods=["POST"])
@policy.signed_in(Role.PATIENT)
def offer(offer_id: int):
    patient = own_patient()
    item = waiting_list.get_offer(offer_id)
    if item is None:
        abort(404)
    entry = waiting_list.get_entry(item.entry_id)
    policy.require(entry.patient_id == patient.id, subject=("waitlist_offer", offer_id), patient_id=entry.patient_id)
    answer = request.form.get("answer")
    if answer not in ("accept", "decline"):
        abort(400)
    try:
        if answer == "accept":
            booked = waiting_list.accept(item, by=current_user)
            flash("Done: your consultation is now at the earlier time. We have emailed you.", "success")
            return redirect(url_for("scheduling.appointment", appointment_id=booked.id))
        waiting_list.decline(item, by=current_user)
        flash("You have turned down that time. You are still on the waiting list.", "success")
    except services.SchedulingError as exc:
        flash(str(exc), "error")
    return redirect(url_for("scheduling.waitlist"))


# Command line -------------------------------------------------------------------------------------

@bp.cli.command("demo-availability", help="Give every active clinician without a pattern 12 weeks of weekday "
                                          "availability (idempotent).")
def demo_availability_command() -> None:
    added = services.load_demo_availability()
    click.echo(f"Demo availability ready ({added} patterns added).")


from app.scheduling import staff_routes  # noqa: E402,F401  (the front desk's views, on this blueprint)
