"""Who may reach each outcomes route. The patient's objects (a due questionnaire, a completed response, an
upload, an adverse event) are made once per app through the services.

Scores are clinical data: the patient, their own clinician and admins read them; reception sees only the
overdue list (to chase it); pharmacists see nothing here."""

from __future__ import annotations

import datetime as dt

from tests.access import (
    ADMIN,
    ADMIN_ONLY,
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


def _objects(app, personas) -> dict:
    cache = app.extensions.setdefault("outcomes_access", {})
    if cache:
        return cache
    from app.auth.models import User
    from app.extensions import db
    from app.outcomes import adverse, imports, instruments, schedule, services
    from app.patients import services as patients
    from tests.test_prescribing_helpers import acting_as

    with app.app_context():
        patient = patients.get(personas["patient"].patient_id)
        user = patients.user_of(patient)
        doctor = db.session.get(User, personas["clinician"].user_id)
        instruments.ensure_built_in()
        with acting_as(doctor.id, "clinician"):
            due = schedule.request_extra(patient, "gad-7", by=doctor)
        services._record_completed(patient, "phq-9", "baseline", 6,
                                   dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
        from app.outcomes import answering

        response = answering.responses_of(patient)[0]
        with acting_as(user.id, "patient"):
            upload = imports.start(patient, by=user, filename="days.csv", size=10)
            event = adverse.report(patient, {"description": "Dry mouth", "started_on": dt.date.today(),
                                             "severity": "mild"}, by=user)
        cache.update(due=due.id, response=response.id, upload=upload.id, event=event.id)
    return cache


def _get(key):
    return lambda app, personas: _objects(app, personas)[key]


OWN = {"patient_id": "patient"}
READERS = (CLIN, ADMIN)
NOT_READERS = (*PATIENTS, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM)
NOT_CLIN = (*PATIENTS, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM, ADMIN)
PATIENT_ONLY = table(ok=PATIENTS, forbidden=STAFF)
OWN_PATIENT_ONLY = table(ok=(PATIENT,), forbidden=(OTHER_PATIENT, *STAFF))
# Clinicians read their own patients' outcomes for the summary and cohort exports (admins all).
CLINIC_READERS = table(ok=(CLIN, OTHER_CLIN, ADMIN), forbidden=(*PATIENTS, RECEP, PHARM, OTHER_PHARM))

EXPECTED = {
    # The patient's pages.
    "outcomes.mine": ("GET", {}, PATIENT_ONLY),
    "outcomes.answer": ("GET", {"due_id": _get("due")}, OWN_PATIENT_ONLY),
    # An empty preview saves nothing new and goes back to the form (no htmx).
    "outcomes.preview": ("POST", {"due_id": _get("due")},
                         table(redirect=(PATIENT,), forbidden=(OTHER_PATIENT, *STAFF))),
    "outcomes.checkin": ("GET", {}, PATIENT_ONLY),
    "outcomes.report_event": ("GET", {}, PATIENT_ONLY),
    "outcomes.my_export": ("GET", {"fmt": lambda app, personas: "csv"}, PATIENT_ONLY),
    "outcomes.imports_page": ("GET", {}, PATIENT_ONLY),
    "outcomes.imports_list": ("GET", {}, PATIENT_ONLY),
    "outcomes.import_template": ("GET", {}, PATIENT_ONLY),
    # The chunked upload (JSON): an empty start has no size; an empty chunk no Content-Range.
    "outcomes.import_create": ("POST", {}, table(bad_request=PATIENTS, forbidden=STAFF)),
    "outcomes.import_upload_status": ("GET", {"import_id": _get("upload")}, OWN_PATIENT_ONLY),
    "outcomes.import_chunk": ("POST", {"import_id": _get("upload")},
                              table(bad_request=(PATIENT,), forbidden=(OTHER_PATIENT, *STAFF))),
    # Completing an upload whose bytes have not arrived: 409 with the offset to resume from.
    "outcomes.import_complete": ("POST", {"import_id": _get("upload")},
                                 {**table(forbidden=(OTHER_PATIENT, *STAFF), ok=(PATIENT,)), PATIENT: 409}),
    "outcomes.import_status": ("GET", {"import_id": _get("upload")}, OWN_PATIENT_ONLY),
    # The clinician's pages for one patient.
    "outcomes.staff_page": ("GET", OWN, table(ok=READERS, forbidden=NOT_READERS)),
    "outcomes.panel": ("GET", OWN, table(ok=READERS, forbidden=NOT_READERS)),
    "outcomes.response": ("GET", {"response_id": _get("response")}, table(ok=READERS, forbidden=NOT_READERS)),
    "outcomes.patient_export": ("GET", {**OWN, "fmt": lambda app, personas: "json"},
                                table(ok=READERS, forbidden=NOT_READERS)),
    "outcomes.request_questionnaire": ("POST", OWN, table(bad_request=(CLIN,), forbidden=NOT_CLIN)),
    "outcomes.schedule_edit": ("GET", OWN, table(ok=(CLIN,), forbidden=NOT_CLIN)),
    "outcomes.staff_report_event": ("GET", OWN, table(ok=(CLIN,), forbidden=NOT_CLIN)),
    "outcomes.adverse_event": ("GET", {"event_id": _get("event")}, table(ok=READERS, forbidden=NOT_READERS)),
    "outcomes.yellow_card": ("GET", {"event_id": _get("event")}, table(ok=READERS, forbidden=NOT_READERS)),
    "outcomes.review_event": ("POST", {"event_id": _get("event")}, table(redirect=(CLIN,), forbidden=NOT_CLIN)),
    # The clinic.
    "outcomes.overdue": ("GET", {}, table(ok=(CLIN, OTHER_CLIN, RECEP, ADMIN), forbidden=(*PATIENTS, PHARM,
                                                                                          OTHER_PHARM))),
    "outcomes.clinic_summary": ("GET", {}, CLINIC_READERS),
    "outcomes.cohort_export": ("GET", {}, CLINIC_READERS),
    "outcomes.instruments_index": ("GET", {}, ADMIN_ONLY),
    "outcomes.instrument_upload": ("GET", {}, ADMIN_ONLY),
}

assert ANON  # (imported for readers: anonymous visitors are sent to sign in everywhere here)
