"""Who may reach the consultation's pages: the call and its token (the appointment's patient and clinician
only), the pre-call check (anyone signed in), the waiting board (clinical staff and the front desk), the
side panel and notes (the appointment's clinician; the notes record also admins), guests' links (public,
but only with a valid signed link).

One appointment starting in a few minutes is booked once per app, so the waiting room is open.
"""

from __future__ import annotations

from tests.access import (
    ADMIN,
    ANON,
    CLIN,
    EVERYONE,
    OTHER_CLIN,
    OTHER_PATIENT,
    OTHER_PHARM,
    PATIENT,
    PATIENTS,
    PHARM,
    RECEP,
    SIGNED_IN,
    table,
)

ITS_PEOPLE = (PATIENT, CLIN)
NOT_ITS_PEOPLE = (OTHER_PATIENT, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM, ADMIN)
NOT_ITS_CLINICIAN = (*PATIENTS, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM, ADMIN)


def _appointment(app, personas) -> int:
    cache = app.extensions.setdefault("consult_access", {})
    if "appointment" not in cache:
        from tests.access.identity import patients_check
        from tests.test_consult import book_soon

        # Booking needs a patient whose identity is confirmed; the identity walk (later in the order)
        # needs the patient's check submitted before that, so it is made first.
        patients_check(app, personas)
        cache["appointment"] = book_soon(app, personas)
    return cache["appointment"]


def _bad_link(app, personas) -> str:
    return "not-a-signed-link"


EXPECTED = {
    "consult.call": ("GET", {"appointment_id": _appointment}, table(ok=ITS_PEOPLE, forbidden=NOT_ITS_PEOPLE)),
    "consult.token": ("POST", {"appointment_id": _appointment}, table(ok=ITS_PEOPLE, forbidden=NOT_ITS_PEOPLE)),
    "consult.precall": ("GET", {}, table(ok=SIGNED_IN)),
    "consult.precall_token": ("POST", {}, table(ok=SIGNED_IN)),
    "consult.waiting": ("GET", {}, table(ok=(CLIN, OTHER_CLIN, RECEP, ADMIN),
                                         forbidden=(*PATIENTS, PHARM, OTHER_PHARM))),
    "consult.panel_summary": ("GET", {"appointment_id": _appointment}, table(ok=(CLIN,), forbidden=NOT_ITS_CLINICIAN)),
    "consult.panel_intake": ("GET", {"appointment_id": _appointment}, table(ok=(CLIN,), forbidden=NOT_ITS_CLINICIAN)),
    "consult.panel_documents": ("GET", {"appointment_id": _appointment},
                                table(ok=(CLIN,), forbidden=NOT_ITS_CLINICIAN)),
    "consult.note": ("GET", {"appointment_id": _appointment}, table(ok=(CLIN,), forbidden=NOT_ITS_CLINICIAN)),
    "consult.note_sign": ("POST", {"appointment_id": _appointment},
                          table(bad_request=(CLIN,), forbidden=NOT_ITS_CLINICIAN)),
    "consult.note_amend": ("POST", {"appointment_id": _appointment},
                           table(bad_request=(CLIN,), forbidden=NOT_ITS_CLINICIAN)),
    "consult.invite_guest": ("POST", {"appointment_id": _appointment},
                             table(bad_request=(CLIN,), forbidden=NOT_ITS_CLINICIAN)),
    "consult.patient_notes": ("GET", {"patient_id": "patient"},
                              table(ok=(CLIN, ADMIN), forbidden=(*PATIENTS, OTHER_CLIN, RECEP, PHARM, OTHER_PHARM))),
    # A guest has no account: the signed link is the key, and a bad one is simply not found.
    "consult.guest": ("GET", {"link": _bad_link}, {who: 404 for who in EVERYONE}),
    "consult.guest_token": ("POST", {"link": _bad_link}, {**{who: 404 for who in EVERYONE}, ANON: 404}),
}
