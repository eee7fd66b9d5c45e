"""Partner pharmacies: the directory, how each connects (portal or API), its API keys and signing
secret, and the patient's nomination.

The rest of the domain: `inventory` (stock, allocation, the CD register, live stock for the
formulary), `workflow` (every pharmacy-side step, through the prescription state machine),
`delivery` (the outbox handler that hands prescriptions over), `shipping` (carriers, tracking,
courier webhooks), `stockouts` (alternatives, superseding, redirecting), `pipeline` (the board,
service levels, the digest, timelines). Other domains call this module and those.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app import crypto
from app.audit import services as audit
from app.database import transaction, utcnow
from app.extensions import db
from app.pharmacy.models import API, CONNECTIONS, PORTAL, Pharmacy, PharmacyApiKey
from app.pharmacy.settings import setting

KEY_PREFIX = "vpk_"
_KEY_SHAPE = re.compile(r"^(vpk_[0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
#: Active keys per pharmacy: the current one and, during a rotation, the one it replaces.
MAX_ACTIVE_KEYS = 2


class PharmacyError(ValueError):
    """Field -> message for what is wrong; the message is fit to show the person."""

    def __init__(self, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.errors = errors or {}


class ApiAuthError(Exception):
    """A request to the pharmacy API without valid credentials (401) or for a pharmacy that may not use it (403)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


# The directory ------------------------------------------------------------------------------

def active_pharmacies() -> list[Pharmacy]:
    return list(db.session.scalars(sa.select(Pharmacy).where(Pharmacy.active).order_by(Pharmacy.name)))


def all_pharmacies() -> list[Pharmacy]:
    return list(db.session.scalars(sa.select(Pharmacy).order_by(Pharmacy.active.desc(), Pharmacy.name)))


def get(pharmacy_id: int) -> Pharmacy | None:
    return db.session.get(Pharmacy, pharmacy_id)


def by_gphc(gphc_number: str) -> Pharmacy | None:
    return db.session.scalar(sa.select(Pharmacy).where(Pharmacy.gphc_number == gphc_number))


def is_api(pharmacy: Pharmacy | None) -> bool:
    return pharmacy is not None and pharmacy.connection == API


def clean(values: dict[str, Any]) -> dict[str, Any]:
    """Validate a pharmacy's details (the admin form, the CLI, the demo)."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    name = " ".join(str(values.get("name") or "").split())
    if not name or len(name) > 200:
        errors["name"] = "Enter the pharmacy's name (up to 200 characters)"
    out["name"] = name
    number = str(values.get("gphc_number") or "").strip()
    if not (len(number) == 7 and number.isdigit()):
        errors["gphc_number"] = "A GPhC premises number has 7 digits"
    out["gphc_number"] = number
    address = str(values.get("address") or "").strip()
    if not address or len(address) > 500:
        errors["address"] = "Enter the pharmacy's address"
    out["address"] = address
    for key, limit in (("contact_name", 200), ("contact_phone", 30)):
        text = " ".join(str(values.get(key) or "").split())
        if len(text) > limit:
            errors[key] = f"Use at most {limit} characters"
        out[key] = text or None
    email = str(values.get("contact_email") or "").strip()
    if email and (len(email) > 254 or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email)):
        errors["contact_email"] = "Enter an email address like name@example.com"
    out["contact_email"] = email or None
    connection = str(values.get("connection") or PORTAL).strip()
    if connection not in CONNECTIONS:
        errors["connection"] = "Choose how the pharmacy connects: the Verity portal or its own system (API)"
    out["connection"] = connection
    url = str(values.get("webhook_url") or "").strip()
    if url:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 500:
            errors["webhook_url"] = "Enter the webhook address as an https:// URL"
    out["webhook_url"] = url or None
    fingerprint = str(values.get("client_cert_sha256") or "").replace(":", "").strip().lower()
    if fingerprint and not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
        errors["client_cert_sha256"] = "Enter the certificate's SHA-256 fingerprint (64 hex digits), or leave it empty"
    out["client_cert_sha256"] = fingerprint or None
    if errors:
        raise PharmacyError("Check the pharmacy's details.", errors)
    return out


def create(*, name: str, gphc_number: str, address: str, **extra: Any) -> Pharmacy:
    """Add a partner pharmacy (portal by default)."""
    values = clean({"name": name, "gphc_number": gphc_number, "address": address, **extra})
    with transaction() as session:
        if by_gphc(values["gphc_number"]) is not None:
            raise PharmacyError("A pharmacy with this GPhC number is already a partner.",
                                {"gphc_number": "This GPhC number is already registered"})
        pharmacy = Pharmacy(**values)
        session.add(pharmacy)
        session.flush()
        audit.record("pharmacy.created", subject=("pharmacy", pharmacy.id),
                     detail={"gphc_number": pharmacy.gphc_number, "connection": pharmacy.connection})
    return pharmacy


def register_partner(values: dict[str, Any]) -> Pharmacy:
    """The administrator's "add a partner pharmacy": the pharmacy and its data-sharing consent text."""
    from app.consent import services as consents

    pharmacy = create(**values)
    consents.load_defaults()  # publishes version 1 of this pharmacy's sharing consent (idempotent)
    return pharmacy


def update(pharmacy: Pharmacy, values: dict[str, Any]) -> Pharmacy:
    data = clean(values)
    with transaction():
        other = by_gphc(data["gphc_number"])
        if other is not None and other.id != pharmacy.id:
            raise PharmacyError("Another pharmacy has this GPhC number.",
                                {"gphc_number": "This GPhC number belongs to another pharmacy"})
        changed = sorted(k for k, v in data.items() if getattr(pharmacy, k) != v)
        for key, value in data.items():
            setattr(pharmacy, key, value)
        audit.record("pharmacy.updated", subject=("pharmacy", pharmacy.id), detail={"fields": changed})
    return pharmacy


def set_active(pharmacy: Pharmacy, active: bool) -> None:
    with transaction():
        pharmacy.active = active
        audit.record("pharmacy.reinstated" if active else "pharmacy.suspended", subject=("pharmacy", pharmacy.id))


# The signing secret -------------------------------------------------------------------------

def _secret_purpose(pharmacy: Pharmacy) -> str:
    return f"pharmacy-webhook-secret:{pharmacy.id}"


def signing_secret(pharmacy: Pharmacy) -> str | None:
    """The HMAC secret shared with an API pharmacy (decrypted only to sign or check a request)."""
    if pharmacy.webhook_secret_enc is None:
        return None
    return crypto.decrypt(pharmacy.webhook_secret_enc, _secret_purpose(pharmacy)).decode()


def rotate_signing_secret(pharmacy: Pharmacy) -> str:
    """A new HMAC secret, returned once to give to the pharmacy; the old one stops working at once."""
    secret = secrets.token_urlsafe(32)
    with transaction():
        pharmacy.webhook_secret_enc = crypto.encrypt(secret.encode(), _secret_purpose(pharmacy))
        audit.record("pharmacy.signing_secret_rotated", subject=("pharmacy", pharmacy.id))
    return secret


# API keys -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class IssuedKey:
    row: PharmacyApiKey
    #: The whole key: shown once, never stored.
    key: str


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_keys(pharmacy: Pharmacy) -> list[PharmacyApiKey]:
    return list(db.session.scalars(sa.select(PharmacyApiKey).where(PharmacyApiKey.pharmacy_id == pharmacy.id)
                                   .order_by(PharmacyApiKey.id.desc())))


def active_keys(pharmacy: Pharmacy, now: dt.datetime | None = None) -> list[PharmacyApiKey]:
    now = now or utcnow()
    return [k for k in api_keys(pharmacy) if k.revoked_at is None and k.expires_at > now]


def issue_api_key(pharmacy: Pharmacy, *, now: dt.datetime | None = None) -> IssuedKey:
    """A new key. The newest earlier key keeps working for the overlap period (so the pharmacy can
    switch without downtime); any older one is revoked, so at most two are ever active."""
    now = now or utcnow()
    prefix = KEY_PREFIX + secrets.token_hex(6)
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    overlap = dt.timedelta(days=int(setting("PHARMACY_API_KEY_OVERLAP_DAYS")))
    with transaction() as session:
        current = active_keys(pharmacy, now)
        for index, old in enumerate(current):
            if index < MAX_ACTIVE_KEYS - 1:
                old.expires_at = min(old.expires_at, now + overlap)
            else:
                old.revoked_at = now
        row = PharmacyApiKey(pharmacy_id=pharmacy.id, prefix=prefix, secret_sha256=_digest(key), created_at=now,
                             expires_at=now + dt.timedelta(days=int(setting("PHARMACY_API_KEY_DAYS"))))
        session.add(row)
        session.flush()
        audit.record("pharmacy.api_key_issued", subject=("pharmacy", pharmacy.id),
                     detail={"prefix": prefix, "replaced": [k.prefix for k in current]})
    return IssuedKey(row, key)


def revoke_api_key(pharmacy: Pharmacy, key_id: int) -> PharmacyApiKey:
    row = db.session.get(PharmacyApiKey, key_id)
    if row is None or row.pharmacy_id != pharmacy.id:
        raise PharmacyError("That key does not belong to this pharmacy.")
    with transaction():
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        audit.record("pharmacy.api_key_revoked", subject=("pharmacy", pharmacy.id), detail={"prefix": row.prefix})
    return row


def authenticate(authorization: str | None, *, client_cert_sha256: str | None = None,
                 now: dt.datetime | None = None) -> Pharmacy:
    """The pharmacy a request's `Authorization: Bearer <key>` belongs to, or ApiAuthError.

    mTLS-ready: when the pharmacy has a client certificate on file and the proxy passes the presented
    certificate's SHA-256 (PHARMACY_MTLS_HEADER), the two must match as well as the key.
    """
    now = now or utcnow()
    scheme, _, raw = (authorization or "").partition(" ")
    match = _KEY_SHAPE.match(raw.strip()) if scheme.lower() == "bearer" else None
    if match is None:
        raise ApiAuthError(401, "send the pharmacy's API key as `Authorization: Bearer vpk_...`")
    row = db.session.scalar(sa.select(PharmacyApiKey).where(PharmacyApiKey.prefix == match.group(1)))
    if row is None or not hmac.compare_digest(row.secret_sha256, _digest(raw.strip())):
        raise ApiAuthError(401, "the API key is not valid")
    if row.revoked_at is not None or row.expires_at <= now:
        raise ApiAuthError(401, "the API key was revoked or has expired: use the pharmacy's current key")
    pharmacy = db.session.get(Pharmacy, row.pharmacy_id)
    if pharmacy is None or not pharmacy.active:
        raise ApiAuthError(403, "this pharmacy is not an active partner")
    if pharmacy.connection != API:
        raise ApiAuthError(403, "this pharmacy works in the Verity pharmacy portal, not through the API")
    if pharmacy.client_cert_sha256 and setting("PHARMACY_MTLS_HEADER"):
        presented = (client_cert_sha256 or "").replace(":", "").strip().lower()
        if not hmac.compare_digest(presented, pharmacy.client_cert_sha256.lower()):
            raise ApiAuthError(401, "the client certificate is not this pharmacy's")
    if row.last_used_at is None or now - row.last_used_at > dt.timedelta(minutes=1):
        with transaction():
            row.last_used_at = now  # at most once a minute: not a write per request
    return pharmacy


def prune_inbound_events(now: dt.datetime | None = None, *, keep: dt.timedelta = dt.timedelta(days=2)) -> int:
    """Forget inbound keys and signatures long past the signature window: a request that old is refused for its
    timestamp anyway. Two days keep the answer for a sender's late retries of the same key."""
    from app.pharmacy.models import InboundEvent

    cutoff = (now or utcnow()) - keep
    with transaction() as session:
        return session.execute(sa.delete(InboundEvent).where(InboundEvent.received_at < cutoff)).rowcount or 0


# The patient's nomination -------------------------------------------------------------------

@dataclass(frozen=True)
class Nomination:
    pharmacy: Pharmacy
    #: True when the patient still has to agree to share their prescriptions with it.
    needs_consent: bool


def nominate(patient, pharmacy_id: int) -> Nomination:
    """The patient chooses the pharmacy their prescriptions go to. Prescriptions already signed stay
    with the pharmacy they were sent to (a stock-out can redirect one: see stockouts.redirect)."""
    from app.consent import services as consents
    from app.patients import services as patients

    pharmacy = get(pharmacy_id)
    if pharmacy is None or not pharmacy.active:
        raise PharmacyError("Choose one of the partner pharmacies listed.", {"pharmacy_id": "Choose a pharmacy"})
    if patient.pharmacy_id != pharmacy.id:
        patients.nominate_pharmacy(patient, pharmacy.id)
    if consents.current("pharmacy_sharing", pharmacy.id) is None:
        consents.load_defaults()  # a pharmacy added without its consent text: publish it now
    return Nomination(pharmacy, not consents.has_consent(patient, "pharmacy_sharing", pharmacy.id))


def patient_may_share_with(patient, pharmacy_id: int) -> bool:
    from app.consent import services as consents

    return consents.has_consent(patient, "pharmacy_sharing", pharmacy_id)


# The pharmacist's queue ---------------------------------------------------------------------------

QUEUE_PAGE_SIZE = 50


@dataclass(frozen=True)
class QueuePage:
    #: (prescription, the patient's user) for this page, newest in its state first.
    rows: list
    #: How many prescriptions are in each state across the whole queue (not only this page).
    counts: dict[str, int]
    page: int
    pages: int


def queue_page(pharmacy_id: int, statuses, *, page: int = 1, per_page: int = QUEUE_PAGE_SIZE) -> QueuePage:
    """One page of a pharmacy's queue in three statements whatever its length: the counts by state, the
    page's prescriptions joined to their patients' names, and their items. Only what the queue shows is read
    (never the signed PDF or the signature)."""
    from sqlalchemy.orm import load_only, selectinload

    from app.auth.models import User
    from app.patients.models import Patient
    from app.prescribing.models import Prescription, PrescriptionItem

    wanted = [str(getattr(s, "value", s)) for s in statuses]
    mine = (Prescription.pharmacy_id == pharmacy_id, Prescription.status.in_(wanted),
            Prescription.signed_at.is_not(None))
    counts = {status: n for status, n in db.session.execute(
        sa.select(Prescription.status, sa.func.count()).where(*mine).group_by(Prescription.status))}
    pages = max(1, -(-sum(counts.values()) // per_page))
    page = min(max(page, 1), pages)
    query = sa.select(Prescription, User) \
        .join(Patient, Patient.id == Prescription.patient_id).join(User, User.id == Patient.user_id) \
        .where(*mine).order_by(Prescription.status_changed_at.desc(), Prescription.id.desc()) \
        .limit(per_page).offset((page - 1) * per_page) \
        .options(load_only(Prescription.id, Prescription.public_id, Prescription.patient_id, Prescription.status,
                           Prescription.status_changed_at, Prescription.paper_original,
                           Prescription.paper_received_at),
                 load_only(User.id, User.full_name),
                 selectinload(Prescription.items).load_only(PrescriptionItem.line, PrescriptionItem.product_name,
                                                            PrescriptionItem.quantity_text))
    rows = [(p, user) for p, user in db.session.execute(query).all()]
    return QueuePage(rows, counts, page, pages)
