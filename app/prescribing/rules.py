"""What must be true before a prescription may be signed, and what a line must look like.

`line_errors` refuses input that is not a prescription line at all (a zero quantity, a unit that
does not match the product, "as directed" as the dose). `blocking_reasons` lists why a draft
that is well-formed still may not be signed (quota, plan, prescriber, patient). The builder
shows both as the prescriber types; signing runs them again inside its transaction.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from app.auth.models import Role, User
from app.database import utcnow
from app.extensions import db
from app.patients.models import Patient
from app.prescribing import formulary, plans, prescribers
from app.prescribing.models import Prescription, PrescriptionItem, Product
from app.prescribing.quantities import UNITS, QuantityError, parse, plain

ROLLING_DAYS = 30
MAX_DAYS_SUPPLY = 90
#: Beyond this many days' supply the prescriber must write a clinical justification (DH good practice).
GOOD_PRACTICE_DAYS = 30
MIN_JUSTIFICATION = 20
MAX_LINES = 4
ADDRESS_FIELDS = ("address_line1", "town", "postcode")

# "As directed" (and its abbreviations) alone is not a dose (reg. 15).
_VAGUE = re.compile(r"^(?:(?:to\s+be\s+)?(?:take|taken|use|used|vape|vaporise|apply)\s+)?(?:as|when)\s+"
                    r"(?:directed|dir|required|needed|advised|instructed|prescribed)$|^(?:mdu|prn|ud|asdir)$")
_NUMBER_WORDS = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|half|once|twice|single)"


@dataclass(frozen=True)
class Line:
    """A prescription line, validated."""

    product: Product
    quantity: Decimal
    unit: str
    days_supply: int
    dose: str
    justification: str | None = None


@dataclass(frozen=True)
class Block:
    #: Stable code for tests and the UI, e.g. "quota", "identity".
    code: str
    message: str


def dose_error(dose: str) -> str | None:
    text = " ".join((dose or "").split())
    if not text:
        return "Enter the dose: how much, how often, and how to take it."
    if len(text) > 300:
        return "Keep the dose to 300 characters."
    bare = re.sub(r"[^a-z ]", "", text.lower()).strip()
    if _VAGUE.match(bare):
        return "“As directed” alone is not a dose. Say how much, how often and how, e.g. “Vaporise 0.1 g up to " \
               "three times a day”."
    if not (re.search(r"\d", text) or re.search(rf"\b{_NUMBER_WORDS}\b", text.lower())):
        return "The dose must say how much and how often, with a number, e.g. “1 ml twice a day”."
    return None


def line_errors(values: dict[str, Any]) -> tuple[Line | None, dict[str, str]]:
    """Parse one line from the builder's form; (line, {}) or (None, field -> message)."""
    errors: dict[str, str] = {}
    raw_id = str(values.get("product_id") or "").strip()
    product = formulary.get(int(raw_id)) if raw_id.isdigit() and len(raw_id) < 10 else None
    if product is None:
        errors["product_id"] = "Choose a product from the formulary."
    elif not product.active:
        errors["product_id"] = f"{product.name} has been withdrawn from the formulary."
    unit = formulary.unit_of(product) if product is not None else None
    given_unit = str(values.get("unit") or "").strip()
    if unit and given_unit and given_unit != unit:
        errors["unit"] = f"{product.name} is prescribed in {UNITS[unit].plural}, not {given_unit}."
    quantity = None
    if unit:
        try:
            quantity = parse(values.get("quantity"), unit)
        except QuantityError as exc:
            errors["quantity"] = str(exc)
    days_raw = str(values.get("days_supply") or "").strip()
    days = int(days_raw) if days_raw.isdigit() and len(days_raw) <= 3 else None
    if days is None or not 1 <= days <= MAX_DAYS_SUPPLY:
        errors["days_supply"] = f"Enter the days of supply as a whole number from 1 to {MAX_DAYS_SUPPLY}."
    problem = dose_error(str(values.get("dose") or ""))
    if problem:
        errors["dose"] = problem
    justification = " ".join(str(values.get("justification") or "").split()) or None
    if justification and len(justification) > 2000:
        errors["justification"] = "Keep the justification to 2,000 characters."
    if errors:
        return None, errors
    return Line(product, quantity, unit, days, " ".join(str(values["dose"]).split()), justification), {}


def line_of(item: PrescriptionItem) -> Line:
    product = formulary.get(item.product_id)
    return Line(product, item.quantity, item.unit, item.days_supply, item.dose, item.justification)


def issued_within(patient: Patient, *, since: dt.datetime, exclude: set[int]) -> dict[str, Decimal]:
    """Quantity per unit on the patient's issued prescriptions signed since `since`."""
    from app.prescribing.states import LIVE

    rows = db.session.execute(
        sa.select(PrescriptionItem.unit, sa.func.sum(PrescriptionItem.quantity))
        .join(Prescription, Prescription.id == PrescriptionItem.prescription_id)
        .where(Prescription.patient_id == patient.id, Prescription.signed_at >= since,
               Prescription.status.in_([s.value for s in LIVE]),
               Prescription.id.not_in(sorted(exclude) or [0]))
        .group_by(PrescriptionItem.unit)).all()
    return {unit: Decimal(total or 0) for unit, total in rows}


def has_issued(patient: Patient) -> bool:
    """True once any prescription of the patient has been signed: treatment has been initiated."""
    return db.session.scalar(sa.select(sa.exists().where(Prescription.patient_id == patient.id,
                                                         Prescription.signed_at.is_not(None)))) or False


def patient_blocks(patient: Patient) -> list[Block]:
    from app.consent import services as consents

    blocks = []
    if patient.identity_verified_at is None:
        blocks.append(Block("identity", "The patient's identity has not been verified."))
    missing = [name for name in ADDRESS_FIELDS if not getattr(patient, name)]
    if missing:
        labels = {"address_line1": "first line of the address", "town": "town", "postcode": "postcode"}
        blocks.append(Block("address", "The patient's address is incomplete (missing: "
                            + ", ".join(labels[m] for m in missing) + "); the law requires it on the prescription."))
    if patient.pharmacy_id is None:
        blocks.append(Block("pharmacy", "The patient has not nominated a pharmacy."))
    elif not consents.has_consent(patient, "pharmacy_sharing", patient.pharmacy_id):
        blocks.append(Block("consent", "The patient has not consented to sharing prescriptions with their "
                            "nominated pharmacy."))
    return blocks


def prescriber_blocks(patient: Patient, user: User, version) -> list[Block]:
    profile = prescribers.get(user)
    if user.role is not Role.CLINICIAN or not user.active or profile is None:
        return [Block("prescriber", "You are not set up to prescribe controlled drugs: an administrator must record "
                                    "your GMC number and private CD prescriber code.")]
    blocks = []
    if not profile.specialist:
        if not has_issued(patient):
            blocks.append(Block("prescriber", "Only a doctor on the GMC Specialist Register may start treatment with "
                                              "an unlicensed cannabis-based product."))
        elif version is not None:
            author = prescribers.get(version.author_id)
            if author is None or not author.specialist:
                blocks.append(Block("prescriber", "Continuing treatment needs a plan written by a specialist "
                                                  "(GMC Specialist Register)."))
    approval = plans.approval(patient)
    if approval is None:
        blocks.append(Block("mdt", "The first prescription needs a multidisciplinary-team approval recorded by a "
                                   "second clinician."))
    elif approval.decided_by_id == user.id:
        blocks.append(Block("mdt", "The MDT approval was recorded by you: a second clinician must record it."))
    return blocks


def blocking_reasons(patient: Patient, user: User, lines: list[Line], *, exclude: set[int] | None = None,
                     now: dt.datetime | None = None) -> list[Block]:
    """Every reason the draft may not be signed now; [] when it may."""
    now = now or utcnow()
    version = plans.current(patient)
    blocks = prescriber_blocks(patient, user, version) + patient_blocks(patient)
    if version is None:
        blocks.append(Block("plan", "The patient has no treatment plan: write one first."))
    elif version.review_date < now.date():
        blocks.append(Block("plan", "The treatment plan's review date has passed: review and update the plan."))
    if not lines:
        blocks.append(Block("empty", "Add at least one item."))
    if len(lines) > MAX_LINES:
        blocks.append(Block("lines", f"One prescription holds at most {MAX_LINES} items."))
    if version is None:
        return blocks
    allowed = plans.allowances(version)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        name = line.product.name
        if not line.product.active:
            blocks.append(Block("withdrawn", f"{name} has been withdrawn from the formulary."))
        allowance = allowed.get(line.product.id)
        if allowance is None:
            blocks.append(Block("outside_plan", f"{name} is not in the patient's treatment plan."))
        elif line.quantity > allowance.dose_max * line.days_supply:
            most = plain(allowance.dose_max * line.days_supply, line.unit)
            blocks.append(Block("dose", f"{plain(line.quantity, line.unit)} of {name} for {line.days_supply} days is "
                                        f"more than the plan's highest dose ({plain(allowance.dose_max, line.unit)} a "
                                        f"day, so at most {most})."))
        if line.days_supply > GOOD_PRACTICE_DAYS and len(line.justification or "") < MIN_JUSTIFICATION:
            blocks.append(Block("justification", f"{name}: {line.days_supply} days is more than 30 days' supply; write "
                                                 "the clinical justification (at least a sentence)."))
        totals[line.unit] += line.quantity
    earlier = issued_within(patient, since=now - dt.timedelta(days=ROLLING_DAYS), exclude=exclude or set())
    for unit, amount in totals.items():
        limit = plans.quota(version, unit)
        if limit is None:
            continue  # the product is outside the plan: said above
        used = earlier.get(unit, Decimal(0))
        if used + amount > limit:
            left = max(limit - used, Decimal(0))
            blocks.append(Block("quota", f"Quota exceeded: {plain(used + amount, unit)} in the rolling 30 days is more "
                                         f"than the plan's {plain(limit, unit)} ({plain(used, unit)} already issued; "
                                         f"at most {plain(left, unit)} more)."))
    return blocks
