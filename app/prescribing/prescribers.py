"""Who may prescribe: a clinician's GMC number, Specialist Register flag and private CD prescriber code."""

from __future__ import annotations

import re

import sqlalchemy as sa

from app.audit import services as audit
from app.auth.models import Role, User
from app.database import transaction, utcnow
from app.extensions import db
from app.prescribing.models import Prescriber


class PrescriberError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def get(user: User | int) -> Prescriber | None:
    return db.session.get(Prescriber, user if isinstance(user, int) else user.id)


def clinicians() -> list[tuple[User, Prescriber | None]]:
    rows = db.session.execute(
        sa.select(User, Prescriber).outerjoin(Prescriber, Prescriber.user_id == User.id)
        .where(User.role == Role.CLINICIAN).order_by(User.full_name)).all()
    return [(u, p) for u, p in rows]


def save(user: User, *, gmc_number: str, specialist: bool, cd_prescriber_code: str) -> Prescriber:
    """Create or update a clinician's prescribing details."""
    errors: dict[str, str] = {}
    gmc = re.sub(r"\s", "", gmc_number or "")
    code = re.sub(r"\s", "", cd_prescriber_code or "")
    if user.role is not Role.CLINICIAN:
        errors["user"] = "Only clinicians prescribe"
    if not (len(gmc) == 7 and gmc.isdigit()):
        errors["gmc_number"] = "A GMC reference number has 7 digits"
    if not (len(code) == 6 and code.isdigit()):
        errors["cd_prescriber_code"] = "A private controlled-drug prescriber code has 6 digits"
    taken = db.session.scalar(sa.select(Prescriber.user_id).where(Prescriber.gmc_number == gmc,
                                                                  Prescriber.user_id != user.id))
    if taken:
        errors["gmc_number"] = "Another clinician has this GMC number"
    if errors:
        raise PrescriberError(errors)
    with transaction() as session:
        prescriber = get(user)
        if prescriber is None:
            prescriber = Prescriber(user_id=user.id)
            session.add(prescriber)
        prescriber.gmc_number, prescriber.specialist, prescriber.cd_prescriber_code = gmc, bool(specialist), code
        prescriber.updated_at = utcnow()
        audit.record("prescriber.updated", subject=("user", user.id),
                     detail={"specialist": bool(specialist)})
    return prescriber
