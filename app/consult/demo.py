"""A consultation starting in a few minutes, for the demo ("try a video call now"), the tests and the
benchmarks: booked through the scheduling services like any other, in an extra session of the
clinician's when their pattern has no free time then."""

from __future__ import annotations

import datetime as dt

from app.auth.models import User
from app.consult.services import ConsultError
from app.database import utcnow
from app.patients.models import Patient
from app.scheduling import services as scheduling
from app.scheduling import settings as scheduling_settings
from app.scheduling.models import Appointment

STEP = dt.timedelta(minutes=5)


def book_soon(patient: Patient, clinician: User, *, by: User, lead_minutes: int = 5,
              consultation_type: str = "initial") -> Appointment:
    """Book the first time from `lead_minutes` ahead at which the clinician and the patient are free."""
    minutes = scheduling_settings.consultation_types()[consultation_type].minutes
    now = utcnow() + dt.timedelta(minutes=lead_minutes)
    start = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=(-now.minute) % 5)
    for attempt in range(48):
        when = start + attempt * STEP
        slot = scheduling.Slot(when, clinician.id, consultation_type, minutes).id
        try:
            return scheduling.book(patient, slot, by=by, consultation_type=consultation_type)
        except scheduling.BookingError:
            pass
        try:
            scheduling.availability.add_exception(
                clinician_id=clinician.id, kind="extra", starts_at=when, ends_at=when + dt.timedelta(minutes=minutes),
                by=by, slot_minutes=minutes, consultation_type=consultation_type, note="Video consultation (demo)")
        except scheduling.AvailabilityError:
            continue
        try:
            return scheduling.book(patient, slot, by=by, consultation_type=consultation_type)
        except scheduling.BookingError:
            continue
    raise ConsultError("No free time in the next four hours.")
