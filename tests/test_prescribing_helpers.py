"""Helpers shared by the prescribing tests and the access walk: a patient ready for a prescription,
made through the services, and a signed prescription. No tests here."""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from app.audit import context
from app.auth.models import User
from app.database import transaction
from app.extensions import db
from app.patients import services as patients

FLOWER = "Verdant T22 Flower"
OIL = "Equilibria 10:10 Oil"
CAPSULES = "Caplio 5:5 Capsules"
DOSE = "Vaporise 0.1 g up to ten times a day"


@contextlib.contextmanager
def acting_as(user_id: int | None, role: str) -> Iterator[None]:
    token = context.bind(context.Actor(user_id=user_id, role=role))
    try:
        yield
    finally:
        context.reset(token)


@dataclass
class Ready:
    patient_id: int
    clinician_id: int
    colleague_id: int
    pharmacy_id: int
    products: dict[str, int]


def prepare(personas, *, specialist: bool = True, identity: bool = True, address: bool = True,
            consent: bool = True, plan: bool = True, mdt: bool = True, prescriber: bool = True,
            patient: str = "patient", clinician: str = "clinician", colleague: str = "other_clinician") -> Ready:
    """Inside an app context: everything a first prescription needs, each part optional."""
    from app.consent import services as consents
    from app.patients import details, onboarding
    from app.prescribing import pki, plans, prescribers
    from app.prescribing.demo import load_demo_formulary

    record = patients.get(personas[patient].patient_id)
    doctor = db.session.get(User, personas[clinician].user_id)
    second = db.session.get(User, personas[colleague].user_id)
    pharmacy_id = db.session.get(User, personas["pharmacist"].user_id).pharmacy_id
    if pki.ca() is None:
        pki.init_ca()
    products = {p.name: p.id for p in load_demo_formulary()}
    if prescriber:
        prescribers.save(doctor, gmc_number="7000001", specialist=specialist, cd_prescriber_code="600001")
    prescribers.save(second, gmc_number="7000002", specialist=True, cd_prescriber_code="600002")
    with transaction():
        record.pharmacy_id = pharmacy_id  # the patient's nomination (the pharmacy issue owns the page for it)
    if identity:
        onboarding.identity_verified(record)
    if address:
        details.update(record, "booking", {"address_line1": "14 Orchard Lane", "town": "Bristol",
                                           "postcode": "BS1 5TR", "phone": "07700 900123"})
    if consent:
        consents.load_defaults()
        document = consents.current("pharmacy_sharing", pharmacy_id)
        with acting_as(record.user_id, "patient"):
            consents.accept(record, [document.id])
    if plan:
        with acting_as(doctor.id, "clinician"):
            plans.save_version(record, doctor, plan_values(products), reason="Initial plan")
    if plan and mdt:
        with acting_as(doctor.id, "clinician"):
            review = plans.refer(record, doctor, "Chronic pain for six years; two licensed treatments failed.")
        with acting_as(second.id, "clinician"):
            plans.decide(review, second, decision="approved", decided_on=dt.date.today(), note="Agreed.")
    return Ready(record.id, doctor.id, second.id, pharmacy_id, products)


def plan_values(ids: dict[str, int], **overrides) -> dict:
    products = ids
    values = {"snomed_code": "82423001", "indication": "Chronic pain",
              "products": {products[FLOWER]: ("0.1", "1"), products[OIL]: ("0.5", "2"),
                           products[CAPSULES]: ("1", "4")},
              "quotas": {"g": "30", "ml": "60", "capsule": "120"},
              "review_date": dt.date.today() + dt.timedelta(days=90), "goals": "Less pain, better sleep."}
    values.update(overrides)
    return values


def line(products: dict[str, int], name: str = FLOWER, quantity: str = "30", days: str = "30", dose: str = DOSE,
         **extra) -> dict:
    return {"product_id": str(products[name]), "quantity": quantity, "days_supply": days, "dose": dose, **extra}


def sign_new(ready: Ready, *, quantity: str = "30", name: str = FLOWER, days: str = "30", **extra):
    """A draft with one line, signed by the clinician (inside an app context). Returns the prescription."""
    from app.prescribing import services

    doctor = db.session.get(User, ready.clinician_id)
    record = patients.get(ready.patient_id)
    with acting_as(doctor.id, "clinician"):
        draft = services.add_item(record, doctor, line(ready.products, name, quantity, days, **extra))
        return services.sign(draft, doctor, token=secrets.token_urlsafe(24), revision=draft.revision).prescription
