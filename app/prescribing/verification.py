"""What the verification page says about a prescription: is it authentic, who signed it, may it be supplied."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from app.auth.models import User
from app.database import utcnow
from app.extensions import db
from app.prescribing import pdf, pki, states
from app.prescribing.models import Prescription

S = states.State
SUPPLIED = frozenset({S.DISPENSED, S.DISPATCHED, S.DELIVERED})


@dataclass(frozen=True)
class Verdict:
    #: The stored PDF's signature and the JWS both verify against the clinic's keys.
    authentic: bool
    signer: str | None
    signed_at: dt.datetime | None
    valid_until: dt.datetime | None
    #: One word for the pharmacist: valid, cancelled, superseded, expired, dispensed, rejected, not signed.
    status: str
    #: A sentence saying what that means for supply.
    meaning: str
    #: True when a pharmacy may go on to supply (subject to the paper original where it is required).
    suppliable: bool


def jws_valid(prescription: Prescription) -> bool:
    if not prescription.jws:
        return False
    try:
        jws.deserialize_compact(prescription.jws, KeySet.import_key_set(pki.jwks()), algorithms=["ES256"])
    except (JoseError, ValueError):
        return False
    return True


def verdict(prescription: Prescription, *, now: dt.datetime | None = None) -> Verdict:
    now = now or utcnow()
    state = states.state_of(prescription)
    signer = db.session.get(User, prescription.prescriber_id)
    if prescription.signed_at is None or prescription.pdf is None:
        return Verdict(False, None, None, None, "not signed", "This prescription has not been signed.", False)
    checked = pdf.check(prescription.pdf, expected_sha256=prescription.pdf_sha256)
    authentic = checked.valid and checked.matches_record and checked.signer_fingerprint == \
        prescription.signer_fingerprint and jws_valid(prescription)
    name = signer.full_name if signer else None
    if not authentic:
        return Verdict(False, name, prescription.signed_at, prescription.valid_until, "not authentic",
                       "The signature on record does not verify. Do not supply; contact the clinic.", False)
    if state is S.CANCELLED:
        status, meaning = "cancelled", "The prescriber cancelled this prescription. Do not supply."
    elif state is S.SUPERSEDED:
        status, meaning = "superseded", "A newer prescription replaced this one. Do not supply this one."
    elif state is S.REJECTED:
        status, meaning = "rejected", "The pharmacy rejected this prescription. Do not supply."
    elif state in SUPPLIED:
        status, meaning = "dispensed", "This prescription has already been dispensed. Do not supply it again."
    elif state is S.EXPIRED or (prescription.valid_until and prescription.valid_until <= now):
        status, meaning = "expired", "The 28 days of validity have passed. Do not supply."
    else:
        status = "valid"
        meaning = ("Genuine and in date. The paper FP10PCD is the legal original: supply only once it has arrived "
                   "and matches." if prescription.paper_original and prescription.paper_received_at is None
                   else "Genuine and in date.")
    return Verdict(True, name, prescription.signed_at, prescription.valid_until, status, meaning, status == "valid")
