"""Accounts, passwords and the second factor."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import pyotp
import segno
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from app import crypto
from app.audit import services as audit
from app.auth import sessions
from app.auth.models import STAFF_ROLES, RecoveryCode, Role, SecondFactorReset, User
from app.database import transaction, utcnow
from app.extensions import db

TOTP_PURPOSE = "users.totp_secret"
RECOVERY_CODE_COUNT = 10
ISSUER = "Verity"


class AccountError(ValueError):
    """A refusal with a message fit to show the person."""


def _hasher() -> PasswordHasher:
    config = current_app.config
    return PasswordHasher(
        time_cost=config.get("ARGON2_TIME_COST", 3),
        memory_cost=config.get("ARGON2_MEMORY_COST", 65536),
        parallelism=config.get("ARGON2_PARALLELISM", 4),
    )


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_password_rules(password: str, email: str) -> None:
    if len(password) < 10:
        raise AccountError("Use at least 10 characters for your password.")
    if len(password) > 200:
        raise AccountError("Use at most 200 characters for your password.")
    if password.strip().lower() == email.strip().lower():
        raise AccountError("Your password must not be your email address.")


def find_by_email(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email == normalise_email(email)))


def create_user(*, email: str, password: str, full_name: str, role: Role, pharmacy_id: int | None = None,
                is_demo: bool = False) -> User:
    email = normalise_email(email)
    check_password_rules(password, email)
    if role is Role.PHARMACIST and pharmacy_id is None:
        raise AccountError("A pharmacist must belong to a pharmacy.")
    with transaction() as session:
        if find_by_email(email) is not None:
            raise AccountError("An account with this email address already exists.")
        user = User(email=email, password_hash=hash_password(password), full_name=full_name.strip(), role=role,
                    pharmacy_id=pharmacy_id if role is Role.PHARMACIST else None, is_demo=is_demo)
        session.add(user)
        session.flush()
        audit.record("user.created", subject=("user", user.id), detail={"role": role.value, "demo": is_demo})
    return user


@dataclass
class LoginResult:
    user: User | None
    reason: str | None = None


# A real Argon2 hash of a random password: unknown emails cost as much time as known ones.
_DUMMY_HASH: str | None = None


def authenticate(email: str, password: str) -> LoginResult:
    """Check a password. Every outcome is audited; the message never says which part was wrong."""
    global _DUMMY_HASH
    user = find_by_email(email)
    hasher = _hasher()
    if user is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hasher.hash(secrets.token_hex(16))
        with contextlib.suppress(VerificationError):
            hasher.verify(_DUMMY_HASH, password)
        audit.record("auth.login_failed", detail={"reason": "unknown account"})
        return LoginResult(None, "credentials")
    try:
        hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        audit.record("auth.login_failed", subject=("user", user.id), detail={"reason": "wrong password"})
        return LoginResult(None, "credentials")
    if not user.active:
        audit.record("auth.login_failed", subject=("user", user.id), detail={"reason": "account disabled"})
        return LoginResult(None, "disabled")
    if hasher.check_needs_rehash(user.password_hash):
        with transaction():
            user.password_hash = hasher.hash(password)
    return LoginResult(user)


def record_login(user: User, *, second_factor: str | None) -> None:
    with transaction():
        user.last_login_at = utcnow()
        audit.record("auth.login", subject=("user", user.id),
                     detail={"second_factor": second_factor, "role": user.role.value})


def record_logout(user: User) -> None:
    """Signing out ends every session of the person, on every device (the other browsers are told why)."""
    with transaction():
        ended = sessions.end_all(user, "logout")
        audit.record("auth.logout", subject=("user", user.id), detail={"sessions_ended": ended})


WRONG_CURRENT_PASSWORD = "Your current password is not right."  # noqa: S105 (a message, not a password)


def change_password(user: User, current: str, new: str) -> None:
    """A new password ends every session of the person; the caller starts a fresh one for this browser."""
    try:
        _hasher().verify(user.password_hash, current)
    except (VerificationError, InvalidHashError):
        audit.record("auth.password_change_failed", subject=("user", user.id), detail={"reason": "wrong password"})
        raise AccountError(WRONG_CURRENT_PASSWORD) from None
    check_password_rules(new, user.email)
    if new == current:
        raise AccountError("Choose a new password that is different from your current one.")
    with transaction():
        user.password_hash = hash_password(new)
        user.session_epoch += 1
        ended = sessions.end_all(user, "password_changed")
        audit.record("auth.password_changed", subject=("user", user.id), detail={"sessions_ended": ended})


# Second factor ------------------------------------------------------------------------------

def begin_totp_enrolment(user: User) -> str:
    """Give the user a new (unconfirmed) secret, or the pending one if enrolment already began."""
    if user.has_totp:
        raise AccountError("Two-factor authentication is already set up for this account.")
    with transaction():
        if user.totp_secret_enc is None:
            user.totp_secret_enc = crypto.encrypt(pyotp.random_base32().encode(), TOTP_PURPOSE)
            audit.record("auth.totp_enrolment_started", subject=("user", user.id))
    return totp_secret(user)


def totp_secret(user: User) -> str:
    if user.totp_secret_enc is None:
        raise AccountError("Two-factor authentication has not been set up.")
    return crypto.decrypt(user.totp_secret_enc, TOTP_PURPOSE).decode()


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """An inline SVG of the enrolment QR code (inline markup needs no CSP exception)."""
    return segno.make(uri, error="m").svg_inline(scale=5, border=2, dark="#0b0c0c", light="#ffffff",
                                                 title="QR code for your authenticator app")


def _matching_step(secret: str, code: str, at: float) -> int | None:
    """The time step (within one step either side, for clock drift) whose code equals `code`."""
    code = code.strip().replace(" ", "")
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    step = int(at // totp.interval)
    for candidate in (step - 1, step, step + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


def _accept_code(user: User, code: str, event: str, at: float | None = None) -> bool:
    """True when `code` is right and newer than the last one used; records either outcome.

    The step is claimed with a conditional UPDATE, so two requests racing with the same code
    cannot both succeed.
    """
    step = _matching_step(totp_secret(user), code, time.time() if at is None else at)
    with transaction() as session:
        if step is None:
            audit.record(f"{event}_failed", subject=("user", user.id), detail={"reason": "wrong code"})
            return False
        claimed = session.execute(
            sa.update(User).where(User.id == user.id, User.totp_last_step < step).values(totp_last_step=step)
        ).rowcount
        if not claimed:
            audit.record(f"{event}_failed", subject=("user", user.id), detail={"reason": "code already used"})
            return False
        audit.record(event, subject=("user", user.id), detail={"method": "totp"})
    return True


def confirm_totp_enrolment(user: User, code: str) -> list[str] | None:
    """Turn the second factor on when the code proves the authenticator works.

    Returns the ten recovery codes (shown once, stored only as hashes), or None for a wrong code.
    """
    if user.has_totp:
        raise AccountError("Two-factor authentication is already set up for this account.")
    if not _accept_code(user, code, "auth.totp_enrolment_code"):
        return None
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    with transaction():
        user.totp_confirmed_at = utcnow()
        user.recovery_codes = [RecoveryCode(code_hash=_hash_recovery(c)) for c in codes]
        audit.record("auth.totp_enrolled", subject=("user", user.id))
    return codes


def verify_totp(user: User, code: str, *, at: float | None = None, step_up: bool = False) -> bool:
    return _accept_code(user, code, "auth.step_up" if step_up else "auth.totp_verified", at)


def _new_recovery_code() -> str:
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (0/o, 1/l/i)
    raw = "".join(secrets.choice(alphabet) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _hash_recovery(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace(" ", "").encode()).hexdigest()


def use_recovery_code(user: User, code: str) -> bool:
    """Spend one recovery code. Each works once; the claim is a conditional UPDATE."""
    digest = _hash_recovery(code)
    with transaction() as session:
        claimed = session.execute(
            sa.update(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.code_hash == digest, RecoveryCode.used_at.is_(None))
            .values(used_at=utcnow())
        ).rowcount
        if not claimed:
            audit.record("auth.recovery_code_failed", subject=("user", user.id))
            return False
        left = session.scalar(
            sa.select(sa.func.count()).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        audit.record("auth.recovery_code_used", subject=("user", user.id), detail={"codes_left": left})
    return True


def recovery_codes_left(user: User) -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )


# Administration ----------------------------------------------------------------------------

def change_role(user: User, role: Role, *, pharmacy_id: int | None = None) -> None:
    if role is Role.PHARMACIST and pharmacy_id is None:
        raise AccountError("A pharmacist must belong to a pharmacy.")
    if (user.role is Role.PATIENT) != (role is Role.PATIENT):
        raise AccountError("A patient account cannot become a staff account, or the other way round.")
    with transaction():
        old = user.role
        user.role = role
        user.pharmacy_id = pharmacy_id if role is Role.PHARMACIST else None
        user.session_epoch += 1  # the user signs in again under the new role
        ended = sessions.end_all(user, "role_changed")
        audit.record("user.role_changed", subject=("user", user.id),
                     detail={"from": old.value, "to": role.value, "sessions_ended": ended})


def set_active(user: User, active: bool) -> None:
    with transaction():
        user.active = active
        user.session_epoch += 1
        ended = 0 if active else sessions.end_all(user, "disabled")
        audit.record("user.enabled" if active else "user.disabled", subject=("user", user.id),
                     detail=None if active else {"sessions_ended": ended})


def staff_users() -> list[User]:
    query = sa.select(User).where(User.role.in_(STAFF_ROLES)).order_by(User.role, User.full_name)
    return list(db.session.scalars(query))


def load_session_user(session_id: str) -> User | None:
    """Flask-Login's loader: the id carries the epoch, so a bumped epoch ends old sessions."""
    user_id, _, epoch = session_id.partition(":")
    if not (user_id.isdigit() and epoch.isdigit()):
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_epoch != int(epoch) or not user.active:
        return None
    return user


def age_on(born: dt.date, today: dt.date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


# Second-factor reset: one admin asks, a second admin approves ------------------------------------------

#: An undecided request can no longer be approved after this.
RESET_HOURS = 24
RESET_REASON_MAX = 500


def second_factor_reset(reset_id: int) -> SecondFactorReset | None:
    expire_due_resets()
    return db.session.get(SecondFactorReset, reset_id)


def pending_reset_for(user: User) -> SecondFactorReset | None:
    expire_due_resets()
    return db.session.scalar(sa.select(SecondFactorReset).where(SecondFactorReset.user_id == user.id,
                                                                SecondFactorReset.status == "pending"))


def second_factor_resets(limit: int = 50) -> list[SecondFactorReset]:
    """Waiting requests first (oldest first), then the latest decided ones."""
    expire_due_resets()
    pending = sa.case((SecondFactorReset.status == "pending", 0), else_=1)
    query = (sa.select(SecondFactorReset)
             .order_by(pending, sa.case((SecondFactorReset.status == "pending", SecondFactorReset.requested_at)),
                       SecondFactorReset.requested_at.desc(), SecondFactorReset.id.desc())
             .limit(limit))
    return list(db.session.scalars(query))


def expire_due_resets() -> int:
    """Mark undecided requests older than RESET_HOURS expired (each audited)."""
    now = utcnow()
    due = list(db.session.scalars(sa.select(SecondFactorReset.id).where(
        SecondFactorReset.status == "pending", SecondFactorReset.expires_at <= now)))
    if not due:
        return 0
    expired = 0
    with transaction() as session:
        for reset_id in due:
            claimed = session.execute(
                sa.update(SecondFactorReset)
                .where(SecondFactorReset.id == reset_id, SecondFactorReset.status == "pending")
                .values(status="expired")
            ).rowcount
            if claimed:
                user_id = session.scalar(sa.select(SecondFactorReset.user_id).where(SecondFactorReset.id == reset_id))
                audit.record("auth.second_factor_reset_expired", subject=("user", user_id),
                             detail={"request": reset_id})
                expired += claimed
    return expired


def request_second_factor_reset(user: User, *, by: User, reason: str) -> SecondFactorReset:
    """Admin `by` asks to clear `user`'s second factor; nothing changes until another admin approves."""
    reason = " ".join((reason or "").split())
    if by.role is not Role.ADMIN:
        raise AccountError("Only an admin can ask for a second-factor reset.")
    if not user.is_staff:
        raise AccountError("Second-factor resets here are for staff accounts.")
    if user.id == by.id:
        _refuse_reset(None, user, "own account")
        raise AccountError("You cannot ask for a reset of your own second factor. Ask another admin.")
    if not reason:
        raise AccountError("Say why the second factor needs resetting, and how you checked who asked.")
    if len(reason) > RESET_REASON_MAX:
        raise AccountError(f"Keep the reason to {RESET_REASON_MAX} characters or fewer.")
    expire_due_resets()
    now = utcnow()
    with transaction() as session:
        # Lock the person's row (PostgreSQL; SQLite's write lock serialises anyway): one waiting request at a time.
        session.execute(sa.select(User.id).where(User.id == user.id).with_for_update())
        waiting = session.scalar(sa.select(SecondFactorReset.id).where(SecondFactorReset.user_id == user.id,
                                                                       SecondFactorReset.status == "pending"))
        if waiting is not None:
            raise AccountError("A reset for this person is already waiting for a second admin.")
        reset = SecondFactorReset(user_id=user.id, requested_by_id=by.id, reason=reason, requested_at=now,
                                  expires_at=now + dt.timedelta(hours=RESET_HOURS), status="pending")
        session.add(reset)
        session.flush()
        audit.record("auth.second_factor_reset_requested", subject=("user", user.id), detail={"request": reset.id})
    return reset


class ResetRefused(AccountError):
    """`admin` may not decide this request: 403 for who they are, 409 when it is no longer waiting."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def reset_refusal(reset: SecondFactorReset, admin: User) -> str | None:
    """Why `admin` may not decide `reset`, or None when they may."""
    if admin.role is not Role.ADMIN:
        return "Only an admin can decide a second-factor reset."
    if reset.status != "pending":
        return "This request has already been decided." if reset.status != "expired" else (
            "This request expired before anyone decided it. Ask for a new one if it is still needed.")
    if admin.id == reset.requested_by_id:
        return "You asked for this reset, so another admin must decide it."
    if admin.id == reset.user_id:
        return "This reset is for your own account, so another admin must decide it."
    return None


def _refuse_reset(reset: SecondFactorReset | None, user: User, why: str) -> None:
    audit.record("auth.second_factor_reset_refused", subject=("user", user.id),
                 detail={"request": reset.id if reset else None, "reason": why})


def _check_may_decide(reset: SecondFactorReset, admin: User) -> None:
    expire_due_resets()
    db.session.refresh(reset)
    refusal = reset_refusal(reset, admin)
    if refusal is None:
        return
    if reset.status != "pending":
        raise ResetRefused(refusal, 409)
    if admin.id in (reset.requested_by_id, reset.user_id):
        _refuse_reset(reset, reset.user, "own request" if admin.id == reset.requested_by_id else "own account")
    raise ResetRefused(refusal, 403)


def _claim_decision(session, reset: SecondFactorReset, admin: User, status: str, note: str | None) -> None:
    now = utcnow()
    claimed = session.execute(
        sa.update(SecondFactorReset)
        .where(SecondFactorReset.id == reset.id, SecondFactorReset.status == "pending",
               SecondFactorReset.expires_at > now)
        .values(status=status, decided_by_id=admin.id, decided_at=now, decision_note=note)
    ).rowcount
    if not claimed:  # another admin decided it first, or it expired a moment ago
        raise ResetRefused("This request has already been decided or has expired.", 409)


def approve_second_factor_reset(reset: SecondFactorReset, *, by: User) -> None:
    """The second admin agrees: the person's authenticator, recovery codes (and passkeys) are cleared,
    every session of theirs ends, and they set up a second factor again at their next sign-in."""
    _check_may_decide(reset, by)
    with transaction() as session:
        _claim_decision(session, reset, by, "approved", None)
        user = session.get(User, reset.user_id)
        user.totp_secret_enc = None
        user.totp_confirmed_at = None
        codes = session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id)).rowcount
        passkeys = _delete_passkeys(session, user)
        user.session_epoch += 1
        ended = sessions.end_all(user, "second_factor_reset")
        audit.record("auth.second_factor_reset_approved", subject=("user", user.id),
                     detail={"request": reset.id, "requested_by": reset.requested_by_id, "recovery_codes": codes,
                             "passkeys": passkeys, "sessions_ended": ended})
    db.session.expire_all()


def decline_second_factor_reset(reset: SecondFactorReset, *, by: User, note: str) -> None:
    note = " ".join((note or "").split())
    if not note:
        raise AccountError("Say why you are declining the reset.")
    if len(note) > RESET_REASON_MAX:
        raise AccountError(f"Keep the note to {RESET_REASON_MAX} characters or fewer.")
    _check_may_decide(reset, by)
    with transaction() as session:
        _claim_decision(session, reset, by, "declined", note)
        audit.record("auth.second_factor_reset_declined", subject=("user", reset.user_id),
                     detail={"request": reset.id, "requested_by": reset.requested_by_id})
    db.session.expire_all()


def _delete_passkeys(session, user: User) -> int:
    """Passkeys go with the rest of the second factor, where that feature is installed (app/auth/passkeys.py)."""
    from app.auth import models

    passkey = getattr(models, "Passkey", None)
    if passkey is None:
        return 0
    return session.execute(sa.delete(passkey).where(passkey.user_id == user.id)).rowcount
