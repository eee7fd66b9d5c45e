"""Signing a prescription: in one transaction, the checks again, the PAdES-signed PDF, the JWS over
the FHIR MedicationRequests, the state change with its audit entry, and the pharmacy's outbox message.

Anything failing leaves the draft a draft. A second submit of the same signing form (a double
click, a retry after a timeout) finds the prescription signed with the same idempotency token
and returns it instead of signing twice; on PostgreSQL the row is locked for the duration, on
SQLite the write lock serialises signers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import segno
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from flask import current_app
from joserfc import jws
from joserfc.jwk import ECKey

from app.auth.models import User
from app.database import is_sqlite, transaction, utcnow
from app.extensions import db
from app.patients import services as patients
from app.pharmacy import services as pharmacies
from app.prescribing import config, fhir, pdf, pki, plans, prescribers, rules, states
from app.prescribing.models import Prescription, RepeatRequest

VALID_DAYS = 28


class SigningError(ValueError):
    """Signing refused; the message is fit to show the prescriber. Nothing was written."""


class SigningBlocked(SigningError):
    def __init__(self, blocks: list[rules.Block]):
        super().__init__("This prescription cannot be signed yet: " + " ".join(b.message for b in blocks))
        self.blocks = blocks


@dataclass(frozen=True)
class Signed:
    prescription: Prescription
    #: True when this request found it already signed by the same form (a double submit).
    repeated: bool = False


def verify_url(prescription: Prescription) -> str:
    return f"{current_app.config['BASE_URL'].rstrip('/')}/verify/{prescription.public_id}"


def sign(prescription: Prescription, clinician: User, *, token: str, revision: int,
         now: dt.datetime | None = None) -> Signed:
    token = (token or "").strip()
    if not (16 <= len(token) <= 64):
        raise SigningError("The signing form is incomplete. Reload the page and sign again.")
    if prescription.prescriber_id != clinician.id:
        raise SigningError("Only the clinician who wrote this prescription can sign it.")
    with transaction() as session:
        # Lock the row (PostgreSQL) and read it fresh: a concurrent signer of the same draft waits here.
        session.refresh(prescription, with_for_update=not is_sqlite())
        if prescription.status != states.State.DRAFT:
            if prescription.sign_token == token:
                return Signed(prescription, repeated=True)
            raise SigningError(f"This prescription is already {states.state_of(prescription).label.lower()}: it "
                               "cannot be signed again. Start a new one if you need to.")
        if prescription.revision != revision:
            raise SigningError("The prescription changed since you reviewed it. Check it again, then sign.")
        patient = patients.get(prescription.patient_id)
        lines = [rules.line_of(item) for item in prescription.items]
        exclude = {prescription.id} | ({prescription.supersedes_id} if prescription.supersedes_id else set())
        blocks = rules.blocking_reasons(patient, clinician, lines, exclude=exclude, now=now)
        replaced = db.session.get(Prescription, prescription.supersedes_id) if prescription.supersedes_id else None
        if replaced is not None and states.state_of(replaced) not in states.BEFORE_SUPPLY:
            blocks.append(rules.Block("supersede", "The prescription this one replaces is "
                                                   f"{states.state_of(replaced).label.lower()}: it can no longer be "
                                                   "replaced. Discard this draft or start a new prescription."))
        if blocks:
            raise SigningBlocked(blocks)

        signed_at = now or utcnow()
        version = plans.current(patient)
        prescription.signed_at = signed_at
        prescription.valid_until = signed_at + dt.timedelta(days=VALID_DAYS)
        prescription.plan_version_id = version.id
        prescription.pharmacy_id = patient.pharmacy_id
        prescription.paper_original = config.paper_original()
        prescription.sign_token = token

        material = pki.signing_material(clinician, prescriber_id=prescription.prescriber_id)
        facts = _facts(prescription, patient, clinician, version)
        document = pdf.render("prescribing/pdf/prescription.html", **facts)
        signed_pdf = pdf.pades_sign(document, material, signer_name=clinician.full_name,
                                    reason=f"Controlled-drug prescription {prescription.public_id}")
        payload = fhir.bundle(**_fhir_facts(prescription, facts, version))
        prescription.pdf = signed_pdf
        prescription.pdf_sha256 = hashlib.sha256(signed_pdf).hexdigest()
        prescription.jws = sign_jws(payload, material)
        prescription.signer_fingerprint = material.row.fingerprint

        states._move(prescription, states.State.SIGNED, actor_role=states.CLINICIAN, internal=True,
                     detail={"pdf_sha256": prescription.pdf_sha256, "signer": material.row.fingerprint,
                             "plan_version": version.version, "paper_original": prescription.paper_original,
                             "items": len(lines)})
        if replaced is not None:
            states._move(replaced, states.State.SUPERSEDED, actor_role=states.CLINICIAN, internal=True,
                         detail={"by": prescription.public_id})
        request = db.session.scalar(sa.select(RepeatRequest).where(
            RepeatRequest.new_prescription_id == prescription.id))
        if request is not None:
            request.status = "issued"
    return Signed(prescription)


def sign_jws(payload: dict, material: pki.SigningMaterial) -> str:
    key = ECKey.import_key(material.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    header = {"alg": "ES256", "kid": material.row.fingerprint, "typ": "JOSE", "cty": "application/fhir+json"}
    return jws.serialize_compact(header, body, key, algorithms=["ES256"])


def qr_data_uri(url: str) -> str:
    return segno.make(url, error="m").svg_data_uri(scale=3, border=2, dark="#000000")


def _facts(prescription: Prescription, patient, clinician: User, version) -> dict:
    """Everything printed on the prescription (reg. 15), for the PDF and the FP10PCD print."""
    user = patients.user_of(patient)
    profile = prescribers.get(clinician)
    pharmacy = pharmacies.get(prescription.pharmacy_id) if prescription.pharmacy_id else None
    url = verify_url(prescription)
    return {
        "prescription": prescription, "items": list(prescription.items), "patient": patient,
        "patient_name": user.full_name,
        "patient_address": [line for line in (patient.address_line1, patient.address_line2, patient.town,
                                              patient.postcode) if line],
        "prescriber": clinician, "profile": profile, "clinic_name": current_app.config["CLINIC_NAME"],
        "clinic_address": config.clinic_address(), "pharmacy": pharmacy, "plan_version": version,
        "verify_url": url, "qr": qr_data_uri(url), "signed_at": prescription.signed_at,
        "valid_until": prescription.valid_until, "paper_original": prescription.paper_original,
        "fingerprint": None,
    }


def _fhir_facts(prescription: Prescription, facts: dict, version) -> dict:
    patient = facts["patient"]
    profile = facts["profile"]
    return {
        "public_id": prescription.public_id,
        "identifier_system": f"{current_app.config['BASE_URL'].rstrip('/')}/prescriptions",
        "signed_at": prescription.signed_at, "valid_until": prescription.valid_until,
        "patient": {"name": facts["patient_name"], "birth_date": patient.date_of_birth,
                    "lines": [line for line in (patient.address_line1, patient.address_line2) if line],
                    "town": patient.town, "postcode": patient.postcode, "nhs_number": patient.nhs_number},
        "prescriber": {"name": facts["prescriber"].full_name, "gmc_number": profile.gmc_number,
                       "cd_code": profile.cd_prescriber_code, "address": facts["clinic_address"]},
        "indication": (version.snomed_code, version.indication),
        "items": [{"line": item.line, "product_name": item.product_name, "form_label": item.form_label,
                   "strength": item.strength, "dmd_code": item.dmd_code, "dose": item.dose,
                   "quantity": str(item.quantity), "unit": item.unit, "quantity_text": item.quantity_text,
                   "days_supply": item.days_supply, "justification": item.justification}
                  for item in prescription.items],
        "paper_original": prescription.paper_original,
    }


def print_facts(prescription: Prescription) -> dict:
    """The same facts again, for the FP10PCD print of a signed prescription."""
    patient = patients.get(prescription.patient_id)
    clinician = db.session.get(User, prescription.prescriber_id)
    version = plans.get_version(prescription.plan_version_id) if prescription.plan_version_id else None
    facts = _facts(prescription, patient, clinician, version)
    facts["fingerprint"] = prescription.signer_fingerprint
    return facts
