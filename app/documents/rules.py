"""Who may do what with documents: object-level rules in the style of app/policy.py.

They build on `policy.can_view_patient`: whoever may open a patient's record may see their
documents (the patient, their clinician, the front desk); a pharmacist may not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app import policy
from app.auth.models import Role

if TYPE_CHECKING:
    from app.auth.models import User
    from app.documents.models import Document, DocumentRequest, UploadSession
    from app.patients.models import Patient

#: Staff who may see, add and ask for a patient's documents (when they may see the record).
DOCUMENT_STAFF = (Role.CLINICIAN, Role.RECEPTION, Role.ADMIN)


def can_see_documents(user: User, patient: Patient) -> bool:
    return policy.can_view_patient(user, patient)


def can_see(user: User, document: Document, patient: Patient) -> bool:
    """A hidden document leaves the patient's view; the clinic still sees it in the record."""
    if document.patient_id != patient.id or not can_see_documents(user, patient):
        return False
    return not document.is_hidden or user.is_staff


def can_upload_for(user: User, patient: Patient) -> bool:
    """The patient themself, or staff adding a letter they received on the patient's behalf."""
    if user.role is Role.PATIENT:
        return patient.user_id == user.id
    return user.role in DOCUMENT_STAFF and policy.can_view_patient(user, patient)


def can_request(user: User, patient: Patient) -> bool:
    return user.role in DOCUMENT_STAFF and policy.can_view_patient(user, patient)


def can_manage_request(user: User, request: DocumentRequest, patient: Patient) -> bool:
    return request.patient_id == patient.id and can_request(user, patient)


def can_hide(user: User, document: Document, patient: Patient) -> bool:
    """Staff who see the record, or the patient for a document they uploaded themself."""
    if not can_see(user, document, patient):
        return False
    return user.is_staff or document.uploaded_by == user.id


def owns_upload(user: User, upload: UploadSession) -> bool:
    """An upload in flight belongs to the one person who started it."""
    return upload.user_id == user.id
