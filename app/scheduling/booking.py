"""Booking, rescheduling and cancelling appointments.

The database decides who gets a time. Every live appointment holds its clinician's and its patient's
five-minute cells in `time_holds` (primary key: kind, owner, cell), and `appointments` has a partial
unique index on (clinician, start) for live rows. Checks made first only give a friendlier message;
when two requests race past them, the insert of the second fails on the key, its transaction rolls
back whole, and its caller hears "That time has just been taken" with the nearest free times.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.audit import services as audit
from app.auth.models import Role, User
from app.database import transaction, utcnow
from app.extensions import db
from app.patients import details, onboarding
from app.patients import services as patients
from app.patients.journey import JourneyState
from app.patients.models import Patient
from app.scheduling import availability, display, notify, settings, states
from app.scheduling.errors import SchedulingError
from app.scheduling.models import BOOKED, CANCELLED, CHECKED_IN, UPCOMING, Appointment, TimeHold
from app.scheduling.slots import Slot, parse_slot_id

TAKEN = "That time has just been taken."
#: How many alternatives a refused booking offers, and how far around the asked time they are sought.
ALTERNATIVES = 3
ALTERNATIVES_WINDOW_DAYS = 7


class BookingError(SchedulingError):
    def __init__(self, message: str, *, alternatives: list[Slot] | None = None, field: str | None = None):
        super().__init__(message, field)
        #: Free slots near the one asked for, to offer instead.
        self.alternatives = alternatives or []


class SlotTaken(BookingError):
    def __init__(self, alternatives: list[Slot] | None = None):
        super().__init__(TAKEN, alternatives=alternatives)


class PatientBusy(BookingError):
    pass


# Who may book what ----------------------------------------------------------------------------

def role_of(user: User) -> str:
    return user.role.value


def clinician_choices(patient: Patient | None, role: str) -> list[User]:
    """Patients book with their own clinician once they have one; staff with anyone."""
    everyone = availability.clinicians()
    if role == "patient" and patient is not None and patient.clinician_id:
        own = [c for c in everyone if c.id == patient.clinician_id]
        return own or everyone
    return everyone


def earliest_start(role: str, now: dt.datetime) -> dt.datetime:
    if role == "patient":
        return now + dt.timedelta(minutes=settings.patient_notice_minutes())
    return now


def last_bookable_day(now: dt.datetime) -> dt.date:
    return (now.astimezone(settings.clinic_zone()) + dt.timedelta(days=settings.horizon_days())).date()


def not_ready_message(patient: Patient, role: str) -> str:
    state = JourneyState(patient.journey_state)
    if role == "patient":
        if state is JourneyState.NOT_ELIGIBLE:
            return "We cannot book a consultation for you now. If something has changed, send the clinic a message."
        return ("You can book a consultation once your health questions are sent and your identity is confirmed. "
                "Your dashboard shows what is left to do.")
    return (f"This patient cannot be booked yet: their stage is “{state.label}”. Booking opens once their health "
            "questions and identity check are complete and they are eligible or waiting for clinical review.")


def _a(label: str) -> str:
    return f"an {label}" if label[:1].lower() in "aeiou" else f"a {label}"


def _wrong_type(slot_type: str, wanted: str) -> str:
    return (f"That time is for {_a(settings.type_label(slot_type).lower())}, not "
            f"{_a(settings.type_label(wanted).lower())}. Choose one of the times shown.")


def resolve(slot_id: str | None, *, patient: Patient, role: str, consultation_type: str | None = None,
            now: dt.datetime) -> Slot:
    """The slot a submitted id names, checked against the availability as it is now."""
    try:
        ref = parse_slot_id(slot_id)
    except ValueError:
        raise BookingError("That time could not be found. Choose one of the times shown.", field="slot") from None
    types = settings.consultation_types()
    if ref.consultation_type not in types:
        raise BookingError("That time could not be found. Choose one of the times shown.", field="slot")
    if consultation_type and ref.consultation_type != consultation_type:
        raise BookingError(_wrong_type(ref.consultation_type, consultation_type), field="slot")
    clinician = availability.clinician(ref.clinician_id)
    if clinician is None:
        raise BookingError("That clinician is not taking bookings. Choose one of the times shown.", field="slot")
    if ref.starts_at <= now:
        raise BookingError("That time has passed. Choose one of the times shown.", field="slot")
    if role == "patient":
        if ref.clinician_id not in {c.id for c in clinician_choices(patient, role)}:
            raise BookingError("You can book only with your own clinician. Choose one of the times shown.",
                               field="slot")
        if ref.starts_at < earliest_start(role, now):
            raise BookingError("That time is too soon to book online. Choose a later time, or contact the clinic.",
                               field="slot")
        if ref.starts_at.astimezone(settings.clinic_zone()).date() > last_bookable_day(now):
            raise BookingError(f"You can book up to {settings.horizon_days() // 7} weeks ahead. Choose an earlier "
                               "time.", field="slot")
    slot, others = availability.find_slot(ref)
    if slot is None:
        if others:
            raise BookingError(_wrong_type(others[0].consultation_type, ref.consultation_type), field="slot")
        raise BookingError(f"{clinician.full_name} is not working at that time. Choose one of the times shown.",
                           field="slot")
    return slot


# Holding time -------------------------------------------------------------------------------

def _patient_clash(patient_id: int, start: dt.datetime, end: dt.datetime,
                   ignore_appointment: int | None = None) -> Appointment | None:
    cells = availability.cells(start, end)
    query = (sa.select(Appointment).join(TimeHold, TimeHold.appointment_id == Appointment.id)
             .where(TimeHold.kind == "patient", TimeHold.owner_id == patient_id, TimeHold.starts_at.in_(cells)))
    if ignore_appointment is not None:
        query = query.where(Appointment.id != ignore_appointment)
    return db.session.scalars(query.limit(1)).first()


def _busy_message(clash: Appointment, role: str) -> str:
    when = display.when(clash.starts_at, settings.clinic_zone(), year=False)
    who = notify.clinician_name(clash.clinician_id)
    subject = "You already have" if role == "patient" else "This patient already has"
    return f"{subject} a consultation at that time ({when}, with {who}). Choose another time."


def _check_free(slot: Slot, patient: Patient, role: str, *, ignore_appointment: int | None = None) -> None:
    """Friendly early refusals; the keys written afterwards are what guarantee them."""
    held = availability.held_cells([slot.clinician_id], slot.starts_at, slot.ends_at,
                                   ignore_appointment=ignore_appointment)
    if any((slot.clinician_id, c) in held for c in availability.cells(slot.starts_at, slot.ends_at)):
        mine = db.session.scalar(sa.select(Appointment.id).where(
            Appointment.patient_id == patient.id, Appointment.clinician_id == slot.clinician_id,
            Appointment.starts_at == slot.starts_at, Appointment.status.in_(UPCOMING)))
        if mine is not None and mine != ignore_appointment:
            raise BookingError("You have already booked this time." if role == "patient"
                               else "This patient is already booked at this time.")
        raise SlotTaken()
    clash = _patient_clash(patient.id, slot.starts_at, slot.ends_at, ignore_appointment)
    if clash is not None:
        raise PatientBusy(_busy_message(clash, role))


def hold(appointment: Appointment, role: str) -> None:
    """Write the clinician's and the patient's cells: the database refuses any already held."""
    session = db.session
    cells = availability.cells(appointment.starts_at, appointment.ends_at)
    for kind, owner in (("clinician", appointment.clinician_id), ("patient", appointment.patient_id)):
        rows = [{"kind": kind, "owner_id": owner, "starts_at": c, "appointment_id": appointment.id} for c in cells]
        try:
            with session.begin_nested():
                session.execute(sa.insert(TimeHold), rows)
        except IntegrityError:
            if kind == "clinician":
                raise SlotTaken() from None
            clash = _patient_clash(appointment.patient_id, appointment.starts_at, appointment.ends_at, appointment.id)
            raise PatientBusy(_busy_message(clash, role) if clash else
                              "That time overlaps another consultation. Choose another time.") from None


def release(appointment: Appointment) -> None:
    db.session.execute(sa.delete(TimeHold).where(TimeHold.appointment_id == appointment.id))


def nearest_free(slot_id: str | None, *, patient: Patient, role: str, now: dt.datetime | None = None,
                 limit: int = ALTERNATIVES) -> list[Slot]:
    """Free slots of the same kind closest in time to the one asked for; the same clinician first on ties."""
    now = now or utcnow()
    try:
        ref = parse_slot_id(slot_id)
    except ValueError:
        return []
    zone = settings.clinic_zone()
    today = now.astimezone(zone).date()
    asked_day = ref.starts_at.astimezone(zone).date()
    first = max(today, asked_day - dt.timedelta(days=ALTERNATIVES_WINDOW_DAYS))
    last = asked_day + dt.timedelta(days=ALTERNATIVES_WINDOW_DAYS)
    if role == "patient":
        last = min(last, last_bookable_day(now))
    ids = [c.id for c in clinician_choices(patient, role)]
    mine = [(a.starts_at, a.ends_at) for a in upcoming_for(patient, now=now)]
    candidates = [s for s in availability.free_slots(ids, ref.consultation_type, first, last,
                                                     not_before=earliest_start(role, now))
                  if not (s.clinician_id == ref.clinician_id and s.starts_at == ref.starts_at)
                  and not any(s.overlaps(a, b) for a, b in mine)]
    candidates.sort(key=lambda s: (abs((s.starts_at - ref.starts_at).total_seconds()),
                                   s.clinician_id != ref.clinician_id, s.starts_at))
    return sorted(candidates[:limit])


def upcoming_for(patient: Patient, *, now: dt.datetime | None = None) -> list[Appointment]:
    now = now or utcnow()
    return list(db.session.scalars(sa.select(Appointment).where(
        Appointment.patient_id == patient.id, Appointment.status.in_(UPCOMING), Appointment.ends_at > now)
        .order_by(Appointment.starts_at)))


# Booking, moving, cancelling ------------------------------------------------------------------

def book(patient: Patient, slot_id: str | None, *, by: User, consultation_type: str | None = None,
         now: dt.datetime | None = None) -> Appointment:
    """Book the slot for the patient, or raise BookingError (SlotTaken when someone was faster)."""
    now = now or utcnow()
    role = role_of(by)
    if role == "patient" and patient.user_id != by.id:
        raise BookingError("You can book only for yourself.")
    if not onboarding.can_book(patient):
        raise BookingError(not_ready_message(patient, role))
    if role == "patient" and details.missing(patient, "booking"):
        raise BookingError("Add your address and phone number before you book.")
    try:
        with transaction() as session:
            slot = resolve(slot_id, patient=patient, role=role, consultation_type=consultation_type, now=now)
            _check_free(slot, patient, role)
            from app.billing import services as billing

            billing.check_may_book(patient, slot.consultation_type, role)  # pay-before policy: paid for first
            appointment = Appointment(
                patient_id=patient.id, clinician_id=slot.clinician_id, consultation_type=slot.consultation_type,
                starts_at=slot.starts_at, ends_at=slot.ends_at, status=BOOKED, booked_by=by.id, created_at=now,
                time_set_at=now, status_changed_at=now)
            session.add(appointment)
            try:
                with session.begin_nested():
                    session.flush()
            except IntegrityError:
                raise SlotTaken() from None
            hold(appointment, role)
            # The clinic's charging policy (billing decides: a charge and invoice now, later, or a prepaid one).
            from app.billing import services as billing

            billing.charge_for_appointment(appointment, role=role)
            # The email first: the audit entries below take the chain's lock until commit, so the
            # rendering is kept out of it.
            notify.booked(appointment)
            if patient.clinician_id is None:
                patients.assign_clinician(patient, availability.clinician(slot.clinician_id))
            audit.record("appointment.booked", subject=("appointment", appointment.id), patient_id=patient.id,
                         detail={"clinician_id": slot.clinician_id, "starts_at": slot.starts_at.isoformat(),
                                 "consultation_type": slot.consultation_type, "by_role": role})
            onboarding.booked(patient)
    except SlotTaken:
        raise SlotTaken(nearest_free(slot_id, patient=patient, role=role, now=now)) from None
    return appointment


def check_patient_may_change(appointment: Appointment, now: dt.datetime) -> None:
    hours = settings.patient_cancel_hours()
    if appointment.starts_at - now < dt.timedelta(hours=hours):
        raise BookingError(f"You cannot cancel or move a consultation less than {hours} hours before it starts. "
                           "If you cannot make it, contact the clinic.")


def reschedule(appointment: Appointment, slot_id: str | None, *, by: User, now: dt.datetime | None = None,
               from_offer: bool = False) -> Appointment:
    """Move a booked appointment to another slot of its kind, keeping its id (and calendar UID)."""
    now = now or utcnow()
    role = role_of(by)
    patient = patients.get(appointment.patient_id)
    if role == "patient" and patient.user_id != by.id:
        raise BookingError("You can change only your own appointments.")
    if appointment.status != BOOKED:
        raise BookingError(f"Only a booked appointment can be moved; this one is "
                           f"“{states.LABELS[appointment.status].lower()}”.")
    if role == "patient" and not from_offer:
        check_patient_may_change(appointment, now)
    try:
        with transaction() as session:
            slot = resolve(slot_id, patient=patient, role=role, consultation_type=appointment.consultation_type,
                           now=now)
            if slot.clinician_id == appointment.clinician_id and slot.starts_at == appointment.starts_at:
                raise BookingError("That is the time the appointment already has. Choose another time.", field="slot")
            _check_free(slot, patient, role, ignore_appointment=appointment.id)
            old = Slot(appointment.starts_at, appointment.clinician_id, appointment.consultation_type,
                       int((appointment.ends_at - appointment.starts_at).total_seconds() // 60))
            release(appointment)
            try:
                with session.begin_nested():
                    changed = session.execute(
                        sa.update(Appointment).where(Appointment.id == appointment.id, Appointment.status == BOOKED)
                        .values(clinician_id=slot.clinician_id, starts_at=slot.starts_at, ends_at=slot.ends_at,
                                sequence=Appointment.sequence + 1, time_set_at=now)
                        .execution_options(synchronize_session=False)).rowcount
            except IntegrityError:
                raise SlotTaken() from None
            if not changed:
                raise BookingError("This appointment has changed since you opened it. Reload the page to see it now.")
            session.refresh(appointment)
            hold(appointment, role)
            notify.rescheduled(appointment)
            audit.record("appointment.rescheduled", subject=("appointment", appointment.id), patient_id=patient.id,
                         detail={"from": {"clinician_id": old.clinician_id, "starts_at": old.starts_at.isoformat()},
                                 "to": {"clinician_id": slot.clinician_id, "starts_at": slot.starts_at.isoformat()},
                                 "by_role": role})
            if old.starts_at > now:
                from app.scheduling import waitlist

                waitlist.offer_freed(old, now=now)
    except SlotTaken:
        raise SlotTaken(nearest_free(slot_id, patient=patient, role=role, now=now)) from None
    return appointment


def cancel(appointment: Appointment, *, by: User, now: dt.datetime | None = None) -> None:
    """Cancel, free the time (offering it to the waiting list), tell the patient, and move their journey back
    if this was their last live booking."""
    from app.scheduling import waitlist

    now = now or utcnow()
    role = role_of(by)
    patient = patients.get(appointment.patient_id)
    if role == "patient":
        if patient.user_id != by.id:
            raise BookingError("You can cancel only your own appointments.")
        if appointment.status != BOOKED:
            raise BookingError("This appointment can no longer be cancelled here. Contact the clinic.")
        check_patient_may_change(appointment, now)
    if appointment.status not in (BOOKED, CHECKED_IN):
        raise BookingError(f"This appointment cannot be cancelled: it is "
                           f"“{states.LABELS[appointment.status].lower()}”.")
    with transaction() as session:
        states.move(appointment, CANCELLED, role, detail={"by_role": role},
                    extra={"sequence": Appointment.sequence + 1, "cancelled_by": by.id})
        release(appointment)
        waitlist.withdraw_for_appointment(appointment)
        others = session.scalar(sa.select(sa.func.count()).select_from(Appointment).where(
            Appointment.patient_id == patient.id, Appointment.status.in_(UPCOMING), Appointment.ends_at > now,
            Appointment.id != appointment.id))
        onboarding.booking_cancelled(patient, other_live_bookings=others)
        notify.cancelled(appointment)
        if appointment.starts_at > now:
            waitlist.offer_freed(Slot(appointment.starts_at, appointment.clinician_id, appointment.consultation_type,
                                      int((appointment.ends_at - appointment.starts_at).total_seconds() // 60)),
                                 now=now)


def mark(appointment: Appointment, to: str, *, by: User) -> None:
    """Check in, start, complete or mark as not attended (see states.py for who and when)."""
    role = role_of(by)
    if by.role is Role.CLINICIAN and appointment.clinician_id != by.id:
        raise states.StateError("Only the appointment's own clinician can do that.")
    if by.role is Role.PATIENT:
        patient = patients.get(appointment.patient_id)
        if patient.user_id != by.id or to != CHECKED_IN:
            raise states.StateError("You can only check in to your own appointment.")
    states.move(appointment, to, role)
