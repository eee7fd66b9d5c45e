"""Identity checks: a photo of a passport or driving licence and a selfie, decided by staff or a provider."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.auth.models import User
from app.database import UTCDateTime, utcnow
from app.extensions import db
from app.patients.models import Patient


class CheckStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


class DocumentType(enum.StrEnum):
    PASSPORT = "passport"
    DRIVING_LICENCE = "driving_licence"

    @property
    def label(self) -> str:
        return {"passport": "Passport", "driving_licence": "Photocard driving licence"}[self.value]


def _enum(kind: type[enum.Enum], length: int) -> sa.Enum:
    return sa.Enum(kind, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class IdentityCheck(db.Model):
    """One attempt to confirm who a patient is. A rejected patient tries again with a new check,
    so the history of attempts stays as it was decided."""

    __tablename__ = "identity_checks"
    __table_args__ = (
        # At most one check waiting for a decision per patient, whatever two browser tabs do.
        sa.Index("uq_identity_checks_open", "patient_id", unique=True,
                 sqlite_where=sa.text("status = 'submitted'"), postgresql_where=sa.text("status = 'submitted'")),
        sa.UniqueConstraint("provider", "provider_reference", name="uq_identity_checks_provider_reference"),
        sa.Index("ix_identity_checks_queue", "status", "submitted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    document_type: Mapped[DocumentType] = mapped_column(_enum(DocumentType, 20))
    #: The photo of the passport or licence: a document (kind "id_document") of the documents domain.
    document_id: Mapped[int] = mapped_column()
    #: The selfie: a document (kind "selfie") of the documents domain.
    selfie_document_id: Mapped[int] = mapped_column()
    #: As entered by the patient; an expired document is refused before a check is made.
    document_expiry: Mapped[dt.date] = mapped_column(sa.Date)
    #: The two MRZ lines the patient typed (passports only, optional), AES-GCM encrypted: they
    #: carry the passport number. Stored only once their check digits and dates have passed.
    mrz_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    status: Mapped[CheckStatus] = mapped_column(_enum(CheckStatus, 12), default=CheckStatus.SUBMITTED)
    #: Who decides: "staff" (the built-in review queue) or "http" (an external provider).
    provider: Mapped[str] = mapped_column(sa.String(40))
    #: The provider's own id for the check; webhooks name the check by it.
    provider_reference: Mapped[str | None] = mapped_column(sa.String(100))
    #: The staff member who decided (None when a provider decided).
    reviewer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: Shown to the patient, in plain words, with what to do differently next time.
    rejection_reason: Mapped[str | None] = mapped_column(sa.String(600))
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    patient: Mapped[Patient] = relationship()
    reviewer: Mapped[User | None] = relationship()


class WebhookEvent(db.Model):
    """A provider's webhook event we accepted: a second delivery of the same id is a replay."""

    __tablename__ = "identity_webhook_events"
    __table_args__ = (sa.UniqueConstraint("provider", "event_id", name="uq_identity_webhook_events_provider_event"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(40))
    #: The provider's id of the event, unique per provider.
    event_id: Mapped[str] = mapped_column(sa.String(100))
    check_id: Mapped[int] = mapped_column(sa.ForeignKey("identity_checks.id"), index=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
