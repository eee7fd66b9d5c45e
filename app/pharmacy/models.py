from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class Pharmacy(db.Model):
    """A partner pharmacy. Pharmacists belong to one and see only what is sent to it."""

    __tablename__ = "pharmacies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    #: General Pharmaceutical Council premises registration number (7 digits).
    gphc_number: Mapped[str] = mapped_column(sa.String(7), unique=True)
    address: Mapped[str] = mapped_column(sa.Text)
    active: Mapped[bool] = mapped_column(default=True)
