from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime
from app.extensions import db

GENESIS_HASH = "0" * 64


class AuditEvent(db.Model):
    """One append-only audit entry. The database refuses UPDATE and DELETE (see the migration)."""

    __tablename__ = "audit_events"

    #: Position in the hash chain, assigned under the chain head's row lock: 1, 2, 3, ... no gaps.
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    #: The person who acted; None for the system (worker, CLI without a user).
    actor_id: Mapped[int | None] = mapped_column(index=True)
    actor_role: Mapped[str | None] = mapped_column(sa.String(20))
    #: Dotted verb, e.g. "auth.login", "record.read", "access.denied".
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    subject_type: Mapped[str | None] = mapped_column(sa.String(40))
    subject_id: Mapped[str | None] = mapped_column(sa.String(64))
    #: The patient whose record this concerns, so a patient's history is one index lookup.
    patient_id: Mapped[int | None] = mapped_column(index=True)
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(300))
    #: Canonical JSON (sorted keys); hashed exactly as stored.
    detail: Mapped[str] = mapped_column(sa.Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))


class AuditHead(db.Model):
    """A single row holding the chain's newest position and hash.

    Every writer updates this row first, which serialises chain appends on both engines
    (a row lock on PostgreSQL, the write lock on SQLite) without a read-then-write race.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    hash: Mapped[str] = mapped_column(sa.String(64))
