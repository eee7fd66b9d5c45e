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
