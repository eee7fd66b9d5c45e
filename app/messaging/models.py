"""Messaging's tables: threads, their messages (never deleted, only hidden), attachments, read receipts,
and the clinic's saved responses."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.database import UTCDateTime, utcnow
from app.extensions import db


class ThreadKind(enum.StrEnum):
    #: Between a patient and the clinic team (the front desk's inbox, a clinician when assigned).
    CLINIC = "clinic"
    #: Between a prescription's prescriber and the pharmacists of the pharmacy it went to; staff only.
    PRESCRIPTION_QUERY = "prescription_query"

    @property
    def label(self) -> str:
        return {"clinic": "Clinic", "prescription_query": "Pharmacy query"}[self.value]


class ThreadStatus(enum.StrEnum):
    OPEN = "open"
    WAITING_ON_PATIENT = "waiting_on_patient"
    CLOSED = "closed"

    @property
    def label(self) -> str:
        return {"open": "Open", "waiting_on_patient": "Waiting on patient", "closed": "Closed"}[self.value]

    @property
    def patient_label(self) -> str:
        """What the patient reads: where their conversation stands, in their words."""
        return {"open": "With the clinic", "waiting_on_patient": "The clinic has answered",
                "closed": "Closed"}[self.value]

    @property
    def tag(self) -> str:
        return {"open": "blue", "waiting_on_patient": "yellow", "closed": "grey"}[self.value]


def _enum(kind: type[enum.StrEnum], length: int) -> sa.Enum:
    return sa.Enum(kind, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class Thread(db.Model):
    __tablename__ = "message_threads"
    __table_args__ = (sa.Index("ix_message_threads_inbox", "kind", "status", "assigned_to_id", "waiting_since"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The patient the thread is about (and, for clinic threads, with).
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patients.id"), index=True)
    kind: Mapped[ThreadKind] = mapped_column(_enum(ThreadKind, 20))
    subject: Mapped[str] = mapped_column(sa.String(120))
    status: Mapped[ThreadStatus] = mapped_column(_enum(ThreadStatus, 20), default=ThreadStatus.OPEN)
    #: The clinician the front desk handed it to (clinic threads); None: the team inbox has it.
    assigned_to_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)
    #: The prescription a pharmacy query is about.
    prescription_id: Mapped[int | None] = mapped_column(sa.ForeignKey("prescriptions.id"), index=True)
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_message_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the oldest message still waiting for the clinic's answer arrived; None when nobody waits on the
    #: clinic. The inbox sorts by it: the longest wait first.
    waiting_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    messages: Mapped[list[Message]] = relationship(back_populates="thread", order_by="Message.id")


class Message(db.Model):
    """Part of the record: never updated in its content, never deleted; hidden with a reason when it must go."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[int] = mapped_column(sa.ForeignKey("message_threads.id"), index=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    #: The author's role when they wrote it (roles can change later).
    author_role: Mapped[str] = mapped_column(sa.String(20))
    #: Plain text, at most 5,000 characters; shown escaped, line breaks kept.
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    hidden_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    hidden_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    hidden_reason: Mapped[str | None] = mapped_column(sa.String(500))

    thread: Mapped[Thread] = relationship(back_populates="messages")
    attachments: Mapped[list[MessageAttachment]] = relationship(order_by="MessageAttachment.id")

    @property
    def is_hidden(self) -> bool:
        return self.hidden_at is not None


class MessageAttachment(db.Model):
    """A document of the thread's patient (stored, checked and encrypted by the documents domain)."""

    __tablename__ = "message_attachments"
    __table_args__ = (sa.UniqueConstraint("message_id", "document_id", name="uq_message_attachments_document"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("messages.id"), index=True)
    document_id: Mapped[int] = mapped_column(sa.ForeignKey("documents.id"), index=True)


class MessageReceipt(db.Model):
    """Who read which message, and when (the first time)."""

    __tablename__ = "message_receipts"
    __table_args__ = (sa.UniqueConstraint("message_id", "user_id", name="uq_message_receipts_reader"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("messages.id"), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    read_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SavedResponse(db.Model):
    """A reply the front desk uses often, kept by admins. `{first_name}` becomes the patient's first name."""

    __tablename__ = "saved_responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(120), unique=True)
    body: Mapped[str] = mapped_column(sa.Text)
    active: Mapped[bool] = mapped_column(default=True)
    updated_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
