"""Patient records: registration and what the record shows."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

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


def nominate_pharmacy(patient: Patient, pharmacy_id: int) -> None:
    """Record the patient's nominated pharmacy (the pharmacy domain checks it is an active partner and
    asks for the data-sharing consent)."""
    with transaction():
        previous = patient.pharmacy_id
        patient.pharmacy_id = pharmacy_id
        audit.record("patient.pharmacy_nominated", subject=("patient", patient.id), patient_id=patient.id,
                     detail={"pharmacy_id": pharmacy_id, "previous": previous})


def checklist(patient: Patient) -> list:
    """The onboarding checklist: every onboarding domain's steps, in order."""
    from app.billing import services as billing
    from app.consent import services as consent
    from app.documents import services as documents
    from app.identity import services as identity
    from app.intake import services as intake
    from app.outcomes import services as outcomes
    from app.prescribing import services as prescribing
    from app.records import services as records
    from app.scheduling import services as scheduling

    steps = [step for domain in (intake, documents, identity, consent, records, scheduling,
                                                       prescribing, outcomes, billing)
             for step in domain.checklist_steps(patient)]
    return sorted(steps, key=lambda step: step.order)


#: How people type a date of birth into a search box.
DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y", "%d %B %Y", "%d %b %Y")


def _as_date(term: str) -> dt.date | None:
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(term, fmt).date()
        except ValueError:
            continue
    return None


def search(term: str, limit: int = 20) -> list[tuple[Patient, User]]:
    """Find patients by name or email (part of either), date of birth (12/04/1986, 1986-04-12,
    12 April 1986) or NHS number (ten digits, spaces allowed)."""
    term = term.strip()[:100]
    if not term:
        return []
    query = sa.select(Patient, User).join(User, User.id == Patient.user_id)
    compact = re.sub(r"[\s-]", "", term)
    born = _as_date(term)
    if compact.isdigit() and len(compact) == 10:
        query = query.where(Patient.nhs_number == compact)
    elif born is not None:
        query = query.where(Patient.date_of_birth == born)
    else:
        like = f"%{term.lower()}%"
        query = query.where(sa.or_(sa.func.lower(User.full_name).like(like), User.email.like(like)))
    return [(p, u) for p, u in db.session.execute(query.order_by(User.full_name).limit(limit))]


# The staff onboarding board ------------------------------------------------------------------

ONBOARDING_STATES = ("registered", "intake_in_progress", "intake_submitted", "identity_verified",
                     "needs_clinical_review", "not_eligible", "eligible")
#: The funnel's steps, in order: registration, then each journey state a patient reaches.
FUNNEL_STEPS = (("patient.registered", "Registered"), ("journey.intake_in_progress", "Started health questions"),
                ("journey.intake_submitted", "Sent health questions"),
                ("journey.identity_verified", "Identity confirmed"),
                ("journey.eligible", "Eligible"), ("journey.booked", "Booked"))


@dataclass(frozen=True)
class BoardFilter:
    state: str | None = None
    term: str | None = None
    waiting_days: int | None = None


@dataclass(frozen=True)
class BoardRow:
    patient: Patient
    user: User
    waiting: dt.timedelta


def onboarding_board(filters: BoardFilter, *, now: dt.datetime | None = None,
                     per_state: int = 50) -> dict[str, tuple[int, list[BoardRow]]]:
    """Patients in onboarding, grouped by journey state, longest waiting first: {state: (count, rows)}."""
    from app.database import utcnow

    now = now or utcnow()
    states = [filters.state] if filters.state in ONBOARDING_STATES else list(ONBOARDING_STATES)
    base = sa.select(Patient, User).join(User, User.id == Patient.user_id)
    if filters.term:
        like = f"%{filters.term.strip().lower()}%"
        base = base.where(sa.or_(sa.func.lower(User.full_name).like(like), User.email.like(like)))
    if filters.waiting_days:
        base = base.where(Patient.journey_changed_at <= now - dt.timedelta(days=filters.waiting_days))
    counts = dict(db.session.execute(
        base.with_only_columns(Patient.journey_state, sa.func.count()).where(Patient.journey_state.in_(states))
        .group_by(Patient.journey_state)).all())
    board: dict[str, tuple[int, list[BoardRow]]] = {}
    for state in states:
        rows = db.session.execute(base.where(Patient.journey_state == state)
                                  .order_by(Patient.journey_changed_at).limit(per_state)).all()
        board[state] = (counts.get(state, 0), [BoardRow(p, u, now - p.journey_changed_at) for p, u in rows])
    return board


def funnel(start: dt.date, end: dt.date) -> list[tuple[str, int]]:
    """How many distinct patients reached each onboarding step between two dates (inclusive)."""
    from app.audit.models import AuditEvent

    since = dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    actions = [action for action, _ in FUNNEL_STEPS]
    counts = dict(db.session.execute(
        sa.select(AuditEvent.action, sa.func.count(sa.distinct(AuditEvent.patient_id)))
        .where(AuditEvent.action.in_(actions), AuditEvent.at >= since, AuditEvent.at < until)
        .group_by(AuditEvent.action)).all())
    return [(label, counts.get(action, 0)) for action, label in FUNNEL_STEPS]
