"""Prescribing's tables. Signed prescriptions and plan versions are never updated in place: see
`app/prescribing/immutability.py`, which refuses such writes at flush time."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.database import UTCDateTime, utcnow
from app.extensions import db


class Product(db.Model):
    """A formulary product. Withdrawn products stay (old prescriptions point at them) but cannot be prescribed."""

    __tablename__ = "formulary_products"
    __table_args__ = (sa.UniqueConstraint("name", "manufacturer", "form", name="uq_formulary_products_identity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    manufacturer: Mapped[str] = mapped_column(sa.String(200))
    #: A key of `formulary.FORMS` (dried_flower, granules, oil, capsule, pastille); fixes the units.
    form: Mapped[str] = mapped_column(sa.String(30))
    #: THC content in the form's content unit (% w/w for flower, mg/ml for oils, mg per capsule).
    thc: Mapped[Decimal] = mapped_column(sa.Numeric(8, 3))
    cbd: Mapped[Decimal] = mapped_column(sa.Numeric(8, 3))
    #: Pack size in the form's dispensing unit (g, ml, capsules).
    pack_size: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2))
    #: Dictionary of medicines and devices code (a SNOMED CT identifier), when the product has one.
    dmd_code: Mapped[str | None] = mapped_column(sa.String(18))
    #: Misuse of Drugs Regulations 2001 schedule: "2" for cannabis-based products for medicinal use.
    schedule: Mapped[str] = mapped_column(sa.String(2), default="2")
    #: True for an unlicensed cannabis-based product for medicinal use (reg. 16A: specialists initiate).
    unlicensed: Mapped[bool] = mapped_column(default=True)
    #: Price per pack, in pence.
    price_pence: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Prescriber(db.Model):
    """What allows a clinician to prescribe controlled drugs privately."""

    __tablename__ = "prescribers"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    #: General Medical Council reference number (7 digits).
    gmc_number: Mapped[str] = mapped_column(sa.String(7), unique=True)
    #: On the GMC Specialist Register: required to initiate unlicensed cannabis-based products (reg. 16A).
    specialist: Mapped[bool] = mapped_column(default=False)
    #: Private controlled-drug prescriber code (6 digits), printed on every private CD prescription.
    cd_prescriber_code: Mapped[str] = mapped_column(sa.String(6))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MdtReview(db.Model):
    """A multidisciplinary-team review: referred by the patient's clinician, decided by a second clinician."""

    __tablename__ = "mdt_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    case_summary: Mapped[str] = mapped_column(sa.Text)
    referred_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    referred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: None while waiting; then "approved" or "declined".
    decision: Mapped[str | None] = mapped_column(sa.String(12))
    decision_note: Mapped[str | None] = mapped_column(sa.Text)
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    #: The date of the MDT meeting that decided.
    decided_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    recorded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class TreatmentPlan(db.Model):
    """A patient's treatment plan; its content lives in immutable versions, the newest is current."""

    __tablename__ = "treatment_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    versions: Mapped[list[TreatmentPlanVersion]] = relationship(
        back_populates="plan", order_by="TreatmentPlanVersion.version")


class TreatmentPlanVersion(db.Model):
    __tablename__ = "treatment_plan_versions"
    __table_args__ = (sa.UniqueConstraint("plan_id", "version", name="uq_treatment_plan_versions_plan_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(sa.ForeignKey("treatment_plans.id"), index=True)
    version: Mapped[int] = mapped_column()
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Why this version was made (required for every version, the first included).
    reason: Mapped[str] = mapped_column(sa.Text)
    #: SNOMED CT concept id of the indication, e.g. 82423001 (chronic pain).
    snomed_code: Mapped[str] = mapped_column(sa.String(18))
    indication: Mapped[str] = mapped_column(sa.String(300))
    #: JSON list of {"product_id", "dose_min", "dose_max"}: allowed products and daily dose range (product unit/day).
    products: Mapped[list] = mapped_column(sa.JSON)
    #: JSON {unit: maximum per rolling 30 days}, e.g. {"g": "30"}: the patient's quota per dispensing unit.
    quotas: Mapped[dict] = mapped_column(sa.JSON)
    review_date: Mapped[dt.date] = mapped_column(sa.Date)
    goals: Mapped[str] = mapped_column(sa.Text)

    plan: Mapped[TreatmentPlan] = relationship(back_populates="versions")


class Prescription(db.Model):
    """A private controlled-drug prescription. Its status moves only through app/prescribing/states.py."""

    __tablename__ = "prescriptions"
    #: A pharmacy's queue: its prescriptions in the queue's states, by time in state (the counts by state), and
    #: newest first (a page of the queue, read backwards).
    __table_args__ = (sa.Index("ix_prescriptions_pharmacy_queue", "pharmacy_id", "status", "status_changed_at"),
                      sa.Index("ix_prescriptions_pharmacy_recent", "pharmacy_id", "status_changed_at", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Unguessable id used in the QR code and on the verification page.
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    prescriber_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(30), default="draft", index=True)
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Bumped on every change to a draft: signing refuses a draft that changed since it was reviewed.
    revision: Mapped[int] = mapped_column(default=0)
    #: The treatment plan version it was written under (pinned at signing).
    plan_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("treatment_plan_versions.id"))
    #: The nominated pharmacy at signing.
    pharmacy_id: Mapped[int | None] = mapped_column(sa.ForeignKey("pharmacies.id"), index=True)
    #: The prescription this one replaces (made superseded when this one is signed).
    supersedes_id: Mapped[int | None] = mapped_column(sa.ForeignKey("prescriptions.id"))

    signed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    #: End of the 28-day validity.
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The idempotency token of the signing form that signed it (a double submit finds it).
    sign_token: Mapped[str | None] = mapped_column(sa.String(64))
    #: The signed PDF (PAdES). Not secret from the clinic, but personal data: served to authorised people only.
    pdf: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    pdf_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    #: Compact JWS (ES256) over the FHIR Bundle of MedicationRequests.
    jws: Mapped[str | None] = mapped_column(sa.Text)
    #: SHA-256 fingerprint of the signer's certificate (also the JWS `kid`).
    signer_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))

    #: True when the paper FP10PCD is the legal original (England's default), fixed at signing.
    paper_original: Mapped[bool] = mapped_column(default=True)
    paper_posted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    paper_carrier: Mapped[str | None] = mapped_column(sa.String(60))
    paper_tracking: Mapped[str | None] = mapped_column(sa.String(60))
    #: When the pharmacy recorded the paper original as received and matching.
    paper_received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: Why it ended (cancelled, rejected, ...), shown to the prescriber and pharmacy.
    ended_reason: Mapped[str | None] = mapped_column(sa.Text)

    items: Mapped[list[PrescriptionItem]] = relationship(
        back_populates="prescription", order_by="PrescriptionItem.line", cascade="all, delete-orphan")


class PrescriptionItem(db.Model):
    """One product line. Product facts are copied at the time of writing: the formulary may change later."""

    __tablename__ = "prescription_items"
    __table_args__ = (sa.UniqueConstraint("prescription_id", "line", name="uq_prescription_items_line"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(sa.ForeignKey("prescriptions.id"), index=True)
    line: Mapped[int] = mapped_column()
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("formulary_products.id"))
    product_name: Mapped[str] = mapped_column(sa.String(200))
    form_label: Mapped[str] = mapped_column(sa.String(80))
    strength: Mapped[str] = mapped_column(sa.String(120))
    dmd_code: Mapped[str | None] = mapped_column(sa.String(18))
    dose: Mapped[str] = mapped_column(sa.String(300))
    quantity: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2))
    #: The dispensing unit: g, ml or capsule.
    unit: Mapped[str] = mapped_column(sa.String(12))
    #: The total quantity in words and figures, as printed, e.g. "30 (thirty) grams".
    quantity_text: Mapped[str] = mapped_column(sa.String(200))
    days_supply: Mapped[int] = mapped_column()
    #: Required when the supply is for more than 30 days.
    justification: Mapped[str | None] = mapped_column(sa.Text)

    prescription: Mapped[Prescription] = relationship(back_populates="items")


class PrescriptionTransition(db.Model):
    """Each status change, for the timeline (the audit trail holds the same, hash-chained)."""

    __tablename__ = "prescription_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(sa.ForeignKey("prescriptions.id"), index=True)
    from_state: Mapped[str] = mapped_column(sa.String(30))
    to_state: Mapped[str] = mapped_column(sa.String(30))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    #: clinician, reception, admin, pharmacy or system.
    actor_role: Mapped[str] = mapped_column(sa.String(20))
    #: JSON detail (reason, carrier and tracking number, ...); never clinical free text beyond the reason.
    detail: Mapped[dict] = mapped_column(sa.JSON, default=dict)


class RepeatRequest(db.Model):
    """A patient's request for a repeat: always reviewed by a clinician, never automatic."""

    __tablename__ = "repeat_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    #: The earlier prescription the patient wants repeated.
    prescription_id: Mapped[int] = mapped_column(sa.ForeignKey("prescriptions.id"))
    #: The draft a clinician started from this request (it becomes the issued prescription when signed).
    new_prescription_id: Mapped[int | None] = mapped_column(sa.ForeignKey("prescriptions.id"))
    note: Mapped[str | None] = mapped_column(sa.Text)
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: pending, started (a clinician opened a draft from it), issued, declined.
    status: Mapped[str] = mapped_column(sa.String(12), default="pending", index=True)
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str | None] = mapped_column(sa.Text)


class SigningCertificate(db.Model):
    """The clinic's CA and each clinician's signing key and certificate (ECDSA P-256).

    Private keys are PKCS#8, AES-GCM encrypted with the data key and bound to this row's purpose;
    they are decrypted only inside the signing step of the clinician they belong to.
    """

    __tablename__ = "signing_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: "ca" for the clinic's certificate authority, "clinician" for a prescriber's signing certificate.
    kind: Mapped[str] = mapped_column(sa.String(10), index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    subject: Mapped[str] = mapped_column(sa.String(300))
    #: Certificate serial number, hex.
    serial: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: SHA-256 of the DER certificate, hex: the JWS `kid`.
    fingerprint: Mapped[str] = mapped_column(sa.String(64), unique=True)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    certificate_pem: Mapped[str] = mapped_column(sa.Text)
    key_encrypted: Mapped[bytes] = mapped_column(sa.LargeBinary)
    #: False once replaced (a forced CA re-init) or revoked; kept to verify what it signed.
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
