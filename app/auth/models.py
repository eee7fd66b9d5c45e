from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.database import UTCDateTime, utcnow
from app.extensions import db


class Role(enum.StrEnum):
    PATIENT = "patient"
    CLINICIAN = "clinician"
    RECEPTION = "reception"
    PHARMACIST = "pharmacist"
    ADMIN = "admin"

    @property
    def is_staff(self) -> bool:
        return self is not Role.PATIENT

    @property
    def label(self) -> str:
        return self.value.capitalize()


STAFF_ROLES = frozenset(r for r in Role if r.is_staff)


class User(UserMixin, db.Model):
    __tablename__ = "users"
    #: Patient search matches part of a name or email (a leading wildcard): trigram indexes on PostgreSQL.
    __table_args__ = (
        sa.Index("ix_users_full_name_trgm", sa.func.lower(sa.text("full_name")), postgresql_using="gin",
                 postgresql_ops={"lower": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
        sa.Index("ix_users_email_trgm", "email", postgresql_using="gin",
                 postgresql_ops={"email": "gin_trgm_ops"}).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stored lower-cased; the login identifier.
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    full_name: Mapped[str] = mapped_column(sa.String(200))
    #: Indexed: staff lists by role stay cheap among many patients.
    role: Mapped[Role] = mapped_column(
        sa.Enum(Role, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e]), index=True)
    #: False once an admin disables the account; a disabled user cannot sign in.
    active: Mapped[bool] = mapped_column(default=True)
    #: Created by the demo loader; the server refuses to start outside demo mode while any exist.
    is_demo: Mapped[bool] = mapped_column(default=False)
    #: Bumped on password change, role change or disablement: every existing session ends.
    session_epoch: Mapped[int] = mapped_column(default=0)
    #: The pharmacy a pharmacist works for (None for everyone else).
    pharmacy_id: Mapped[int | None] = mapped_column(sa.ForeignKey("pharmacies.id"))
    #: TOTP seed, AES-GCM encrypted with the data key (None until enrolment starts).
    totp_secret_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    #: Set when the user proved the authenticator works; the second factor is on from then.
    totp_confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The newest 30-second time step accepted: a code of that step or older is a replay.
    totp_last_step: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    recovery_codes: Mapped[list[RecoveryCode]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    @property
    def is_staff(self) -> bool:
        return self.role.is_staff

    @property
    def has_totp(self) -> bool:
        return self.totp_confirmed_at is not None

    def get_id(self) -> str:
        # The epoch in the session id lets one bump end every session of this user.
        return f"{self.id}:{self.session_epoch}"


class RecoveryCode(db.Model):
    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    #: SHA-256 of the code; codes carry 50 random bits, so a fast hash is enough.
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="recovery_codes")


class UserSession(db.Model):
    """One signed-in browser (app/auth/sessions.py). A request counts as signed in only while its row
    is live: not ended, not idle past `idle_expires_at`, not older than `absolute_expires_at`."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: SHA-256 (hex) of the random 256-bit token in the session cookie; the token itself is never stored,
    #: so a copy of this table signs nobody in.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: The last request that counted as the person at work (written at most once a minute per session).
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: last_seen_at plus the idle timeout of the user's audience (staff or patient).
    idle_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: created_at plus the absolute lifetime: no activity keeps a session past this.
    absolute_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: Why it ended (sessions.END_MESSAGES): logout, idle, absolute, password_changed, role_changed, disabled,
    #: second_factor_reset, ended_by_user, replaced.
    end_reason: Mapped[str | None] = mapped_column(sa.String(40))
    #: "Chrome on Windows": enough for a person to recognise their own devices; no address is kept.
    user_agent: Mapped[str | None] = mapped_column(sa.String(100))


class SecondFactorReset(db.Model):
    """An admin's request to clear a staff member's second factor; a second admin approves or declines it."""

    __tablename__ = "second_factor_resets"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Whose second factor would be cleared.
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    requested_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    #: Why, in the requesting admin's words ("lost phone, identity checked by video call").
    reason: Mapped[str] = mapped_column(sa.String(500))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: A request nobody decided by then can no longer be approved.
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: pending, approved, declined or expired.
    status: Mapped[str] = mapped_column(sa.String(20), default="pending", index=True)
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The deciding admin's note (required when declining).
    decision_note: Mapped[str | None] = mapped_column(sa.String(500))

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    requested_by: Mapped[User] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])


class Passkey(db.Model):
    """A WebAuthn credential a staff member registered: a phishing-resistant second factor (app/auth/passkeys.py)."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    #: The authenticator's id of this credential (raw bytes; base64url in the browser): one account only.
    credential_id: Mapped[bytes] = mapped_column(sa.LargeBinary, unique=True)
    #: The credential's public key, COSE-encoded as the authenticator gave it at registration.
    public_key: Mapped[bytes] = mapped_column(sa.LargeBinary)
    #: The authenticator's signature counter at the last use; a later use must report more (0: it keeps none).
    sign_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: How the browser reaches the authenticator ("internal,hybrid"), handed back to it at sign-in.
    transports: Mapped[str] = mapped_column(sa.String(200), default="")
    #: The person's own label for it, e.g. "Work laptop".
    name: Mapped[str] = mapped_column(sa.String(60))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The last accepted assertion; an assertion to a challenge issued before it is a replay.
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
