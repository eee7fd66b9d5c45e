"""Passkeys (WebAuthn): staff register them, then use them as their second factor at sign-in and for
step-up (signing a prescription). NIST SP 800-63B-4 asks for a phishing-resistant option: the browser
binds each assertion to our origin, so a look-alike site gets nothing it can replay here.

A ceremony has two halves. `begin_*` makes the options the browser passes to navigator.credentials
and keeps the challenge in the Flask session; `finish_*` takes what the browser sent back, checks it
with py_webauthn against that challenge, our relying party id and our origins, and records the
outcome. A challenge is used once (taken out of the session whichever way the check goes) and
expires after CHALLENGE_SECONDS. The session is a signed cookie, so an old copy of it could bring a
used challenge back: an assertion also has to answer a challenge issued after the passkey's last
accepted use, claimed with a conditional UPDATE (as TOTP steps are).

Every registration, removal and assertion, accepted or refused, is audited. Failed assertions count
against the same attempt limit as TOTP codes: the views that take them (auth.two_factor, auth.step_up,
prescribing's signing) mark them with `g.attempt_failed`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app, session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app.audit import services as audit
from app.auth.models import Passkey, User
from app.database import transaction, utcnow
from app.extensions import db

#: How long a challenge can be answered: enough to find the phone or touch the key, no more.
CHALLENGE_SECONDS = 300
#: What the browser is told to wait for the person (it may stop sooner).
CEREMONY_TIMEOUT_MS = 120_000
SESSION_KEY = "passkey_challenge"
MAX_PASSKEYS = 10
NAME_LENGTH = 60
#: The spec caps credential ids at 1023 bytes; a longer one is not from a real authenticator.
MAX_CREDENTIAL_ID = 1023
#: Largest JSON the browser sends back for one ceremony (attestation objects are a few hundred bytes).
MAX_RESPONSE_CHARS = 64 * 1024

LOGIN, STEP_UP, REGISTRATION = "login", "step-up", "registration"
PURPOSES = (LOGIN, STEP_UP)


class PasskeyError(ValueError):
    """A refusal. `str()` is fit to show the person; `reason` is the short cause for the audit trail;
    `status` the HTTP status a JSON answer carries."""

    def __init__(self, message: str, reason: str, status: int = 400):
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str
    origins: tuple[str, ...]


def relying_party() -> RelyingParty:
    """The RP id and origins from configuration, or derived from BASE_URL.

    WebAuthn refuses IP addresses as RP ids; a loopback BASE_URL (the development default,
    http://127.0.0.1:5000) becomes localhost, which browsers treat as a secure context over plain HTTP.
    """
    config = current_app.config
    base = urlsplit(config.get("BASE_URL") or "")
    host = base.hostname or ""
    derived_id, derived_origin = host, f"{base.scheme}://{base.netloc}" if host else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        derived_id = "localhost" if address.is_loopback else ""
        port = f":{base.port}" if base.port else ""
        derived_origin = f"{base.scheme}://localhost{port}" if address.is_loopback else ""
    rp_id = (config.get("WEBAUTHN_RP_ID") or derived_id).strip().lower()
    origins = tuple(o.strip().rstrip("/") for o in (config.get("WEBAUTHN_ORIGINS") or derived_origin).split(",")
                    if o.strip())
    return RelyingParty(rp_id, config.get("CLINIC_NAME") or "Verity", origins)


def _rp() -> RelyingParty:
    rp = relying_party()
    if not rp.id or not rp.origins:
        raise PasskeyError("Passkeys are not available on this server. Use a code from your authenticator app.",
                           "not configured", 503)
    return rp


# Reading ------------------------------------------------------------------------------------

def for_user(user: User) -> list[Passkey]:
    return list(db.session.scalars(sa.select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id)))


def has_passkeys(user: User) -> bool:
    return db.session.scalar(sa.select(sa.func.count()).where(Passkey.user_id == user.id)) > 0


def get(user: User, passkey_id: int) -> Passkey | None:
    """The user's own passkey with this id (None for anyone else's)."""
    passkey = db.session.get(Passkey, passkey_id)
    return passkey if passkey is not None and passkey.user_id == user.id else None


# Challenges ---------------------------------------------------------------------------------

def _remember(user: User, purpose: str, challenge: bytes) -> None:
    session[SESSION_KEY] = {"purpose": purpose, "user": user.id, "challenge": bytes_to_base64url(challenge),
                            "issued": time.time()}


def _take_challenge(user: User, purpose: str) -> tuple[bytes, float]:
    """The challenge of this user's pending ceremony for `purpose`, removed from the session: used once."""
    pending = session.pop(SESSION_KEY, None)
    if not isinstance(pending, dict) or pending.get("purpose") != purpose or pending.get("user") != user.id:
        raise PasskeyError("Start again: this page has no passkey request waiting.", "no challenge")
    issued = float(pending.get("issued") or 0)
    if time.time() - issued > CHALLENGE_SECONDS:
        raise PasskeyError("That took too long. Try again.", "challenge expired")
    return base64url_to_bytes(pending["challenge"]), issued


def _user_handle(user: User) -> bytes:
    """A stable handle for the user on the authenticator that is not their email or database id."""
    return hashlib.sha256(f"verity-webauthn-user:{user.id}".encode()).digest()


def _credential(raw: str | dict[str, Any]) -> dict[str, Any]:
    """The browser's JSON, as a dict, or a clear refusal (never an exception from deep in a parser)."""
    if isinstance(raw, str):
        if len(raw) > MAX_RESPONSE_CHARS:
            raise PasskeyError("The passkey response could not be read.", "response too large")
        try:
            raw = json.loads(raw)
        except ValueError:
            raise PasskeyError("The passkey response could not be read.", "malformed JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("rawId"), str) or not isinstance(raw.get("id"), str):
        raise PasskeyError("The passkey response could not be read.", "malformed credential")
    return raw


def _raw_id(credential: dict[str, Any]) -> bytes:
    try:
        raw_id = base64url_to_bytes(credential["rawId"])
    except (ValueError, TypeError):
        raise PasskeyError("The passkey response could not be read.", "malformed credential id") from None
    if not raw_id or len(raw_id) > MAX_CREDENTIAL_ID:
        raise PasskeyError("The passkey response could not be read.", "malformed credential id")
    return raw_id


def _reason(exc: Exception) -> str:
    """py_webauthn's message, shortened for the audit trail (it names no person, only what failed)."""
    text = str(exc) or type(exc).__name__
    if "sign count" in text:
        return "sign count did not increase"
    if "origin" in text:
        return "wrong origin"
    if "RP ID" in text:
        return "wrong relying party"
    if "challenge" in text:
        return "wrong challenge"
    if "signature" in text:
        return "bad signature"
    return text[:120]


# Registration -------------------------------------------------------------------------------

def begin_registration(user: User) -> str:
    """Options for navigator.credentials.create(), as JSON; remembers the challenge."""
    rp = _rp()
    if len(for_user(user)) >= MAX_PASSKEYS:
        raise PasskeyError(f"You have {MAX_PASSKEYS} passkeys, the most an account can have. Remove one first.",
                           "too many passkeys")
    options = generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_id=_user_handle(user), user_name=user.email,
        user_display_name=user.full_name, timeout=CEREMONY_TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED),
        # The same authenticator twice would be one factor under two names.
        exclude_credentials=[_descriptor(p) for p in for_user(user)],
    )
    _remember(user, REGISTRATION, options.challenge)
    return options_to_json(options)


def clean_name(name: object) -> str:
    text = " ".join(str(name or "").split())
    if not text:
        raise PasskeyError("Give the passkey a name, like “Work laptop”.", "no name")
    if len(text) > NAME_LENGTH:
        raise PasskeyError(f"Use at most {NAME_LENGTH} characters for the name.", "name too long")
    return text


def finish_registration(user: User, raw: str | dict[str, Any], name: object) -> Passkey:
    """Check the browser's attestation ('none' is enough: we trust the person who is signed in with a fresh
    second factor, not the make of their device) and store the passkey."""
    try:
        label = clean_name(name)
        rp = _rp()
        challenge, _issued = _take_challenge(user, REGISTRATION)
        credential = _credential(raw)
        raw_id = _raw_id(credential)
        try:
            verified = verify_registration_response(credential=credential, expected_challenge=challenge,
                                                    expected_rp_id=rp.id, expected_origin=list(rp.origins))
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            raise PasskeyError("Your passkey could not be checked. Try again.", _reason(exc)) from None
        if verified.credential_id != raw_id:
            raise PasskeyError("Your passkey could not be checked. Try again.", "credential id mismatch")
        if db.session.scalar(sa.select(Passkey.id).where(Passkey.credential_id == verified.credential_id)):
            raise PasskeyError("This passkey is already registered.", "already registered", 409)
    except PasskeyError as exc:
        audit.record("passkey.registration_failed", subject=("user", user.id), detail={"reason": exc.reason})
        raise
    transports = _transports(credential)
    with transaction() as tx:
        passkey = Passkey(user_id=user.id, credential_id=verified.credential_id,
                          public_key=verified.credential_public_key, sign_count=verified.sign_count,
                          transports=",".join(transports), name=label)
        tx.add(passkey)
        tx.flush()
        audit.record("passkey.registered", subject=("user", user.id),
                     detail={"passkey_id": passkey.id, "user_verified": verified.user_verified,
                             "device_type": verified.credential_device_type.value})
    return passkey


def _transports(credential: dict[str, Any]) -> list[str]:
    response = credential.get("response")
    listed = response.get("transports") if isinstance(response, dict) else None
    known = {t.value for t in AuthenticatorTransport}
    return [t for t in listed if isinstance(t, str) and t in known][:8] if isinstance(listed, list) else []


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = [AuthenticatorTransport(t) for t in passkey.transports.split(",") if t]
    return PublicKeyCredentialDescriptor(id=passkey.credential_id, transports=transports or None)


def remove(user: User, passkey: Passkey) -> None:
    if passkey.user_id != user.id:
        raise PasskeyError("That passkey is not yours.", "not the owner", 404)
    with transaction() as tx:
        passkey_id = passkey.id
        tx.delete(passkey)
        audit.record("passkey.removed", subject=("user", user.id), detail={"passkey_id": passkey_id})


# Authentication -----------------------------------------------------------------------------

def begin_authentication(user: User, purpose: str) -> str:
    """Options for navigator.credentials.get() allowing only this user's passkeys, as JSON."""
    if purpose not in PURPOSES:
        raise PasskeyError("Unknown passkey request.", "unknown purpose")
    rp = _rp()
    passkeys = for_user(user)
    if not passkeys:
        raise PasskeyError("You have no passkey. Use a code from your authenticator app.", "no passkeys", 404)
    options = generate_authentication_options(rp_id=rp.id, timeout=CEREMONY_TIMEOUT_MS,
                                              allow_credentials=[_descriptor(p) for p in passkeys],
                                              user_verification=UserVerificationRequirement.PREFERRED)
    _remember(user, purpose, options.challenge)
    return options_to_json(options)


def finish_authentication(user: User, raw: str | dict[str, Any], purpose: str) -> Passkey:
    """Check an assertion for `purpose` (LOGIN or STEP_UP); returns the passkey used.

    Audited as auth.passkey_verified (sign-in) or auth.step_up (method passkey), or auth.passkey_failed
    with the reason. The caller marks the second factor given.
    """
    passkey: Passkey | None = None
    try:
        if purpose not in PURPOSES:
            raise PasskeyError("Unknown passkey request.", "unknown purpose")
        rp = _rp()
        challenge, issued = _take_challenge(user, purpose)
        credential = _credential(raw)
        raw_id = _raw_id(credential)
        passkey = db.session.scalar(sa.select(Passkey).where(Passkey.credential_id == raw_id))
        if passkey is None or passkey.user_id != user.id:
            # Someone else's passkey proves nothing about this account.
            passkey = None
            raise PasskeyError("That passkey is not registered to your account.", "unknown credential")
        try:
            verified = verify_authentication_response(
                credential=credential, expected_challenge=challenge, expected_rp_id=rp.id,
                expected_origin=list(rp.origins), credential_public_key=passkey.public_key,
                credential_current_sign_count=passkey.sign_count)
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            raise PasskeyError("Your passkey could not be checked. Try again, or use a code from your "
                               "authenticator app.", _reason(exc)) from None
        _claim(passkey, verified.new_sign_count, issued)
    except PasskeyError as exc:
        detail: dict[str, Any] = {"purpose": purpose, "reason": exc.reason}
        if passkey is not None:
            detail["passkey_id"] = passkey.id
        audit.record("auth.passkey_failed", subject=("user", user.id), detail=detail)
        raise
    if purpose == STEP_UP:
        audit.record("auth.step_up", subject=("user", user.id), detail={"method": "passkey", "passkey_id": passkey.id})
    else:
        audit.record("auth.passkey_verified", subject=("user", user.id), detail={"passkey_id": passkey.id})
    return passkey


def _claim(passkey: Passkey, new_sign_count: int, issued: float) -> None:
    """Move the counter and the last use forward, only if no other assertion did since the challenge was
    issued: a conditional UPDATE, so two requests racing with one assertion cannot both pass."""
    issued_at = dt.datetime.fromtimestamp(issued, dt.UTC)
    with transaction() as tx:
        claimed = tx.execute(
            sa.update(Passkey)
            .where(Passkey.id == passkey.id, Passkey.sign_count == passkey.sign_count,
                   sa.or_(Passkey.last_used_at.is_(None), Passkey.last_used_at < issued_at))
            .values(sign_count=new_sign_count, last_used_at=utcnow())
        ).rowcount
    if not claimed:
        raise PasskeyError("That passkey response was already used. Try again.", "replayed")
    db.session.refresh(passkey)
