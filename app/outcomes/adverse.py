"""Side effects and adverse events: what, when, how severe, which product. A serious one alerts the
prescriber at once, and its details can be exported in the fields of the MHRA Yellow Card form, for
the clinician to check and submit (Verity does not submit on anyone's behalf)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.audit import services as audit
from app.auth.models import Role, User
from app.database import transaction, utcnow
from app.extensions import db
from app.outcomes import alerts
from app.outcomes.models import OutcomeAdverseEvent
from app.patients.models import Patient

SEVERITIES = {"mild": "Mild: noticeable, does not get in the way of daily life",
              "moderate": "Moderate: gets in the way of daily life",
              "severe": "Severe: stops daily activities"}
#: The Yellow Card's seriousness criteria.
SERIOUS_CRITERIA = {
    "death": "Caused death",
    "life_threatening": "Life-threatening",
    "hospitalisation": "Needed a hospital stay (or made one longer)",
    "disability": "Caused lasting disability or incapacity",
    "congenital": "Congenital abnormality",
    "medically_significant": "Medically significant (another important medical event)",
}
OUTCOMES = {"recovered": "Recovered", "recovering": "Recovering", "continuing": "Continuing",
            "sequelae": "Recovered with lasting effects", "fatal": "Fatal", "unknown": "Not known yet"}
MAX_TEXT = 4000


class AdverseEventError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def products_for(patient: Patient) -> list[tuple[int, str]]:
    """The products the patient has been prescribed, newest first: the choices for "which product"."""
    from app.prescribing import services as prescribing

    seen: dict[int, str] = {}
    for prescription in prescribing.prescriptions_for_patient(patient):
        for item in prescription.items:
            seen.setdefault(item.product_id, item.product_name)
    return list(seen.items())


def _dose_of(patient: Patient, product_id: int) -> tuple[str | None, set[int]]:
    """The dose last prescribed for the product, and who prescribed it."""
    from app.prescribing import services as prescribing

    prescribers: set[int] = set()
    dose = None
    for prescription in prescribing.prescriptions_for_patient(patient):
        for item in prescription.items:
            if item.product_id == product_id:
                dose = dose or item.dose
                prescribers.add(prescription.prescriber_id)
    return dose, prescribers


def report(patient: Patient, values: dict[str, Any], *, by: User, today: dt.date | None = None) -> OutcomeAdverseEvent:
    today = today or dt.date.today()
    errors: dict[str, str] = {}
    description = " ".join(str(values.get("description") or "").split())
    if not description:
        errors["description"] = "Describe what happened"
    elif len(description) > MAX_TEXT:
        errors["description"] = f"Describe what happened in {MAX_TEXT:,} characters or fewer"
    started = values.get("started_on")
    if not isinstance(started, dt.date):
        errors["started_on"] = "Enter the date it started, like 14 3 2026"
    elif started > today:
        errors["started_on"] = "The date it started cannot be in the future"
    elif started < today - dt.timedelta(days=3 * 366):
        errors["started_on"] = "Enter a date in the last 3 years"
    ended = values.get("ended_on")
    if ended is not None and (not isinstance(ended, dt.date) or (isinstance(started, dt.date) and ended < started)
                              or ended > today):
        errors["ended_on"] = "The date it stopped must be between the start and today"
    severity = values.get("severity")
    if severity not in SEVERITIES:
        errors["severity"] = "Choose how severe it is"
    criteria = [c for c in values.get("criteria") or [] if c in SERIOUS_CRITERIA]
    outcome = values.get("outcome") or "unknown"
    if outcome not in OUTCOMES:
        errors["outcome"] = "Choose how it is now"
    product_id = values.get("product_id")
    products = dict(products_for(patient))
    if product_id not in (None, "", 0):
        try:
            product_id = int(product_id)
        except (TypeError, ValueError):
            product_id = -1
        if product_id not in products:
            errors["product_id"] = "Choose one of the products you have been prescribed, or none"
    else:
        product_id = None
    if errors:
        raise AdverseEventError(errors)
    serious = bool(criteria) or outcome == "fatal"
    dose, prescribers = _dose_of(patient, product_id) if product_id else (None, set())
    with transaction() as session:
        event = OutcomeAdverseEvent(
            patient_id=patient.id, reported_by_id=by.id, reporter_role=by.role.value, description=description,
            started_on=started, ended_on=ended, severity=severity, serious=serious,
            criteria=criteria or (["death"] if outcome == "fatal" else []), product_id=product_id,
            product_name=products.get(product_id) if product_id else None, dose=dose, outcome=outcome)
        session.add(event)
        session.flush()
        audit.record("outcomes.adverse_event_reported", subject=("adverse_event", event.id), patient_id=patient.id,
                     detail={"serious": serious, "severity": severity, "product_id": product_id})
        if serious:
            alerted = alerts.serious_event(patient, event.id, prescribers)
            event.alerted_at = utcnow()
            audit.record("outcomes.prescriber_alerted", subject=("adverse_event", event.id), patient_id=patient.id,
                         detail={"people": alerted})
    return event


def mark_reviewed(event: OutcomeAdverseEvent, by: User) -> OutcomeAdverseEvent:
    if by.role is not Role.CLINICIAN:
        raise AdverseEventError({"review": "A clinician reviews adverse events"})
    with transaction():
        if event.reviewed_at is None:
            event.reviewed_at, event.reviewed_by_id = utcnow(), by.id
            audit.record("outcomes.adverse_event_reviewed", subject=("adverse_event", event.id),
                         patient_id=event.patient_id)
    return event


def get(event_id: int) -> OutcomeAdverseEvent | None:
    return db.session.get(OutcomeAdverseEvent, event_id)


def events_of(patient: Patient) -> list[OutcomeAdverseEvent]:
    return list(db.session.scalars(sa.select(OutcomeAdverseEvent).where(OutcomeAdverseEvent.patient_id == patient.id)
                                   .order_by(OutcomeAdverseEvent.started_on.desc(), OutcomeAdverseEvent.id.desc())))


def open_serious(patient: Patient) -> list[OutcomeAdverseEvent]:
    return [e for e in events_of(patient) if e.serious and e.reviewed_at is None]


# The Yellow Card ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CardField:
    section: str
    name: str
    value: str


def yellow_card(event: OutcomeAdverseEvent, patient: Patient, patient_user: User, reporter: User | None,
                indication: str | None, other_medicines: str | None) -> list[CardField]:
    """The event in the sections and fields of the MHRA Yellow Card (yellowcard.mhra.gov.uk), for the
    clinician to copy. Identifiers are the minimum the form asks for: initials, age, sex is not held."""
    initials = "".join(part[0].upper() for part in patient_user.full_name.split() if part)[:3]
    age = (event.started_on - patient.date_of_birth).days // 365
    criteria = [SERIOUS_CRITERIA[c] for c in event.criteria] or ["Not serious"]
    fields = [
        CardField("Patient", "Initials", initials),
        CardField("Patient", "Age at the time of the reaction", f"{age} years"),
        CardField("Patient", "Local identification number", f"Verity patient {patient.id}"),
        CardField("Suspected medicine", "Brand or medicine name", event.product_name or "Not named"),
        CardField("Suspected medicine", "Dose and how it is taken", event.dose or "Not recorded"),
        CardField("Suspected medicine", "Reason for taking it (indication)", indication or "Not recorded"),
        CardField("Suspected reaction", "What happened", event.description),
        CardField("Suspected reaction", "Date it started", event.started_on.isoformat()),
        CardField("Suspected reaction", "Date it stopped", event.ended_on.isoformat() if event.ended_on else ""),
        CardField("Suspected reaction", "Severity", SEVERITIES[event.severity].split(":")[0]),
        CardField("Suspected reaction", "Seriousness", "; ".join(criteria)),
        CardField("Suspected reaction", "Outcome", OUTCOMES.get(event.outcome, event.outcome)),
        CardField("Other medicines", "Other medicines taken in the last 3 months", other_medicines or ""),
        CardField("Reporter", "Reported in Verity by", f"{reporter.full_name} ({event.reporter_role})" if reporter
                  else event.reporter_role),
        CardField("Reporter", "Reported on", event.created_at.date().isoformat()),
    ]
    return fields


def yellow_card_for(event: OutcomeAdverseEvent, *, by: User) -> list[CardField]:
    """The Yellow Card fields of an event, gathered through the other domains' services; audited."""
    from app.patients import services as patients
    from app.prescribing import plans

    patient = patients.get(event.patient_id)
    plan = plans.current(patient)
    reporter = db.session.get(User, event.reported_by_id)
    others = sorted({f"{name}" for _id, name in products_for(patient)} - {event.product_name or ""})
    audit.record("outcomes.yellow_card_exported", subject=("adverse_event", event.id), patient_id=patient.id,
                 detail={"by": by.id})
    return yellow_card(event, patient, patients.user_of(patient), reporter, plan.indication if plan else None,
                       ", ".join(others) or None)
