"""Patient records: registration and what the record shows."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app import mail
from app.audit import services as audit
from app.auth import services as accounts
from app.auth.models import Role, User
from app.database import transaction
from app.extensions import db
from app.patients.models import Patient

MINIMUM_AGE = 18


class RegistrationError(ValueError):
    """A refusal with a message fit to show the person; `field` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def register(*, email: str, password: str, full_name: str, date_of_birth: dt.date, today: dt.date | None = None,
             is_demo: bool = False) -> Patient:
    """Create the account and the record in one transaction, and queue the welcome email."""
    today = today or dt.date.today()
    if date_of_birth > today:
        raise RegistrationError("Date of birth must be in the past.", "date_of_birth")
    if accounts.age_on(date_of_birth, today) < MINIMUM_AGE:
        raise RegistrationError(
            f"You must be {MINIMUM_AGE} or over to use Verity. Medical cannabis is prescribed in the UK "
            "only to adults by specialist doctors.", "date_of_birth")
    with transaction() as session:
        try:
            user = accounts.create_user(email=email, password=password, full_name=full_name, role=Role.PATIENT,
                                        is_demo=is_demo)
        except accounts.AccountError as exc:
            raise RegistrationError(str(exc), "password" if "password" in str(exc) else "email") from exc
        patient = Patient(user_id=user.id, date_of_birth=date_of_birth)
        session.add(patient)
        session.flush()
        audit.record("patient.registered", subject=("patient", patient.id), patient_id=patient.id)
        mail.queue(user.email, "Your Verity account is ready", "welcome", key=f"welcome:{user.id}")
    return patient


def for_user(user: User) -> Patient | None:
    return db.session.scalar(sa.select(Patient).where(Patient.user_id == user.id))


def get(patient_id: int) -> Patient | None:
    return db.session.get(Patient, patient_id)


def user_of(patient: Patient) -> User:
    return db.session.get(User, patient.user_id)


def record_read(patient: Patient, *, section: str) -> None:
    """Reading a patient's record is audited, whoever reads it."""
    audit.record("record.read", subject=("patient", patient.id), patient_id=patient.id, detail={"section": section})


def assign_clinician(patient: Patient, clinician: User) -> None:
    if clinician.role is not Role.CLINICIAN:
        raise ValueError("only a clinician can be responsible for a patient")
    with transaction():
        patient.clinician_id = clinician.id
        audit.record("patient.clinician_assigned", subject=("patient", patient.id), patient_id=patient.id,
                     detail={"clinician_id": clinician.id})


def search(term: str, limit: int = 20) -> list[tuple[Patient, User]]:
    like = f"%{term.strip().lower()}%"
    query = (
        sa.select(Patient, User)
        .join(User, User.id == Patient.user_id)
        .where(sa.or_(sa.func.lower(User.full_name).like(like), User.email.like(like)))
        .order_by(User.full_name)
        .limit(limit)
    )
    return [(p, u) for p, u in db.session.execute(query)]
