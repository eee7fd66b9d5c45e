from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db


class Patient(db.Model):
    """A patient's record. The journey state changes only through app/patients/journey.py."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), unique=True)
    date_of_birth: Mapped[dt.date] = mapped_column(sa.Date)
    journey_state: Mapped[str] = mapped_column(sa.String(40), default="registered", index=True)
    #: The clinician responsible for this patient's care; they (and only they) may open the record.
    clinician_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    #: The partner pharmacy the patient nominated for their prescriptions.
    pharmacy_id: Mapped[int | None] = mapped_column(sa.ForeignKey("pharmacies.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
