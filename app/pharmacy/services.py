"""Partner pharmacies."""

from __future__ import annotations

import sqlalchemy as sa

from app.audit import services as audit
from app.database import transaction
from app.extensions import db
from app.pharmacy.models import Pharmacy


def active_pharmacies() -> list[Pharmacy]:
    return list(db.session.scalars(sa.select(Pharmacy).where(Pharmacy.active).order_by(Pharmacy.name)))


def get(pharmacy_id: int) -> Pharmacy | None:
    return db.session.get(Pharmacy, pharmacy_id)


def create(*, name: str, gphc_number: str, address: str) -> Pharmacy:
    if not (len(gphc_number) == 7 and gphc_number.isdigit()):
        raise ValueError("A GPhC premises number has 7 digits.")
    with transaction() as session:
        pharmacy = Pharmacy(name=name, gphc_number=gphc_number, address=address)
        session.add(pharmacy)
        session.flush()
        audit.record("pharmacy.created", subject=("pharmacy", pharmacy.id))
    return pharmacy


def by_gphc(gphc_number: str) -> Pharmacy | None:
    return db.session.scalar(sa.select(Pharmacy).where(Pharmacy.gphc_number == gphc_number))
