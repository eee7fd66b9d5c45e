"""Exports: one patient's scores and measurements, or a cohort's (by product, condition and dates), as
CSV or as a FHIR R4 Bundle (checked with fhir.resources' R4B models, the same as R4 for these
resources). Cohort exports are pseudonymised by default: each patient becomes a stable pseudonym, an
HMAC-SHA256 of their id under a secret key, so two exports line up without naming anyone.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pydantic
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fhir.resources.R4B.bundle import Bundle
from flask import current_app

from app.audit import services as audit
from app.auth.models import Role, User
from app.extensions import db
from app.outcomes import answering, scoring, settings
from app.outcomes.models import OutcomeObservation
from app.patients.models import Patient

PSEUDONYM_SYSTEM = "https://verity.example/fhir/NamingSystem/outcomes-pseudonym"
PATIENT_SYSTEM = "https://verity.example/fhir/NamingSystem/patient-id"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CSV_COLUMNS = ("patient", "condition", "products", "date", "measure", "system", "code", "value", "unit", "band",
               "source", "questionnaire_response")
MAX_COHORT = 5000


class ExportError(ValueError):
    pass


def _key() -> bytes:
    configured = settings.current().pseudonym_key
    if configured:
        return bytes.fromhex(configured)
    data_key = current_app.extensions["verity_data_key"]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"verity outcomes pseudonym v1").derive(data_key)


def pseudonym(patient_id: int) -> str:
    """Stable for a patient under one key; reveals nothing without it."""
    digest = hmac.new(_key(), f"patient:{patient_id}".encode(), hashlib.sha256).hexdigest()
    return f"P-{digest[:16].upper()}"


@dataclass(frozen=True)
class Context:
    """What an export says about each patient beside their values."""

    condition: str
    condition_code: str | None
    products: list[tuple[int, str]]


def context_of(patient: Patient) -> Context:
    from app.prescribing import formulary, plans
    from app.prescribing import services as prescribing

    plan = plans.current(patient)
    products: dict[int, str] = {}
    for prescription in prescribing.prescriptions_for_patient(patient):
        for item in prescription.items:
            products.setdefault(item.product_id, item.product_name)
    if not products and plan is not None:
        for line in plan.products:
            product = formulary.get(int(line["product_id"]))
            if product is not None:
                products[product.id] = product.name
    return Context(plan.indication if plan else "Not recorded", plan.snomed_code if plan else None,
                   sorted(products.items(), key=lambda p: p[1]))


@dataclass
class CohortFilter:
    product_id: int | None = None
    condition_code: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    #: False (the default) replaces every patient by a pseudonym.
    identified: bool = False


def conditions() -> list[tuple[str, str]]:
    """(SNOMED code, indication) of the patients who have outcome data: the choices for the cohort filter."""
    found: dict[str, str] = {}
    for patient in _patients_with_data():
        context = context_of(patient)
        if context.condition_code:
            found.setdefault(context.condition_code, context.condition)
    return sorted(found.items(), key=lambda c: c[1])


def _patients_with_data() -> list[Patient]:
    ids = sa.select(OutcomeObservation.patient_id).distinct()
    return list(db.session.scalars(sa.select(Patient).where(Patient.id.in_(ids)).order_by(Patient.id)
                                   .limit(MAX_COHORT)))


def cohort(filters: CohortFilter, *, user: User) -> list[tuple[Patient, Context]]:
    """The patients in the cohort whom `user` may export: admins all, a clinician their own patients."""
    found = []
    for patient in _patients_with_data():
        if user.role is Role.CLINICIAN and patient.clinician_id != user.id:
            continue
        context = context_of(patient)
        if filters.condition_code and context.condition_code != filters.condition_code:
            continue
        if filters.product_id and filters.product_id not in {pid for pid, _ in context.products}:
            continue
        found.append((patient, context))
    return found


def _observations(patient: Patient, filters: CohortFilter | None) -> list[OutcomeObservation]:
    query = sa.select(OutcomeObservation).where(OutcomeObservation.patient_id == patient.id) \
        .order_by(OutcomeObservation.effective_at, OutcomeObservation.id)
    if filters and filters.date_from:
        query = query.where(OutcomeObservation.effective_at >= dt.datetime.combine(filters.date_from, dt.time(),
                                                                                    tzinfo=dt.UTC))
    if filters and filters.date_to:
        query = query.where(OutcomeObservation.effective_at < dt.datetime.combine(
            filters.date_to + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC))
    return list(db.session.scalars(query))


def _label(patient: Patient, identified: bool) -> str:
    if not identified:
        return pseudonym(patient.id)
    from app.patients import services as patients

    return f"{patients.user_of(patient).full_name} (Verity {patient.id})"


def _value(value: Decimal) -> str:
    return scoring.number(value).replace(",", "")


def csv_lines(members: list[tuple[Patient, Context]], filters: CohortFilter | None, *,
              identified: bool) -> Iterator[str]:
    """The export as CSV text, a line at a time (streamed to the browser after the view returns, so each
    patient is read afresh by id in the session the stream runs in)."""
    rows = [(patient.id, context) for patient, context in members]
    return _csv_stream(rows, filters, identified)


def _csv_stream(rows: list[tuple[int, Context]], filters: CohortFilter | None, identified: bool) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for patient_id, context in rows:
        patient = db.session.get(Patient, patient_id)
        label = _label(patient, identified)
        products = "; ".join(name for _, name in context.products)
        for observation in _observations(patient, filters):
            writer.writerow([label, context.condition, products, observation.effective_at.date().isoformat(),
                             observation.display, observation.system, observation.code, _value(observation.value),
                             observation.unit, observation.band or "", observation.source,
                             observation.response_id or ""])
            yield flush()


def _subject(patient: Patient, identified: bool) -> str:
    return f"Patient/{patient.id}" if identified else f"Patient/{pseudonym(patient.id).lower()}"


def patient_resource(patient: Patient, *, identified: bool) -> dict[str, Any]:
    if not identified:
        alias = pseudonym(patient.id)
        return {"resourceType": "Patient", "id": alias.lower(),
                "identifier": [{"system": PSEUDONYM_SYSTEM, "value": alias}]}
    from app.patients import services as patients

    user = patients.user_of(patient)
    parts = user.full_name.split()
    return {"resourceType": "Patient", "id": str(patient.id),
            "identifier": [{"system": PATIENT_SYSTEM, "value": str(patient.id)}],
            "name": [{"text": user.full_name, "family": parts[-1] if parts else user.full_name,
                      "given": parts[:-1]}], "birthDate": patient.date_of_birth.isoformat()}


def observation_resource(observation: OutcomeObservation, *, subject: str, identified: bool) -> dict[str, Any]:
    measure = scoring.measure(observation.code)
    category = "survey" if (measure is None or measure.questionnaire) else (
        "vital-signs" if observation.code == scoring.RESTING_HEART_RATE else "activity")
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": f"obs-{observation.id}", "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": observation.system, "code": observation.code,
                             "display": observation.display}], "text": observation.display},
        "subject": {"reference": subject},
        "effectiveDateTime": observation.effective_at.isoformat(timespec="seconds"),
        "valueQuantity": {"value": float(observation.value), "unit": measure.unit_label if measure else "points",
                          "system": UCUM, "code": observation.unit},
    }
    if observation.band:
        resource["interpretation"] = [{"text": observation.band}]
    if observation.response_id and identified:
        resource["derivedFrom"] = [{"reference": f"QuestionnaireResponse/{observation.response_id}"}]
    if observation.source != "questionnaire":
        resource["method"] = {"text": {"check-in": "Daily check-in", "import": "Imported from a device export"}
                              .get(observation.source, observation.source)}
    return resource


def bundle(members: list[tuple[Patient, Context]], filters: CohortFilter | None, *, identified: bool,
           with_responses: bool = False) -> dict[str, Any]:
    """A FHIR Bundle (collection): each patient, their Observations (and their QuestionnaireResponses when
    identified and asked for), validated before it leaves."""
    entries: list[dict[str, Any]] = []
    base = "urn:verity:"
    for patient, _context in members:
        subject = _subject(patient, identified)
        entries.append({"fullUrl": f"{base}{subject}", "resource": patient_resource(patient, identified=identified)})
        for observation in _observations(patient, filters):
            resource = observation_resource(observation, subject=subject, identified=identified)
            entries.append({"fullUrl": f"{base}Observation/{resource['id']}", "resource": resource})
        if identified and with_responses:
            for response in answering.responses_of(patient):
                resource = answering.fhir_response(response)
                entries.append({"fullUrl": f"{base}QuestionnaireResponse/{response.id}", "resource": resource})
    data = {"resourceType": "Bundle", "type": "collection",
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "entry": entries}
    try:
        Bundle.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ExportError(f"the export is not a valid FHIR Bundle: {exc.errors()[:3]}") from exc
    return data


def bundle_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1)


def record_export(*, by: User, scope: str, patient_id: int | None, count: int, identified: bool, fmt: str) -> None:
    audit.record("outcomes.exported", subject=("patient", patient_id) if patient_id else None, patient_id=patient_id,
                 detail={"scope": scope, "patients": count, "identified": identified, "format": fmt, "by": by.id})
