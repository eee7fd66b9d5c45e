"""Who may reach each messaging route. The objects (a clinic thread of the persona "patient" with an attached
document, the signed prescription of tests/access/prescribing.py, a saved response) are made once per app
through the services and cached in `app.extensions`.

Pharmacy-query threads (staff only, the prescription's parties) are walked in tests/test_messaging_access.py.
"""

from __future__ import annotations

import io

from tests.access import (
    ADMIN,
    ADMIN_ONLY,
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

#: A clinic thread of the patient: the patient, their clinician and the front desk.
PARTIES = (PATIENT, CLIN, RECEP, ADMIN)
OUTSIDERS = (OTHER_PATIENT, OTHER_CLIN, PHARM, OTHER_PHARM)
CLINIC_STAFF = (CLIN, RECEP, ADMIN)


def _objects(app, personas) -> dict[str, int]:
    cache = app.extensions.setdefault("access_messaging", {})
    if cache:
        return cache
    from pypdf import PdfWriter

    from app.auth.models import User
    from app.documents import services as documents
    from app.extensions import db
    from app.messaging import services as messaging
    from app.patients import services as patients
    from tests.access.prescribing import _objects as prescribing_objects

    signed = prescribing_objects(app, personas)["signed"]
    owner = personas["patient"]
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    pdf = io.BytesIO()
    writer.write(pdf)
    with app.app_context():
        document = documents.store_file(patient_id=owner.patient_id, kind="other", filename="photo.pdf",
                                        stream=io.BytesIO(pdf.getvalue()), uploaded_by=owner.user_id)
        user = db.session.get(User, owner.user_id)
        thread = messaging.start_thread(patients.get(owner.patient_id), user, "Where is my medication?",
                                        "It has been a week.", [document.id])
        admin = db.session.get(User, personas["admin"].user_id)
        saved = messaging.save_response(admin, title="On its way", body="Hello {first_name}, it is on its way.")
        cache.update(thread=thread.id, message=thread.messages[0].id, document=document.id, prescription=signed,
                     saved=saved.id)
    return cache


def _get(key):
    return lambda app, personas: _objects(app, personas)[key]


THREAD = {"thread_id": _get("thread")}

EXPECTED = {
    "messaging.my_threads": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "messaging.new_thread": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "messaging.thread": ("GET", THREAD, table(ok=PARTIES, forbidden=OUTSIDERS)),
    # An empty reply: "Write your message" (400) for the parties; anyone else is refused (and audited).
    "messaging.reply": ("POST", THREAD, table(bad_request=PARTIES, forbidden=OUTSIDERS)),
    "messaging.triage": ("POST", THREAD, table(bad_request=CLINIC_STAFF, forbidden=(*PATIENTS, OTHER_CLIN, PHARM,
                                                                                    OTHER_PHARM))),
    "messaging.hide": ("POST", {**THREAD, "message_id": _get("message")},
                       table(bad_request=CLINIC_STAFF, forbidden=(*PATIENTS, OTHER_CLIN, PHARM, OTHER_PHARM))),
    "messaging.attachment": ("GET", {**THREAD, "document_id": _get("document")},
                             table(ok=PARTIES, forbidden=OUTSIDERS)),
    "messaging.inbox": ("GET", {}, table(ok=STAFF, forbidden=PATIENTS)),
    "messaging.start_for_patient": ("GET", {"patient_id": "patient"},
                                    table(ok=CLINIC_STAFF, forbidden=(*PATIENTS, OTHER_CLIN, PHARM, OTHER_PHARM))),
    # A query about a prescription: its prescriber and the pharmacy it went to.
    "messaging.new_query": ("GET", {"prescription_id": _get("prescription")},
                            table(ok=(CLIN, PHARM), forbidden=(*PATIENTS, OTHER_CLIN, OTHER_PHARM, RECEP, ADMIN))),
    "messaging.saved_responses": ("GET", {}, ADMIN_ONLY),
    "messaging.saved_response_new": ("GET", {}, ADMIN_ONLY),
    "messaging.saved_response_edit": ("GET", {"response_id": _get("saved")}, ADMIN_ONLY),
}
