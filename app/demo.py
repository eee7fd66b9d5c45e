"""Demo data for `make run`: one account per role, fixed passwords and fixed TOTP secrets.

Idempotent: running it again changes nothing. The README lists the same accounts; keep the two
in step. Outside demo mode the server refuses to start while any of these accounts exists.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask

from app import crypto
from app.auth import services as accounts
from app.auth.models import Role, User
from app.consent import services as consent
from app.database import transaction, utcnow
from app.extensions import db
from app.intake import services as intake
from app.patients import details, onboarding
from app.patients import services as patients
from app.pharmacy import services as pharmacies
from app.prescribing import demo as prescribing_demo
from app.scheduling import services as scheduling


@dataclass(frozen=True)
class DemoAccount:
    role: Role
    email: str
    password: str
    full_name: str
    #: Base32 TOTP seed (staff only): add it to an authenticator app, or compute codes with pyotp.
    totp_secret: str | None = None


DEMO_PHARMACY = {"name": "Riverside Dispensary (demo)", "gphc_number": "9011234",
                 "address": "12 Riverside Walk, Bristol BS1 4DJ"}

ACCOUNTS = (
    DemoAccount(Role.PATIENT, "patient@demo.example.com", "VerityDemo-Patient1", "Alex Morgan"),
    DemoAccount(Role.CLINICIAN, "clinician@demo.example.com", "VerityDemo-Clinician1", "Dr Priya Shah",
                "VERITYDEMOCLINICIANSECRETAAAAAAA"),
    DemoAccount(Role.RECEPTION, "reception@demo.example.com", "VerityDemo-Reception1", "Sam Taylor",
                "VERITYDEMORECEPTIONSECRETAAAAAAA"),
    DemoAccount(Role.PHARMACIST, "pharmacist@demo.example.com", "VerityDemo-Pharmacist1", "Jordan Lee",
                "VERITYDEMOPHARMACISTSECRETAAAAAA"),
    DemoAccount(Role.ADMIN, "admin@demo.example.com", "VerityDemo-Admin1", "Chris Evans",
                "VERITYDEMOADMINSECRETAAAAAAAAAAA"),
)
DEMO_PATIENT_DOB = dt.date(1986, 4, 12)
DEMO_PATIENT_DETAILS = {"address_line1": "4 Canon's Road", "town": "Bristol", "postcode": "BS1 5UH",
                        "phone": "07700 900123"}


def load() -> list[DemoAccount]:
    """Create what is missing; return the accounts created this time."""
    created: list[DemoAccount] = []
    pharmacy = pharmacies.by_gphc(DEMO_PHARMACY["gphc_number"]) or pharmacies.create(**DEMO_PHARMACY)
    for account in ACCOUNTS:
        if accounts.find_by_email(account.email) is not None:
            continue
        if account.role is Role.PATIENT:
            patients.register(email=account.email, password=account.password, full_name=account.full_name,
                              date_of_birth=DEMO_PATIENT_DOB, is_demo=True)
        else:
            user = accounts.create_user(email=account.email, password=account.password,
                                        full_name=account.full_name, role=account.role, is_demo=True,
                                        pharmacy_id=pharmacy.id if account.role is Role.PHARMACIST else None)
            with transaction():
                user.totp_secret_enc = crypto.encrypt(account.totp_secret.encode(), accounts.TOTP_PURPOSE)
                user.totp_confirmed_at = utcnow()
        created.append(account)
    patient_user = accounts.find_by_email(ACCOUNTS[0].email)
    clinician = accounts.find_by_email(ACCOUNTS[1].email)
    patient = patients.for_user(patient_user)
    if patient.clinician_id is None:
        patients.assign_clinician(patient, clinician)
    if patient.pharmacy_id is None:
        with transaction():
            patient.pharmacy_id = pharmacy.id
    consent.load_defaults()
    intake.load_default_questionnaires()
    _onboard_demo_patient(patient)
    scheduling.load_demo_availability()
    prescribing_demo.load_all()
    from app.outcomes import services as outcomes
    from app.pharmacy import inventory

    inventory.load_demo_inventory()
    outcomes.load_demo_outcomes(patient)
    from app.billing import demo as billing_demo

    billing_demo.load(patient, accounts.find_by_email(ACCOUNTS[2].email))
    return created


def _onboard_demo_patient(patient) -> None:
    """The demo patient has finished onboarding: details given, intake sent (eligible), consents
    accepted, identity confirmed (recorded as done by the demo loader). Each step only once."""
    if details.missing(patient, "booking"):
        details.update(patient, "booking", DEMO_PATIENT_DETAILS)
    if details.missing(patient, "records"):
        details.update(patient, "records", {"gp_practice": "Harbourside Medical Practice, Bristol"})
    intake.complete_demo_intake(patient)
    waiting = consent.outstanding(patient)
    if waiting:
        consent.accept(patient, [document.id for document in waiting])
    if patient.identity_verified_at is None:
        onboarding.identity_verified(patient)


def demo_accounts_exist() -> bool:
    return db.session.scalar(sa.select(sa.exists().where(User.is_demo))) or False


class UnsafeStart(RuntimeError):
    pass


def refuse_unsafe_start(app: Flask) -> None:
    """Demo accounts have published passwords: never serve them outside demo mode."""
    if app.config["DEMO_MODE"]:
        return
    try:
        present = demo_accounts_exist()
    except sa.exc.OperationalError:
        db.session.rollback()
        return  # no schema yet: nothing to refuse
    except sa.exc.ProgrammingError:
        db.session.rollback()
        return
    if present:
        raise UnsafeStart(
            "Refusing to start: this database holds demo accounts, whose passwords are published, and "
            "VERITY_DEMO is off. Use a fresh database for real use, or set VERITY_DEMO=1 for a demonstration."
        )
