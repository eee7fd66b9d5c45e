"""Who may reach each route of the documents domain.

The objects (a document, an upload in flight, a request, all of the persona "patient") are
made once per app through the services and cached in `app.extensions`.
"""

from __future__ import annotations

import io

from tests.access import (
    ADMIN,
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

DOCUMENT_STAFF = (CLIN, RECEP, ADMIN)
NOT_THEIRS = (OTHER_PATIENT, OTHER_CLIN, PHARM, OTHER_PHARM)
EVERYONE_BUT_OWNER = (OTHER_PATIENT, *STAFF)


def _objects(app, personas) -> dict[str, int | str]:
    cache = app.extensions.setdefault("access_documents", {})
    if cache:
        return cache
    from pypdf import PdfWriter

    from app.documents import services as documents

    owner = personas["patient"]
    clinician = personas["clinician"]
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    pdf = io.BytesIO()
    writer.write(pdf)
    with app.app_context():
        document = documents.store_file(patient_id=owner.patient_id, kind="medical_summary", filename="summary.pdf",
                                        stream=io.BytesIO(pdf.getvalue()), uploaded_by=owner.user_id)
        upload = documents.create_upload(user_id=owner.user_id, patient_id=owner.patient_id, kind="other",
                                         filename="later.pdf", size=1000)
        request = documents.request_document(patient_id=owner.patient_id, kind="specialist_letter", note="",
                                             requested_by=clinician.user_id)
        cache.update(document=document.id, upload=upload.id, request=request.id)
    return cache


def document(app, personas) -> int:
    return _objects(app, personas)["document"]


def upload(app, personas) -> str:
    return _objects(app, personas)["upload"]


def request(app, personas) -> int:
    return _objects(app, personas)["request"]


EXPECTED = {
    "documents.index": ("GET", {}, table(ok=PATIENTS, forbidden=STAFF)),
    "documents.patient_documents": ("GET", {"patient_id": "patient"},
                                    table(ok=DOCUMENT_STAFF, forbidden=(*PATIENTS, OTHER_CLIN, PHARM, OTHER_PHARM))),
    "documents.request_document": ("POST", {"patient_id": "patient"},
                                   table(bad_request=DOCUMENT_STAFF,
                                         forbidden=(*PATIENTS, OTHER_CLIN, PHARM, OTHER_PHARM))),
    "documents.cancel_request": ("POST", {"request_id": request},
                                 table(bad_request=DOCUMENT_STAFF,
                                       forbidden=(*PATIENTS, OTHER_CLIN, PHARM, OTHER_PHARM))),
    "documents.view": ("GET", {"document_id": document}, table(ok=(PATIENT, *DOCUMENT_STAFF), forbidden=NOT_THEIRS)),
    "documents.file": ("GET", {"document_id": document}, table(ok=(PATIENT, *DOCUMENT_STAFF), forbidden=NOT_THEIRS)),
    # An empty form: no reason given.
    "documents.hide": ("POST", {"document_id": document},
                       table(bad_request=(PATIENT, *DOCUMENT_STAFF), forbidden=NOT_THEIRS)),
    # An empty request names no kind or size; pharmacists may not upload at all.
    "documents.create_upload": ("POST", {}, table(bad_request=(*PATIENTS, CLIN, OTHER_CLIN, RECEP, ADMIN),
                                                  forbidden=(PHARM, OTHER_PHARM))),
    # An upload in flight is its starter's alone, staff included.
    "documents.upload_status": ("GET", {"upload_id": upload}, table(ok=(PATIENT,), forbidden=EVERYONE_BUT_OWNER)),
    "documents.upload_chunk": ("POST", {"upload_id": upload},
                               table(bad_request=(PATIENT,), forbidden=EVERYONE_BUT_OWNER)),
    # Nothing has been sent yet: 409 with the offset to resume from.
    "documents.complete_upload": ("POST", {"upload_id": upload},
                                  {**table(bad_request=(PATIENT,), forbidden=EVERYONE_BUT_OWNER), PATIENT: 409}),
}
