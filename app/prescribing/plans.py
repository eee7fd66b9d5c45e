"""Treatment plans (immutable versions, field-by-field history) and the MDT review before treatment."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from app.audit import services as audit
from app.auth.models import Role, User
from app.database import transaction, utcnow
from app.extensions import db
from app.patients.models import Patient
from app.prescribing import formulary
from app.prescribing.models import MdtReview, TreatmentPlan, TreatmentPlanVersion
from app.prescribing.quantities import UNITS, figures, normalise, plain


class PlanError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


FIELD_LABELS = {
    "indication": "Indication", "snomed_code": "SNOMED CT code", "products": "Products allowed and daily dose",
    "quotas": "Maximum per 30 days", "review_date": "Review date", "goals": "Goals",
}


def plan_of(patient: Patient) -> TreatmentPlan | None:
    return db.session.scalar(sa.select(TreatmentPlan).where(TreatmentPlan.patient_id == patient.id))


def current(patient: Patient) -> TreatmentPlanVersion | None:
    return db.session.scalar(
        sa.select(TreatmentPlanVersion).join(TreatmentPlan, TreatmentPlan.id == TreatmentPlanVersion.plan_id)
        .where(TreatmentPlan.patient_id == patient.id).order_by(TreatmentPlanVersion.version.desc()).limit(1))


def versions(patient: Patient) -> list[TreatmentPlanVersion]:
    return list(db.session.scalars(
        sa.select(TreatmentPlanVersion).join(TreatmentPlan, TreatmentPlan.id == TreatmentPlanVersion.plan_id)
        .where(TreatmentPlan.patient_id == patient.id).order_by(TreatmentPlanVersion.version.desc())))


def get_version(version_id: int) -> TreatmentPlanVersion | None:
    return db.session.get(TreatmentPlanVersion, version_id)


def _amount(raw: Any, label: str, unit: str, errors: dict[str, str], key: str) -> Decimal | None:
    text = str(raw if raw is not None else "").strip()
    if not text:
        errors[key] = f"Enter the {label}"
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        errors[key] = f"The {label} must be a number of {UNITS[unit].plural}"
        return None
    if not value.is_finite() or value <= 0:
        errors[key] = f"The {label} must be more than zero"
        return None
    if value > UNITS[unit].ceiling or value != value.quantize(Decimal("0.01")):
        errors[key] = f"The {label} must be at most {figures(UNITS[unit].ceiling)}, to 2 decimal places"
        return None
    return normalise(value)


def clean(values: dict[str, Any], *, today: dt.date | None = None) -> dict[str, Any]:
    """Validate a plan's content. `values["products"]` maps product id -> (dose_min, dose_max);
    `values["quotas"]` maps unit -> maximum per 30 days."""
    today = today or dt.date.today()
    errors: dict[str, str] = {}
    code = str(values.get("snomed_code") or "").strip()
    if not formulary.snomed_valid(code):
        errors["snomed_code"] = "Enter a SNOMED CT concept id (6 to 18 digits with a valid check digit), e.g. 82423001"
    indication = str(values.get("indication") or "").strip()
    if not indication:
        errors["indication"] = "Enter the indication"
    elif len(indication) > 300:
        errors["indication"] = "The indication must be 300 characters or fewer"
    products: list[dict[str, str]] = []
    units_used: set[str] = set()
    for raw_id, (low, high) in (values.get("products") or {}).items():
        product = formulary.get(int(raw_id)) if str(raw_id).isdigit() else None
        if product is None or not product.active:
            errors["products"] = "Choose products from the formulary (a chosen product is withdrawn or unknown)"
            continue
        unit = formulary.unit_of(product)
        key = f"dose_{product.id}"
        dose_min = _amount(low, f"lowest daily dose of {product.name}", unit, errors, key)
        dose_max = _amount(high, f"highest daily dose of {product.name}", unit, errors, key)
        if dose_min is not None and dose_max is not None and dose_min > dose_max:
            errors[key] = f"The lowest daily dose of {product.name} is more than its highest"
        if dose_min is not None and dose_max is not None:
            products.append({"product_id": product.id, "dose_min": figures(dose_min), "dose_max": figures(dose_max)})
        units_used.add(unit)
    if not products and "products" not in errors and not any(k.startswith("dose_") for k in errors):
        errors["products"] = "Choose at least one product the patient may be prescribed"
    quotas: dict[str, str] = {}
    given = values.get("quotas") or {}
    for unit in sorted(units_used):
        amount = _amount(given.get(unit), f"maximum {UNITS[unit].plural} per 30 days", unit, errors, f"quota_{unit}")
        if amount is not None:
            quotas[unit] = figures(amount)
    review = values.get("review_date")
    if not isinstance(review, dt.date):
        errors["review_date"] = "Enter a real review date"
    elif review <= today:
        errors["review_date"] = "The review date must be in the future"
    elif review > today + dt.timedelta(days=366):
        errors["review_date"] = "Review the plan at least once a year"
    goals = str(values.get("goals") or "").strip()
    if not goals:
        errors["goals"] = "Enter the goals of treatment"
    elif len(goals) > 4000:
        errors["goals"] = "The goals must be 4,000 characters or fewer"
    if errors:
        raise PlanError(errors)
    return {"snomed_code": code, "indication": indication, "products": sorted(products, key=lambda p: p["product_id"]),
            "quotas": quotas, "review_date": review, "goals": goals}


def save_version(patient: Patient, author: User, values: dict[str, Any], reason: str) -> TreatmentPlanVersion:
    """Every change is a new immutable version with its author, time and reason."""
    if author.role is not Role.CLINICIAN:
        raise PlanError({"author": "Only a clinician writes a treatment plan"})
    data = clean(values)
    reason = (reason or "").strip()
    if not reason:
        raise PlanError({"reason": "Give the reason for this change: it is kept in the plan's history"})
    with transaction() as session:
        plan = plan_of(patient)
        if plan is None:
            plan = TreatmentPlan(patient_id=patient.id)
            session.add(plan)
            session.flush()
        latest = current(patient)
        if latest is not None and not diff(latest, data):
            raise PlanError({"reason": "Nothing changed: the plan is the same as its current version"})
        version = TreatmentPlanVersion(plan_id=plan.id, version=(latest.version + 1) if latest else 1,
                                       author_id=author.id, created_at=utcnow(), reason=reason[:2000], **data)
        session.add(version)
        session.flush()
        audit.record("treatment_plan.version_created", subject=("treatment_plan", plan.id), patient_id=patient.id,
                     detail={"version": version.version,
                             "changed": sorted(diff(latest, data)) if latest else sorted(FIELD_LABELS)})
    return version


def _content(version: TreatmentPlanVersion | dict[str, Any]) -> dict[str, Any]:
    get = version.get if isinstance(version, dict) else lambda key: getattr(version, key)
    return {key: get(key) for key in FIELD_LABELS}


def diff(old: TreatmentPlanVersion | dict[str, Any] | None,
         new: TreatmentPlanVersion | dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Field -> (before, after), as people read them, for every field that differs."""
    before = _content(old) if old is not None else {}
    after = _content(new)
    changes = {}
    for key in FIELD_LABELS:
        was, now = describe(key, before.get(key)) if old is not None else "", describe(key, after.get(key))
        if was != now:
            changes[key] = (was, now)
    return changes


def describe(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "products":
        parts = []
        for line in value:
            product = formulary.get(int(line["product_id"]))
            name = product.name if product else f"product {line['product_id']}"
            unit = formulary.unit_of(product) if product else "g"
            parts.append(f"{name}: {line['dose_min']} to {plain(Decimal(line['dose_max']), unit)} a day")
        return "; ".join(parts)
    if key == "quotas":
        return "; ".join(plain(Decimal(amount), unit) for unit, amount in sorted(value.items()))
    if key == "review_date":
        return value.strftime("%-d %B %Y") if isinstance(value, dt.date) else str(value)
    return str(value)


def history(patient: Patient) -> list[tuple[TreatmentPlanVersion, dict[str, tuple[str, str]], User | None]]:
    """Newest first: each version, its difference from the one before, and its author."""
    all_versions = list(reversed(versions(patient)))
    rows = []
    previous = None
    for version in all_versions:
        rows.append((version, diff(previous, version), db.session.get(User, version.author_id)))
        previous = version
    return list(reversed(rows))


@dataclass(frozen=True)
class Allowance:
    product_id: int
    dose_min: Decimal
    dose_max: Decimal


def allowances(version: TreatmentPlanVersion) -> dict[int, Allowance]:
    return {int(line["product_id"]): Allowance(int(line["product_id"]), Decimal(line["dose_min"]),
                                               Decimal(line["dose_max"])) for line in version.products}


def quota(version: TreatmentPlanVersion, unit: str) -> Decimal | None:
    amount = (version.quotas or {}).get(unit)
    return Decimal(amount) if amount is not None else None


# MDT review -----------------------------------------------------------------------------------

class MdtError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def reviews(patient: Patient) -> list[MdtReview]:
    return list(db.session.scalars(sa.select(MdtReview).where(MdtReview.patient_id == patient.id)
                                   .order_by(MdtReview.id.desc())))


def approval(patient: Patient) -> MdtReview | None:
    """The newest decided review when it approved treatment (a later decline overrides an approval)."""
    decided = db.session.scalar(sa.select(MdtReview).where(MdtReview.patient_id == patient.id,
                                                           MdtReview.decision.is_not(None))
                                .order_by(MdtReview.recorded_at.desc(), MdtReview.id.desc()).limit(1))
    return decided if decided is not None and decided.decision == "approved" else None


def pending() -> list[MdtReview]:
    return list(db.session.scalars(sa.select(MdtReview).where(MdtReview.decision.is_(None))
                                   .order_by(MdtReview.referred_at)))


def get_review(review_id: int) -> MdtReview | None:
    return db.session.get(MdtReview, review_id)


def refer(patient: Patient, clinician: User, case_summary: str) -> MdtReview:
    """The patient's clinician puts the case to the MDT; a second clinician records the decision."""
    summary = (case_summary or "").strip()
    if clinician.role is not Role.CLINICIAN:
        raise MdtError({"case_summary": "Only a clinician refers a patient to the MDT"})
    if len(summary) < 20:
        raise MdtError({"case_summary": "Write a case summary for the MDT (at least a couple of sentences)"})
    if current(patient) is None:
        raise MdtError({"case_summary": "Write the treatment plan first: the MDT reviews it"})
    with transaction() as session:
        if any(r.decision is None for r in reviews(patient)):
            raise MdtError({"case_summary": "This patient already has a review waiting for the MDT"})
        review = MdtReview(patient_id=patient.id, case_summary=summary[:8000], referred_by_id=clinician.id)
        session.add(review)
        session.flush()
        audit.record("mdt.referred", subject=("mdt_review", review.id), patient_id=patient.id)
    return review


def decide(review: MdtReview, clinician: User, *, decision: str, decided_on: dt.date | None, note: str,
           today: dt.date | None = None) -> MdtReview:
    today = today or dt.date.today()
    errors: dict[str, str] = {}
    if clinician.role is not Role.CLINICIAN:
        errors["decision"] = "Only a clinician records an MDT decision"
    elif clinician.id == review.referred_by_id:
        errors["decision"] = "A second clinician records the MDT decision, not the one who referred the patient"
    if decision not in ("approved", "declined"):
        errors["decision"] = "Choose whether the MDT approved treatment"
    if decided_on is None:
        errors["decided_on"] = "Enter the date of the MDT meeting"
    elif decided_on > today:
        errors["decided_on"] = "The MDT meeting date cannot be in the future"
    elif decided_on < review.referred_at.date():
        errors["decided_on"] = "The MDT meeting cannot be before the referral"
    if not (note or "").strip():
        errors["note"] = "Summarise the MDT's reasoning"
    if errors:
        raise MdtError(errors)
    with transaction() as session:
        claimed = session.execute(
            sa.update(MdtReview).where(MdtReview.id == review.id, MdtReview.decision.is_(None))
            .values(decision=decision, decided_by_id=clinician.id, decided_on=decided_on,
                    decision_note=note.strip()[:8000], recorded_at=utcnow())
            .execution_options(synchronize_session=False)).rowcount
        if not claimed:
            raise MdtError({"decision": "This review has already been decided"})
        session.refresh(review)
        audit.record(f"mdt.{decision}", subject=("mdt_review", review.id), patient_id=review.patient_id,
                     detail={"decided_on": decided_on.isoformat()})
    return review
