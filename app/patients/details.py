"""Contact details asked only when first needed, each time with the reason (progressive disclosure).

Registration asks for four things. Everything else is asked at the moment a step needs it:
the address before the first booking (prescriptions must carry it and medicine is delivered
there), the GP practice for a records request, the phone number for a consultation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.audit import services as audit
from app.database import transaction
from app.patients.models import Patient

# The official UK format: outward code (area + district), a space, inward code (sector + unit).
POSTCODE = re.compile(
    r"^(GIR ?0AA|[A-PR-UWYZ](?:[0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKSTUW]|[A-HK-Y][0-9][ABEHMNPRVWXY])"
    r" ?[0-9][ABD-HJLNP-UW-Z]{2})$")


@dataclass(frozen=True)
class Purpose:
    title: str
    reason: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()


PURPOSES = {
    "booking": Purpose(
        "Your address and phone number",
        "Before your first consultation: the law requires your full address on every controlled-drug "
        "prescription, your medicine is delivered there, and your clinician will phone you if the video call fails.",
        ("address_line1", "town", "postcode", "phone"), ("address_line2",)),
    "records": Purpose(
        "Your GP practice",
        "We need your GP practice to ask them for your medical records. Your NHS number is optional; it helps "
        "them find your record quickly.",
        ("gp_practice",), ("nhs_number",)),
}

LABELS = {
    "address_line1": "Address line 1", "address_line2": "Address line 2 (optional)", "town": "Town or city",
    "postcode": "Postcode", "phone": "Mobile or landline number", "gp_practice": "GP practice name and town",
    "nhs_number": "NHS number (optional)",
}


class DetailsError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def missing(patient: Patient, purpose: str) -> list[str]:
    return [name for name in PURPOSES[purpose].required if not getattr(patient, name)]


def normalise_postcode(value: str) -> str | None:
    compact = re.sub(r"\s+", "", value.upper())
    if not 5 <= len(compact) <= 7:
        return None
    spaced = f"{compact[:-3]} {compact[-3:]}"
    return spaced if POSTCODE.match(spaced) else None


def nhs_number_valid(value: str) -> bool:
    """Modulus 11: weights 10..2 over the first nine digits; 11 - remainder (11 → 0, 10 → invalid)."""
    if not (len(value) == 10 and value.isdigit()):
        return False
    total = sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(value[9])


def normalise_phone(value: str) -> str | None:
    """UK numbers to E.164 (+44...), from 07700 900123, +44 7700 900123 or 0044...; None when not one."""
    digits = re.sub(r"[\s()\-.]", "", value)
    if digits.startswith("+44"):
        national = digits[3:]
    elif digits.startswith("0044"):
        national = digits[4:]
    elif digits.startswith("0"):
        national = digits[1:]
    else:
        return None
    national = national.removeprefix("0")
    if not (national.isdigit() and 9 <= len(national) <= 10 and national[0] in "12378"):
        return None
    return f"+44{national}"


def validate(purpose: str, values: dict[str, str]) -> dict[str, str]:
    """Clean the submitted values for `purpose`; raise DetailsError naming each field at fault."""
    spec = PURPOSES[purpose]
    clean: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in spec.required + spec.optional:
        value = (values.get(name) or "").strip()
        if not value:
            if name in spec.required:
                errors[name] = f"Enter your {LABELS[name].lower().replace(' (optional)', '')}"
            continue
        if len(value) > 200:
            errors[name] = f"{LABELS[name]} must be 200 characters or fewer"
        elif name == "postcode":
            postcode = normalise_postcode(value)
            if postcode is None:
                errors[name] = "Enter a real UK postcode, like BS1 4DJ"
            else:
                clean[name] = postcode
        elif name == "nhs_number":
            compact = re.sub(r"[\s-]", "", value)
            if not nhs_number_valid(compact):
                errors[name] = "Enter a valid 10-digit NHS number, like 943 476 5919, or leave it empty"
            else:
                clean[name] = compact
        elif name == "phone":
            phone = normalise_phone(value)
            if phone is None:
                errors[name] = "Enter a UK phone number, like 07700 900123"
            else:
                clean[name] = phone
        else:
            clean[name] = value
    if errors:
        raise DetailsError(errors)
    return clean


def update(patient: Patient, purpose: str, values: dict[str, str]) -> None:
    clean = validate(purpose, values)
    with transaction():
        for name, value in clean.items():
            setattr(patient, name, value)
        # Which fields changed, never their values: the audit trail holds no contact details.
        audit.record("patient.details_updated", subject=("patient", patient.id), patient_id=patient.id,
                     detail={"purpose": purpose, "fields": sorted(clean)})


def address_lines(patient: Patient) -> list[str]:
    return [line for line in (patient.address_line1, patient.address_line2, patient.town, patient.postcode) if line]
