"""Who may reach the scheduling pages: booking, appointments, the boards, availability, the FHIR views.

The objects are made once per app: the clinician's patterns, the patient booked two weeks ahead (so
the 24-hour rule never refuses them), and a day of leave. POSTs arrive empty: 400 for those who may
use them (nothing is changed), 403 for the rest.
"""

from __future__ import annotations

import datetime as dt

from tests.access import (
    ADMIN,
    ANON,
    CLIN,
    OTHER_CLIN,
    OTHER_PATIENT,
    OTHER_PHARM,
    PATIENT,
    PATIENTS,
    PHARM,
    RECEP,
    STAFF,
    table,
)

FRONT_DESK = (RECEP, ADMIN)
NOT_FRONT_DESK = (*PATIENTS, CLIN, OTHER_CLIN, PHARM, OTHER_PHARM)
#: The appointment's patient, its clinician and the front desk.
ITS_PEOPLE = (PATIENT, CLIN, RECEP, ADMIN)
NOT_ITS_PEOPLE = (OTHER_PATIENT, OTHER_CLIN, PHARM, OTHER_PHARM)
CLINICAL_STAFF = (CLIN, OTHER_CLIN, RECEP, ADMIN)


def _made(app, personas) -> dict:
    cache = app.extensions.setdefault("scheduling_access", {})
    if cache:
        return cache
    import sqlalchemy as sa

    from app.extensions import db
    from app.patients import services as patients
    from app.scheduling import availability, services
    from app.scheduling.models import AvailabilityPattern
    from tests.test_scheduling import LONDON, future_monday, set_up_clinic, slot_id, user

    with app.app_context():
        set_up_clinic(personas)
        patient = patients.get(personas["patient"].patient_id)
        booked = services.book(patient, slot_id(personas["clinician"], future_monday(), "09:00"),
                               by=user(personas["reception"]))
        leave_day = future_monday(weeks=6)
        leave = availability.add_exception(
            clinician_id=personas["clinician"].user_id, kind="leave",
            starts_at=dt.datetime.combine(leave_day, dt.time(0), tzinfo=LONDON),
            ends_at=dt.datetime.combine(leave_day, dt.time(23, 0), tzinfo=LONDON), by=user(personas["reception"]))
        pattern = db.session.scalars(sa.select(AvailabilityPattern).where(
            AvailabilityPattern.clinician_id == personas["clinician"].user_id)).first()
        cache.update(appointment=booked.id, pattern=pattern.id, exception=leave.id)
    return cache


def _appointment(app, personas) -> int:
    return _made(app, personas)["appointment"]


def _pattern(app, personas) -> int:
    return _made(app, personas)["pattern"]


def _exception(app, personas) -> int:
    return _made(app, personas)["exception"]


def _schedule(app, personas) -> str:
    return f"Schedule/{personas['clinician'].user_id}"


def _missing(app, personas) -> int:
    return 999_999


EXPECTED = {
    # Patients' pages.
    "scheduling.book": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "scheduling.my_appointments": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "scheduling.waitlist": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "scheduling.offer": ("POST", {"offer_id": _missing}, table(not_found=PATIENTS, forbidden=STAFF)),
    # One appointment.
    "scheduling.appointment": ("GET", {"appointment_id": _appointment},
                               table(ok=ITS_PEOPLE, forbidden=NOT_ITS_PEOPLE)),
    "scheduling.reschedule": ("GET", {"appointment_id": _appointment}, table(ok=ITS_PEOPLE, forbidden=NOT_ITS_PEOPLE)),
    "scheduling.cancel": ("POST", {"appointment_id": _appointment},
                          table(bad_request=ITS_PEOPLE, forbidden=NOT_ITS_PEOPLE)),
    "scheduling.set_status": ("POST", {"appointment_id": _appointment},
                              table(bad_request=ITS_PEOPLE, forbidden=NOT_ITS_PEOPLE)),
    "scheduling.follow_up": ("GET", {"appointment_id": _appointment},
                             table(ok=(CLIN, RECEP, ADMIN), forbidden=(*PATIENTS, OTHER_CLIN, PHARM, OTHER_PHARM))),
    # Boards and booking for a patient.
    "scheduling.board": ("GET", {}, table(ok=CLINICAL_STAFF, forbidden=(*PATIENTS, PHARM, OTHER_PHARM))),
    "scheduling.find_patient": ("GET", {}, table(ok=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "scheduling.book_for": ("GET", {"patient_id": "patient"}, table(ok=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    # Availability.
    "scheduling.availability": ("GET", {}, table(ok=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "scheduling.add_pattern": ("POST", {"clinician_id": "clinician"},
                               table(bad_request=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "scheduling.edit_pattern": ("GET", {"pattern_id": _pattern}, table(ok=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "scheduling.delete_pattern": ("POST", {"pattern_id": _pattern},
                                  table(bad_request=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "scheduling.add_exception": ("POST", {"clinician_id": "clinician"},
                                 table(bad_request=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    "scheduling.delete_exception": ("POST", {"exception_id": _exception},
                                    table(bad_request=FRONT_DESK, forbidden=NOT_FRONT_DESK)),
    # FHIR: JSON clients get 401, not a redirect to the sign-in page.
    "scheduling.fhir_appointment": ("GET", {"appointment_id": _appointment},
                                    {**table(ok=(CLIN, RECEP, ADMIN), forbidden=(*PATIENTS, OTHER_CLIN, PHARM,
                                                                                  OTHER_PHARM)), ANON: 401}),
    "scheduling.fhir_slots": ("GET", {"schedule": _schedule},
                              {**table(ok=CLINICAL_STAFF, forbidden=(*PATIENTS, PHARM, OTHER_PHARM)), ANON: 401}),
}
