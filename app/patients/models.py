from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db


class Patient(db.Model):
    """A patient's record. The journey state changes only through app/patients/journey.py.

    Contact details beyond the four registration fields are asked only when first needed
    (see app/patients/details.py), so most of them start empty.
    """

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), unique=True)
    date_of_birth: Mapped[dt.date] = mapped_column(sa.Date)
    journey_state: Mapped[str] = mapped_column(sa.String(40), default="registered", index=True)
    #: When the journey last moved: the staff board shows how long each patient has waited.
    journey_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The clinician responsible for this patient's care; they (and only they) may open the record.
    clinician_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    #: The partner pharmacy the patient nominated for their prescriptions.
    pharmacy_id: Mapped[int | None] = mapped_column(sa.ForeignKey("pharmacies.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Asked when first needed (progressive disclosure).
    address_line1: Mapped[str | None] = mapped_column(sa.String(200))
    address_line2: Mapped[str | None] = mapped_column(sa.String(200))
    town: Mapped[str | None] = mapped_column(sa.String(100))
    #: Normalised UK postcode, e.g. "BS1 4DJ".
    postcode: Mapped[str | None] = mapped_column(sa.String(8))
    #: E.164, e.g. "+447700900123".
    phone: Mapped[str | None] = mapped_column(sa.String(20))
    #: Ten digits, modulus-11 checked.
    nhs_number: Mapped[str | None] = mapped_column(sa.String(10))
    gp_practice: Mapped[str | None] = mapped_column(sa.String(300))

    #: Set when the identity check passes (by staff review or a provider).
    identity_verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The eligibility rules' outcome for the submitted intake: eligible, needs_clinical_review, not_eligible.
    eligibility_outcome: Mapped[str | None] = mapped_column(sa.String(40))
    #: JSON list of plain-language reasons behind the outcome.
    eligibility_reasons: Mapped[str | None] = mapped_column(sa.Text)
