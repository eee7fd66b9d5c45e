"""Documents a patient or the clinic uploaded, the uploads in flight, and the clinic's requests.

A document is never deleted: it can be hidden, with a reason, and the clinic still sees it.
The file itself lives encrypted in the document store (see storage.py and encryption.py);
the row holds what the pages need to describe it without opening it.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.database import UTCDateTime, utcnow
from app.extensions import db

if TYPE_CHECKING:
    from app.auth.models import User


class DocumentKind(enum.StrEnum):
    MEDICAL_SUMMARY = "medical_summary"
    SPECIALIST_LETTER = "specialist_letter"
    PRESCRIPTION_HISTORY = "prescription_history"
    ID_DOCUMENT = "id_document"
    SELFIE = "selfie"
    OTHER = "other"

    @property
    def label(self) -> str:
        return KIND_LABELS[self]

    @property
    def hint(self) -> str:
        return KIND_HINTS[self]


KIND_LABELS = {
    DocumentKind.MEDICAL_SUMMARY: "Medical summary from your GP",
    DocumentKind.SPECIALIST_LETTER: "Letter from a specialist",
    DocumentKind.PRESCRIPTION_HISTORY: "Prescription history",
    DocumentKind.ID_DOCUMENT: "Photo ID (passport or driving licence)",
    DocumentKind.SELFIE: "Photo of your face",
    DocumentKind.OTHER: "Other document",
}

KIND_HINTS = {
    DocumentKind.MEDICAL_SUMMARY: "Your GP practice can give you a summary of your record, or you can download it "
                                  "from the NHS App.",
    DocumentKind.SPECIALIST_LETTER: "A clinic letter from a hospital doctor who treated your condition.",
    DocumentKind.PRESCRIPTION_HISTORY: "A list of the medicines you have been prescribed, from your GP or pharmacy.",
    DocumentKind.ID_DOCUMENT: "The photo page of your passport, or the front of your driving licence.",
    DocumentKind.SELFIE: "A clear photo of your face, looking at the camera.",
    DocumentKind.OTHER: "Anything else the clinic should see.",
}


class UploadStatus(enum.StrEnum):
    OPEN = "open"
    #: The last byte arrived and the checks are running (claimed so a second "complete" waits).
    PROCESSING = "processing"
    COMPLETED = "completed"
    REJECTED = "rejected"
    EXPIRED = "expired"


class RequestStatus(enum.StrEnum):
    OPEN = "open"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"


def _enum(kind: type[enum.StrEnum], length: int) -> sa.Enum:
    return sa.Enum(kind, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class Document(db.Model):
    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    kind: Mapped[DocumentKind] = mapped_column(_enum(DocumentKind, 30))
    #: As the person named it, without any folder part or control characters.
    original_filename: Mapped[str] = mapped_column(sa.String(200))
    #: What the upload turned out to be by its content: application/pdf, image/jpeg, image/png, image/heic.
    uploaded_type: Mapped[str] = mapped_column(sa.String(50))
    #: What is stored: the PDF as sent, or a photo re-encoded as image/jpeg without its metadata.
    content_type: Mapped[str] = mapped_column(sa.String(50))
    #: Size of the stored (decrypted) content in bytes.
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    page_count: Mapped[int | None] = mapped_column()
    width: Mapped[int | None] = mapped_column()
    height: Mapped[int | None] = mapped_column()
    #: SHA-256 of the stored plaintext, hex: proves later that the file is the one received.
    sha256: Mapped[str] = mapped_column(sa.String(64))
    #: The key of the encrypted file in the document store; also bound into its encryption.
    storage_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: The person who uploaded it: the patient, or a member of staff on their behalf.
    uploaded_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Documents are never deleted; hidden ones leave the patient's list but stay in the record.
    hidden_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    hidden_reason: Mapped[str | None] = mapped_column(sa.String(500))
    hidden_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    uploader: Mapped[User | None] = relationship(foreign_keys=[uploaded_by], viewonly=True)

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")

    @property
    def is_hidden(self) -> bool:
        return self.hidden_at is not None

    @property
    def download_name(self) -> str:
        """The original name, with the extension of what is stored (a HEIC photo comes back as JPEG)."""
        stem, dot, _suffix = self.original_filename.rpartition(".")
        base = stem if dot and stem else self.original_filename
        return f"{base}.{EXTENSIONS.get(self.content_type, 'bin')}"


EXTENSIONS = {"application/pdf": "pdf", "image/jpeg": "jpg"}


class UploadSession(db.Model):
    """A chunked upload in flight: one person, one patient, one file."""

    __tablename__ = "document_uploads"

    #: Random, unguessable (128 bits, hex): the client keeps it to resume after a dropped connection.
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    kind: Mapped[DocumentKind] = mapped_column(_enum(DocumentKind, 30))
    filename: Mapped[str] = mapped_column(sa.String(200))
    #: The size the client declared; the upload is complete when this many bytes have arrived.
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    #: Bytes received and safely written: the client resumes from here.
    received_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: Length of the encrypted part file holding those bytes (anything after it is a cut-off chunk).
    part_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: The clinic's request this upload answers, if any.
    request_id: Mapped[int | None] = mapped_column(sa.ForeignKey("document_requests.id"))
    status: Mapped[UploadStatus] = mapped_column(_enum(UploadStatus, 20), default=UploadStatus.OPEN, index=True)
    #: Short code of the reason an upload was refused (e.g. "blurred"), for the audit trail and support.
    rejected_reason: Mapped[str | None] = mapped_column(sa.String(40))
    document_id: Mapped[int | None] = mapped_column(sa.ForeignKey("documents.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Last chunk or status change: stale open uploads are expired from this.
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class DocumentRequest(db.Model):
    """The clinic asks the patient for a document; it shows on their checklist until they send one."""

    __tablename__ = "document_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    kind: Mapped[DocumentKind] = mapped_column(_enum(DocumentKind, 30))
    #: Shown to the patient: what to send and why.
    note: Mapped[str] = mapped_column(sa.String(500), default="")
    status: Mapped[RequestStatus] = mapped_column(_enum(RequestStatus, 20), default=RequestStatus.OPEN, index=True)
    requested_by: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When it was fulfilled or cancelled, and by whom.
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    cancel_reason: Mapped[str | None] = mapped_column(sa.String(500))
    #: The upload that fulfilled it.
    document_id: Mapped[int | None] = mapped_column(sa.ForeignKey("documents.id"))

    requester: Mapped[User] = relationship(foreign_keys=[requested_by], viewonly=True)
