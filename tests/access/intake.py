"""Who may reach the intake's pages.

Decision on health answers: they are clinical data (mental health, drug use, pregnancy). Only the
patient, the patient's own clinician and admins may read them. Reception sees where the patient is
(not started, in progress, sent, and the journey stage) on the same page, never the answers or the
rules' reasons; pharmacists and other clinicians get a refusal, which is audited. Only the
patient's clinician may decide on a review or override the rules' outcome.
The FHIR endpoints answer JSON, so an anonymous caller gets 401 rather than the login redirect.
"""

from __future__ import annotations

from tests.access import (
    ADMIN,
    ADMIN_ONLY,
    ANON,
    CLIN,
    OTHER_CLIN,
    OTHER_PHARM,
    PATIENTS,
    PHARM,
    RECEP,
    SIGNED_IN,
    STAFF,
    table,
)

CLINICIANS = (CLIN, OTHER_CLIN)


def _step(app, personas) -> int:
    return 1


def _submitted_response(app, personas) -> int:
    """A sent intake of a patient of the persona "clinician" (made once per app)."""
    cache = app.extensions.setdefault("tests.access.intake", {})
    if "response" not in cache:
        from tests.conftest import World

        carol = World(app).patient("carol", clinician=personas["clinician"])
        with app.app_context():
            from app.intake import services
            from app.patients import services as patients

            cache["response"] = services.complete_demo_intake(patients.get(carol.patient_id)).id
    return cache["response"]


def _questionnaire(app, personas) -> int:
    cache = app.extensions.setdefault("tests.access.intake", {})
    if "questionnaire" not in cache:
        with app.app_context():
            from app.intake import services

            cache["questionnaire"] = services.load_default_questionnaires()[0].version.id
    return cache["questionnaire"]


def _json(**groups) -> dict[str, int]:
    return {**table(**groups), ANON: 401}


EXPECTED = {
    # Patients have no intake yet in the walk: the start page, a step, and redirects to them.
    "intake.start": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "intake.step": ("GET", {"number": _step}, table(ok=PATIENTS, forbidden=STAFF)),
    "intake.preview": ("POST", {"number": _step}, table(bad_request=PATIENTS, forbidden=STAFF)),
    "intake.check": ("GET", {}, table(redirect=PATIENTS, forbidden=STAFF)),
    "intake.submit": ("POST", {}, table(bad_request=PATIENTS, forbidden=STAFF)),
    "intake.sent": ("GET", {}, table(redirect=PATIENTS, forbidden=STAFF)),
    "intake.reviews": ("GET", {}, table(ok=CLINICIANS, forbidden=(*PATIENTS, RECEP, PHARM, OTHER_PHARM, ADMIN))),
    "intake.staff_answers": ("GET", {"patient_id": "patient"},
                              table(ok=(CLIN, RECEP, ADMIN), forbidden=(*PATIENTS, OTHER_CLIN, PHARM, OTHER_PHARM))),
    "intake.decide": ("POST", {"patient_id": "patient"},
                      table(bad_request=(CLIN,), forbidden=(*PATIENTS, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM, ADMIN))),
    "intake.questionnaires": ("GET", {}, ADMIN_ONLY),
    "intake.upload_questionnaire": ("GET", {}, ADMIN_ONLY),
    "intake.fhir_questionnaire_response": (
        "GET", {"resource_id": _submitted_response},
        _json(ok=(CLIN, ADMIN), forbidden=(*PATIENTS, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM))),
    "intake.fhir_questionnaire": ("GET", {"resource_id": _questionnaire}, _json(ok=STAFF, forbidden=PATIENTS)),
}

assert set(EXPECTED["intake.start"][2]) == {ANON, *SIGNED_IN}
