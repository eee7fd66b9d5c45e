from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db


class ConsentDocument(db.Model):
    """One published version of a consent text. Versions are never edited: a change is a new row."""

    __tablename__ = "consent_documents"
    __table_args__ = (sa.UniqueConstraint("kind", "pharmacy_id", "version", name="uq_consent_documents_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: terms, privacy, video, pharmacy_sharing.
    kind: Mapped[str] = mapped_column(sa.String(40), index=True)
    #: For pharmacy_sharing: the partner pharmacy the patient's data may be shared with.
    pharmacy_id: Mapped[int | None] = mapped_column(sa.ForeignKey("pharmacies.id"))
    version: Mapped[int]
    title: Mapped[str] = mapped_column(sa.String(200))
    #: Plain text; paragraphs separated by blank lines.
    body: Mapped[str] = mapped_column(sa.Text)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentRecord(db.Model):
    """A patient's decision on one version: accepted or withdrawn. Append-only; the latest counts."""

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    document_id: Mapped[int] = mapped_column(sa.ForeignKey("consent_documents.id"))
    #: "accepted" or "withdrawn".
    decision: Mapped[str] = mapped_column(sa.String(12))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(300))
