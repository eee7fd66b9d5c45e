from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
#: Outcomes of one attempt: delivered, failed (to be retried), dead (failed and given up).
FAILED = "failed"


class OutboxMessage(db.Model):
    """A message to leave Verity, written in the same transaction as the change that caused it.

    The worker delivers it at least once; receivers de-duplicate on `idempotency_key`.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (sa.Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Which handler delivers it, e.g. "email".
    kind: Mapped[str] = mapped_column(sa.String(40))
    idempotency_key: Mapped[str] = mapped_column(sa.String(100), unique=True)
    #: JSON. Holds what the handler needs to build the message, never clinical content for email.
    payload: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(12), default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class OutboxAttempt(db.Model):
    """One try at delivering a message: when, how long, and how it ended (kept after success too)."""

    __tablename__ = "outbox_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("outbox_messages.id"), index=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    duration_ms: Mapped[int] = mapped_column(default=0)
    #: delivered, failed (retried later) or dead (the last allowed attempt failed).
    outcome: Mapped[str] = mapped_column(sa.String(12))
    #: The receiver's HTTP status when the handler spoke HTTP and got an answer.
    http_status: Mapped[int | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(sa.String(500))
    #: host:pid of the worker that made the attempt.
    worker: Mapped[str | None] = mapped_column(sa.String(80))
