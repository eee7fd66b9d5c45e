"""Scheduling's services: what routes, other domains and the worker call.

Booking, moving and cancelling live in booking.py, availability in availability.py, the waiting list in
waitlist.py; this module gathers them and adds the views other domains need (the dashboard's checklist
step, a patient's upcoming appointments), the front desk's patient search, the boards, and the
periodic jobs (reminders, expiring waiting-list offers).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import url_for
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.auth.models import Role, User
from app.database import is_sqlite, transaction, utcnow
from app.extensions import db
from app.patients import onboarding
from app.patients import services as patients
from app.patients.checklist import Step, StepStatus
from app.patients.journey import JourneyState
from app.patients.models import Patient
from app.scheduling import availability, booking, display, notify, settings, waitlist
from app.scheduling.availability import (  # noqa: F401  (the domain's public names)
    AvailabilityError,
    PatternData,
    clinician,
    clinicians,
    load_demo_availability,
)
from app.scheduling.booking import (  # noqa: F401
    TAKEN,
    BookingError,
    PatientBusy,
    SlotTaken,
    book,
    cancel,
    clinician_choices,
    earliest_start,
    last_bookable_day,
    mark,
    nearest_free,
    reschedule,
)
from app.scheduling.errors import SchedulingError  # noqa: F401
from app.scheduling.models import BOOKED, CHECKED_IN, COMPLETED, UPCOMING, Appointment, AppointmentReminder
from app.scheduling.slots import Slot, monday_of
from app.scheduling.states import StateError  # noqa: F401
from app.worker import periodic


def get(appointment_id: int) -> Appointment | None:
    return db.session.get(Appointment, appointment_id)


def upcoming_for_patient(patient: Patient) -> list[Appointment]:
    """The patient's appointments still to happen (booked, checked in, in call), soonest first."""
    return booking.upcoming_for(patient)


def history_for_patient(patient: Patient, limit: int = 20) -> list[Appointment]:
    return list(db.session.scalars(sa.select(Appointment).where(
        Appointment.patient_id == patient.id, sa.or_(Appointment.status.not_in(UPCOMING),
                                                     Appointment.ends_at <= utcnow()))
        .order_by(Appointment.starts_at.desc()).limit(limit)))


def describe(appointment: Appointment, zone: ZoneInfo | None = None, *, year: bool = False) -> str:
    """"Thursday 3 December at 09:00 with Dr Priya Shah" (clinic time unless a zone is given)."""
    when = display.when(appointment.starts_at, zone or settings.clinic_zone(), year=year)
    return f"{when} with {notify.clinician_name(appointment.clinician_id)}"


def checklist_steps(patient: Patient) -> list[Step]:
    """The dashboard's booking step (order 70)."""
    upcoming = upcoming_for_patient(patient)
    if upcoming:
        first = upcoming[0]
        return [Step("booking", f"Consultation booked: {describe(first)}", StepStatus.DONE,
                     hint="You can change or cancel it from its page.",
                     url=url_for("scheduling.appointment", appointment_id=first.id), order=70)]
    if onboarding.can_book(patient):
        held = db.session.scalar(sa.select(sa.exists().where(Appointment.patient_id == patient.id,
                                                             Appointment.status == COMPLETED)))
        return [Step("booking", "Book a follow-up consultation" if held else "Book your consultation",
                     StepStatus.TODO, hint="Choose a time for a video consultation with a specialist doctor.",
                     url=url_for("scheduling.book"), action="Book a consultation", order=70)]
    if JourneyState(patient.journey_state) is JourneyState.NOT_ELIGIBLE:
        return []
    return [Step("booking", "Book your consultation", StepStatus.BLOCKED,
                 hint="You can book once your health questions are sent and your identity is confirmed.", order=70)]


# Who may see and change an appointment ---------------------------------------------------------

def can_view(user: User, appointment: Appointment) -> bool:
    """The patient, the appointment's clinician (and the patient's own), and the front desk."""
    if user.role is Role.PATIENT:
        patient = patients.for_user(user)
        return patient is not None and patient.id == appointment.patient_id
    if user.role is Role.CLINICIAN:
        if appointment.clinician_id == user.id:
            return True
        patient = patients.get(appointment.patient_id)
        return patient is not None and patient.clinician_id == user.id
    return user.role in (Role.RECEPTION, Role.ADMIN)


def can_change(user: User, appointment: Appointment) -> bool:
    """Cancel or move: the patient (within the rules), the front desk, the appointment's own clinician."""
    if user.role is Role.CLINICIAN:
        return appointment.clinician_id == user.id
    return can_view(user, appointment)


def can_book_for(user: User, patient: Patient) -> bool:
    if user.role is Role.PATIENT:
        return patient.user_id == user.id
    if user.role is Role.CLINICIAN:
        return patient.clinician_id == user.id
    return user.role in (Role.RECEPTION, Role.ADMIN)


# Week view ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WeekView:
    monday: dt.date
    #: (day in the viewer's zone, free slots that day), Monday to Sunday of the clinic's week.
    days: list[tuple[dt.date, list[Slot]]]
    previous: dt.date | None
    next: dt.date | None
    zone: ZoneInfo

    @property
    def empty(self) -> bool:
        return not any(slots for _, slots in self.days)


def parse_week(value: str | None, now: dt.datetime | None = None) -> dt.date:
    """The Monday of the week asked for (?week=YYYY-MM-DD), this week when absent or unreadable."""
    today = (now or utcnow()).astimezone(settings.clinic_zone()).date()
    try:
        day = dt.date.fromisoformat(value) if value else today
    except ValueError:
        day = today
    return monday_of(day)


def week(clinician_ids: list[int], consultation_type: str, monday: dt.date, *, role: str, zone: ZoneInfo,
         now: dt.datetime | None = None, moving: Appointment | None = None,
         exclude: list[Appointment] | None = None) -> WeekView:
    """Free slots of one clinic week for the week view. `moving`: the appointment being rescheduled (its own
    time does not block others, and is not offered); `exclude`: the patient's other appointments."""
    now = now or utcnow()
    this_monday = monday_of(now.astimezone(settings.clinic_zone()).date())
    last_day = last_bookable_day(now)
    monday = min(max(monday, this_monday), monday_of(last_day))
    sunday = monday + dt.timedelta(days=6)
    slots = availability.free_slots(clinician_ids, consultation_type, monday, min(sunday, last_day),
                                    not_before=earliest_start(role, now),
                                    ignore_appointment=moving.id if moving else None)
    busy = [(a.starts_at, a.ends_at) for a in (exclude or [])]
    slots = [s for s in slots if not any(s.overlaps(a, b) for a, b in busy)
             and not (moving and (s.clinician_id, s.starts_at) == (moving.clinician_id, moving.starts_at))]
    days: dict[dt.date, list[Slot]] = {monday + dt.timedelta(days=i): [] for i in range(7)}
    for slot in slots:
        days.setdefault(slot.starts_at.astimezone(zone).date(), []).append(slot)
    return WeekView(monday=monday, days=sorted(days.items()), zone=zone,
                    previous=monday - dt.timedelta(days=7) if monday > this_monday else None,
                    next=monday + dt.timedelta(days=7) if sunday < last_day else None)


# Boards ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BoardRow:
    appointment: Appointment
    patient: Patient
    name: str


def board(clinician_id: int, first_day: dt.date, last_day: dt.date) -> list[BoardRow]:
    """A clinician's appointments on clinic days first_day..last_day, every status, in time order."""
    from app.scheduling.slots import day_bounds

    zone = settings.clinic_zone()
    start, _ = day_bounds(first_day, zone)
    _, end = day_bounds(last_day, zone)
    rows = db.session.scalars(sa.select(Appointment).where(
        Appointment.clinician_id == clinician_id, Appointment.starts_at >= start, Appointment.starts_at < end)
        .order_by(Appointment.starts_at, Appointment.id))
    out = []
    for appointment in rows:
        patient = patients.get(appointment.patient_id)
        out.append(BoardRow(appointment, patient, patients.user_of(patient).full_name))
    return out


# Finding a patient at the front desk ------------------------------------------------------------

def find_patients(term: str, limit: int = 20) -> list[tuple[Patient, User]]:
    """Reception's search box: name, email, date of birth or NHS number (the patients domain's search)."""
    return patients.search(term, limit)


# Periodic jobs (run by every background worker) --------------------------------------------------

def _claim_reminder(appointment: Appointment, minutes: int) -> bool:
    """Insert the reminder's row unless it is there: the one insert that lands is the one reminder."""
    values = {"appointment_id": appointment.id, "minutes_before": minutes, "for_start": appointment.starts_at,
              "queued_at": utcnow()}
    insert = sqlite_insert if is_sqlite() else pg_insert
    statement = (insert(AppointmentReminder).values(**values).on_conflict_do_nothing()
                 .returning(AppointmentReminder.appointment_id))
    return db.session.execute(statement).first() is not None


@periodic("scheduling.reminders", 60)
def send_due_reminders(now: dt.datetime | None = None) -> int:
    """Queue the reminders that are due (24 h and 1 h before, by default), each exactly once.

    A reminder whose moment had passed when the time was set is skipped (the confirmation just went);
    when several are due at once (a worker was down), only the nearest is sent.
    """
    now = now or utcnow()
    offsets = settings.reminder_minutes()
    if not offsets:
        return 0
    horizon = now + dt.timedelta(minutes=max(offsets))
    ids = list(db.session.scalars(sa.select(Appointment.id).where(
        Appointment.status.in_((BOOKED, CHECKED_IN)), Appointment.starts_at > now, Appointment.starts_at <= horizon)))
    sent = 0
    for appointment_id in ids:
        with transaction() as session:
            # Locked (PostgreSQL) so a cancellation or a move cannot slip in between the check and the queueing.
            appointment = session.scalars(sa.select(Appointment).where(Appointment.id == appointment_id)
                                          .with_for_update().execution_options(populate_existing=True)).one()
            if appointment.status not in (BOOKED, CHECKED_IN) or appointment.starts_at <= now:
                continue
            due = [m for m in offsets if appointment.starts_at - dt.timedelta(minutes=m) <= now
                   and appointment.time_set_at <= appointment.starts_at - dt.timedelta(minutes=m)]
            if not due:
                continue
            claimed = [m for m in sorted(due, reverse=True) if _claim_reminder(appointment, m)]
            if min(due) in claimed:
                notify.reminder(appointment, min(due))
                sent += 1
    return sent


@periodic("scheduling.waitlist_offers", 60)
def expire_waitlist_offers(now: dt.datetime | None = None) -> int:
    return waitlist.expire_offers(now)
