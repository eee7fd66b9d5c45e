from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db

AUTHORISED, REQUESTED, CHASED, RECEIVED, CANCELLED = "authorised", "requested", "chased", "received", "cancelled"
OPEN_STATES = (AUTHORISED, REQUESTED, CHASED)


class RecordsRequest(db.Model):
    """The patient's authority for the clinic to ask their GP for a summary, and its progress."""

    __tablename__ = "records_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    #: authorised → requested → chased (any number of times) → received; or cancelled.
    status: Mapped[str] = mapped_column(sa.String(12), default=AUTHORISED, index=True)
    #: The GP practice as the patient gave it when authorising (kept even if they change it later).
    gp_practice: Mapped[str] = mapped_column(sa.String(300))
    authorised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    requested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_chased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    times_chased: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The summary as received, stored through the documents domain.
    document_id: Mapped[int | None] = mapped_column(sa.ForeignKey("documents.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
