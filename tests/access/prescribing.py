"""Who may reach each prescribing route. Objects (a signed prescription of the patient, a draft, a repeat
request, an MDT review, a product) are made once per app through the services."""

from __future__ import annotations

import datetime as dt

from tests.access import (
    ADMIN,
    ADMIN_ONLY,
    CLIN,
    EVERYONE,
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

NOT_CLIN = (*PATIENTS, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM, ADMIN)
CLINICIANS = (CLIN, OTHER_CLIN)


def _objects(app, personas) -> dict:
    cache = app.extensions.setdefault("prescribing_access", {})
    if cache:
        return cache
    from app.auth.models import User
    from app.extensions import db
    from app.patients import services as patients
    from app.prescribing import plans, services
    from tests.test_prescribing_helpers import acting_as, line, prepare, sign_new

    with app.app_context():
        ready = prepare(personas)
        signed = sign_new(ready)
        doctor = db.session.get(User, ready.clinician_id)
        patient = patients.get(ready.patient_id)
        with acting_as(doctor.id, "clinician"):
            draft = services.add_item(patient, doctor, line(ready.products, quantity="5", days="5"))
        with acting_as(patient.user_id, "patient"):
            repeat = services.request_repeat(patient, signed, "Running low")
        second = patients.register(email="carol.access@patients.example.com", password="correct-horse-battery",
                                   full_name="Carol Example", date_of_birth=dt.date(1975, 1, 2))
        patients.assign_clinician(second, doctor)
        with acting_as(doctor.id, "clinician"):
            spare = services.add_item(second, doctor, line(ready.products, quantity="5", days="5"))
        cache.update(signed=signed.id, public_id=signed.public_id, draft=draft.id, item=draft.items[0].id,
                     spare=spare.id, repeat=repeat.id, review=plans.reviews(patient)[0].id,
                     product=next(iter(ready.products.values())))
    return cache


def _get(key):
    return lambda app, personas: _objects(app, personas)[key]


def _missing(app, personas) -> int:
    return 999_999


SIGNED, DRAFT = {"prescription_id": _get("signed")}, {"prescription_id": _get("draft")}
OWN_PATIENT = {"patient_id": "patient"}
VIEWERS = (CLIN, RECEP, ADMIN)  # the patient's clinician and the front desk

EXPECTED = {
    # The patient's prescribing page, the builder and its fragments.
    "prescribing.patient_page": ("GET", OWN_PATIENT, table(ok=VIEWERS, forbidden=(*PATIENTS, OTHER_CLIN, PHARM,
                                                                                   OTHER_PHARM))),
    "prescribing.builder": ("GET", OWN_PATIENT, table(redirect=(CLIN,), forbidden=NOT_CLIN)),
    # The live check of an empty line answers the draft's current blocking reasons.
    "prescribing.check": ("POST", OWN_PATIENT, table(ok=(CLIN,), forbidden=NOT_CLIN)),
    "prescribing.add_item": ("POST", OWN_PATIENT, table(bad_request=(CLIN,), forbidden=NOT_CLIN)),
    # The consultation side panel's Prescribing tab: the patient's own clinician only.
    "prescribing.panel": ("GET", OWN_PATIENT, table(ok=(CLIN,), forbidden=NOT_CLIN)),
    # An unknown item: the builder says so (flash) and goes back.
    "prescribing.remove_item": ("POST", {**DRAFT, "item_id": _missing}, table(redirect=(CLIN,), forbidden=NOT_CLIN)),
    "prescribing.discard": ("POST", {"prescription_id": _get("spare")}, table(redirect=(CLIN,), forbidden=NOT_CLIN)),
    "prescribing.plan_edit": ("GET", OWN_PATIENT, table(ok=(CLIN,), forbidden=NOT_CLIN)),
    "prescribing.plan_history": ("GET", OWN_PATIENT, table(ok=(CLIN, ADMIN), forbidden=(
        *PATIENTS, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM))),
    "prescribing.mdt_refer": ("POST", OWN_PATIENT, table(bad_request=(CLIN,), forbidden=NOT_CLIN)),
    # Any clinician may sit on the MDT.
    "prescribing.mdt_queue": ("GET", {}, table(ok=CLINICIANS, forbidden=(*PATIENTS, RECEP, PHARM, OTHER_PHARM,
                                                                          ADMIN))),
    "prescribing.mdt_decide": ("GET", {"review_id": _get("review")},
                               table(ok=CLINICIANS, forbidden=(*PATIENTS, RECEP, PHARM, OTHER_PHARM, ADMIN))),
    # Signing: the draft's author, with a fresh second factor (the walk's sessions have one).
    "prescribing.sign_confirm": ("GET", DRAFT, table(ok=(CLIN,), forbidden=NOT_CLIN)),
    "prescribing.sign": ("POST", DRAFT, table(bad_request=(CLIN,), forbidden=NOT_CLIN)),
    # A signed prescription: its prescriber, the front desk, the pharmacy it was sent to.
    "prescribing.prescription": ("GET", SIGNED, table(ok=(CLIN, RECEP, ADMIN, PHARM), forbidden=(
        *PATIENTS, OTHER_CLIN, OTHER_PHARM))),
    "prescribing.prescription_pdf": ("GET", SIGNED, table(ok=(CLIN, RECEP, ADMIN, PHARM), forbidden=(
        *PATIENTS, OTHER_CLIN, OTHER_PHARM))),
    "prescribing.prescription_jws": ("GET", SIGNED, table(ok=(CLIN, ADMIN, PHARM), forbidden=(
        *PATIENTS, OTHER_CLIN, RECEP, OTHER_PHARM))),
    "prescribing.fp10pcd": ("GET", SIGNED, table(ok=(CLIN,), forbidden=NOT_CLIN)),
    "prescribing.record_posting": ("POST", SIGNED, table(bad_request=VIEWERS, forbidden=(
        *PATIENTS, OTHER_CLIN, PHARM, OTHER_PHARM))),
    "prescribing.cancel": ("POST", SIGNED, table(bad_request=(CLIN,), forbidden=NOT_CLIN)),
    # A replacement cannot start while the clinician has a draft for the patient: told, and sent back.
    "prescribing.supersede": ("POST", SIGNED, table(redirect=(CLIN,), forbidden=NOT_CLIN)),
    "prescribing.repeat_queue": ("GET", {}, table(ok=CLINICIANS, forbidden=(*PATIENTS, RECEP, PHARM, OTHER_PHARM,
                                                                             ADMIN))),
    "prescribing.repeat_decide": ("POST", {"request_id": _get("repeat")},
                                  table(bad_request=(CLIN,), forbidden=NOT_CLIN)),
    "prescribing.cd_log": ("GET", {}, table(ok=(CLIN, OTHER_CLIN, ADMIN), forbidden=(
        *PATIENTS, RECEP, PHARM, OTHER_PHARM))),
    # The patient's own pages (a second request while one waits is refused with a message).
    "prescribing.my_prescriptions": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "prescribing.request_repeat": ("POST", SIGNED, table(redirect=(PATIENT,), forbidden=(OTHER_PATIENT, *STAFF))),
    # Verification: public status; a PDF check for pharmacists and clinicians (no file: 400).
    "prescribing.verify": ("GET", {"public_id": _get("public_id")}, {p: 200 for p in EVERYONE}),
    "prescribing.verify_upload": ("POST", {"public_id": _get("public_id")},
                                  table(bad_request=(CLIN, OTHER_CLIN, PHARM, OTHER_PHARM, ADMIN),
                                        forbidden=(*PATIENTS, RECEP))),
    "prescribing.jwks": ("GET", {}, {p: 200 for p in EVERYONE}),
    # Administration.
    "prescribing.formulary_index": ("GET", {}, ADMIN_ONLY),
    "prescribing.formulary_new": ("GET", {}, ADMIN_ONLY),
    "prescribing.formulary_import": ("GET", {}, ADMIN_ONLY),
    "prescribing.formulary_edit": ("GET", {"product_id": _get("product")}, ADMIN_ONLY),
    "prescribing.formulary_set_status": ("POST", {"product_id": _get("product")},
                                         table(bad_request=(ADMIN,), forbidden=(*PATIENTS, CLIN, OTHER_CLIN, RECEP,
                                                                               PHARM, OTHER_PHARM))),
    "prescribing.formulary_search": ("GET", {}, table(ok=(CLIN, OTHER_CLIN, ADMIN), forbidden=(
        *PATIENTS, RECEP, PHARM, OTHER_PHARM))),
    "prescribing.prescribers_index": ("GET", {}, ADMIN_ONLY),
    "prescribing.prescriber_edit": ("GET", {"user_id": "clinician"}, ADMIN_ONLY),
}
