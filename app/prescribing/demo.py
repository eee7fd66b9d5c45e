"""Demo data for prescribing: a small formulary, the demo clinician's prescribing details, and a
treatment plan with an MDT approval for the demo patient. Every function is idempotent.

app/demo.py calls `load_demo_formulary()`, `load_demo_prescriber(user)` and
`load_demo_plan(patient, author)`; `flask --app wsgi prescribing demo` runs all of it for the
demo accounts (and, in demo mode, completes the demo patient's identity, address and consent).
"""

from __future__ import annotations

import datetime as dt
import secrets

import sqlalchemy as sa
from flask import current_app

from app.audit import context
from app.auth import services as accounts
from app.auth.models import Role, User
from app.database import transaction
from app.extensions import db
from app.patients.models import Patient
from app.prescribing import formulary, pki, plans, prescribers
from app.prescribing.models import Product

#: Realistic products. Brand names are invented; all are unlicensed CBPMs, Schedule 2.
DEMO_PRODUCTS = (
    {"name": "Verdant T22 Flower", "manufacturer": "Northfield Botanicals (demo)", "form": "dried_flower",
     "thc": "22", "cbd": "0.5", "pack_size": "10", "price": "85.00"},
    {"name": "Verdant T18 Flower", "manufacturer": "Northfield Botanicals (demo)", "form": "dried_flower",
     "thc": "18", "cbd": "0.8", "pack_size": "10", "price": "75.00"},
    {"name": "Equilibria 10:10 Oil", "manufacturer": "Harbour Pharma (demo)", "form": "oil",
     "thc": "10", "cbd": "10", "pack_size": "30", "price": "120.00"},
    {"name": "Serenis CBD 50 Oil", "manufacturer": "Harbour Pharma (demo)", "form": "oil",
     "thc": "1", "cbd": "50", "pack_size": "30", "price": "110.00"},
    {"name": "Caplio 5:5 Capsules", "manufacturer": "Harbour Pharma (demo)", "form": "capsule",
     "thc": "5", "cbd": "5", "pack_size": "30", "price": "95.00"},
)
DEMO_PRESCRIBER = {"gmc_number": "7012345", "specialist": True, "cd_prescriber_code": "612345"}
MDT_COLLEAGUE = ("mdt.colleague@demo.example.com", "Dr Tom Reid")
CHRONIC_PAIN = ("82423001", "Chronic pain")


def load_demo_formulary() -> list[Product]:
    """Create the demo products that are missing; return all of them."""
    result = []
    for values in DEMO_PRODUCTS:
        existing = db.session.scalar(sa.select(Product).where(Product.name == values["name"]))
        result.append(existing or formulary.create({**values, "schedule": "2", "unlicensed": True}))
    return result


def load_demo_prescriber(user: User):
    """The demo clinician's GMC number, Specialist Register flag and private CD prescriber code."""
    return prescribers.get(user) or prescribers.save(user, **DEMO_PRESCRIBER)


def _colleague() -> User:
    """A second (demo) clinician who recorded the MDT decision. It has a random password and no second
    factor: nobody signs in as it."""
    user = accounts.find_by_email(MDT_COLLEAGUE[0])
    if user is None:
        user = accounts.create_user(email=MDT_COLLEAGUE[0], password=secrets.token_urlsafe(24),
                                    full_name=MDT_COLLEAGUE[1], role=Role.CLINICIAN, is_demo=True)
        prescribers.save(user, gmc_number="7054321", specialist=True, cd_prescriber_code="654321")
    return user


def load_demo_plan(patient: Patient, author: User):
    """A chronic-pain plan with flower and oil, and an MDT approval recorded by a second clinician."""
    version = plans.current(patient)
    if version is None:
        products = {p.name: p for p in load_demo_formulary()}
        flower, oil = products["Verdant T22 Flower"], products["Equilibria 10:10 Oil"]
        token = context.bind(context.Actor(user_id=author.id, role=author.role.value))
        try:
            version = plans.save_version(patient, author, {
                "snomed_code": CHRONIC_PAIN[0], "indication": CHRONIC_PAIN[1],
                "products": {flower.id: ("0.1", "1"), oil.id: ("0.5", "2")},
                "quotas": {"g": "30", "ml": "60"},
                "review_date": dt.date.today() + dt.timedelta(days=90),
                "goals": "Reduce average pain from 7/10 to 4/10; sleep through the night at least 4 nights a week.",
            }, reason="Initial plan after the first consultation")
        finally:
            context.reset(token)
    if plans.approval(patient) is None and not any(r.decision is None for r in plans.reviews(patient)):
        colleague = _colleague()
        token = context.bind(context.Actor(user_id=author.id, role=author.role.value))
        try:
            review = plans.refer(patient, author, "Chronic lower back pain for 6 years; two licensed treatments "
                                                  "(amitriptyline, pregabalin) tried without adequate relief.")
        finally:
            context.reset(token)
        token = context.bind(context.Actor(user_id=colleague.id, role=colleague.role.value))
        try:
            plans.decide(review, colleague, decision="approved", decided_on=dt.date.today(),
                         note="Meets the criteria for a trial of cannabis-based medicine; review at 3 months.")
        finally:
            context.reset(token)
    return version


def ready_demo_patient(patient: Patient) -> None:
    """Demo mode only: complete the demo patient's identity check, address and pharmacy consent
    through those domains' services, so a prescription can be signed straight away."""
    if not current_app.config.get("DEMO_MODE") and not current_app.config.get("TESTING"):
        raise RuntimeError("ready_demo_patient runs in demo mode only")
    from app.consent import services as consents
    from app.patients import details, onboarding

    if patient.identity_verified_at is None:
        onboarding.identity_verified(patient)
    if details.missing(patient, "booking"):
        details.update(patient, "booking", {"address_line1": "14 Orchard Lane", "town": "Bristol",
                                            "postcode": "BS1 5TR", "phone": "07700 900123"})
    consents.load_defaults()
    if patient.pharmacy_id and not consents.has_consent(patient, "pharmacy_sharing", patient.pharmacy_id):
        document = consents.current("pharmacy_sharing", patient.pharmacy_id)
        token = context.bind(context.Actor(user_id=patient.user_id, role="patient"))
        try:
            consents.accept(patient, [document.id])
        finally:
            context.reset(token)


def load_all(patient_email: str | None = None) -> None:
    """Everything above for the demo accounts of app/demo.py (or, with `patient_email`, for that patient,
    given to the demo clinician and the demo pharmacy when they have none), and the clinic CA when missing."""
    from app import demo
    from app.patients import services as patients
    from app.pharmacy import services as pharmacies

    if pki.ca() is None:
        pki.init_ca()
    load_demo_formulary()
    clinician = accounts.find_by_email(next(a.email for a in demo.ACCOUNTS if a.role is Role.CLINICIAN))
    email = patient_email or next(a.email for a in demo.ACCOUNTS if a.role is Role.PATIENT)
    patient_user = accounts.find_by_email(email)
    if clinician is None or patient_user is None or patient_user.role is not Role.PATIENT:
        raise RuntimeError("Load the demo accounts first (flask --app wsgi demo load), and name a patient account.")
    load_demo_prescriber(clinician)
    patient = patients.for_user(patient_user)
    if patient.clinician_id is None:
        patients.assign_clinician(patient, clinician)
    pharmacy = pharmacies.by_gphc(demo.DEMO_PHARMACY["gphc_number"])
    with transaction():
        if patient.pharmacy_id is None and pharmacy is not None:
            patient.pharmacy_id = pharmacy.id  # as app/demo.py nominates it for the demo patient
        ready_demo_patient(patient)
        load_demo_plan(patient, clinician)
