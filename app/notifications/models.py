"""Notifications' tables: what each person was told, how they like to be told, and the deliveries that failed."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.database import UTCDateTime, utcnow
from app.extensions import db


class Notification(db.Model):
    """One notice to one person, shown in the portal; the email and SMS copies (if any) left through the outbox.

    The portal is the secure channel, so `title` and `body` may say what the notice is about in plain
    words; the copies that leave Verity never carry them (see app/notifications/events.py).
    """

    __tablename__ = "notifications"
    __table_args__ = (sa.Index("ix_notifications_user_unread", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    #: The event's name, e.g. "prescription.dispatched" (see events.EVENTS).
    event: Mapped[str] = mapped_column(sa.String(60))
    #: The caller's idempotency key: the same key twice is the same notice (and the same email).
    key: Mapped[str] = mapped_column(sa.String(100), unique=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text, default="")
    #: A path inside Verity ("/timeline"), where the notice takes the person.
    link: Mapped[str] = mapped_column(sa.String(300))
    #: Sent by email whatever the person's preferences (a cancelled prescription, a rejected one, ...).
    safety_critical: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The outbox message of the email copy (None when no email was sent).
    email_message_id: Mapped[int | None] = mapped_column(sa.ForeignKey("outbox_messages.id"))
    #: The outbox message of the SMS copy (None when no SMS was sent).
    sms_message_id: Mapped[int | None] = mapped_column(sa.ForeignKey("outbox_messages.id"))


class NotificationPreference(db.Model):
    """A person's choice for one category and one channel; no row means the default (email on, SMS off)."""

    __tablename__ = "notification_preferences"
    __table_args__ = (sa.UniqueConstraint("user_id", "category", "channel",
                                          name="uq_notification_preferences_choice"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    #: A key of events.CATEGORIES: appointments, prescriptions, messages, account, work.
    category: Mapped[str] = mapped_column(sa.String(20))
    #: "email" or "sms" (the portal copy is always made).
    channel: Mapped[str] = mapped_column(sa.String(10))
    enabled: Mapped[bool] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeliveryAlert(db.Model):
    """An email or SMS the outbox gave up on (a dead letter), shown to the front desk until someone acts.

    Sending it again gives the same outbox message a fresh run of attempts (same key, same Message-ID);
    if it dies again, the same alert opens again.
    """

    __tablename__ = "delivery_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The dead outbox message.
    outbox_message_id: Mapped[int] = mapped_column(sa.ForeignKey("outbox_messages.id"), unique=True)
    #: "email" or "sms".
    channel: Mapped[str] = mapped_column(sa.String(10))
    #: The person it was for, when it was a notification's copy (None for other emails, e.g. a welcome).
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: How many times the outbox gave up on it (a resend that fails again counts again).
    failures: Mapped[int] = mapped_column(default=1)
    #: None while open; then "resent" or "dismissed".
    resolution: Mapped[str | None] = mapped_column(sa.String(12))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    #: How the person was told instead (required to dismiss).
    note: Mapped[str | None] = mapped_column(sa.String(500))
