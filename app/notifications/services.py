"""Notifications: the one way any domain tells a person that something happened.

    from app.notifications import services as notifications
    notifications.notify(patient, "prescription.dispatched", key=f"prescription:{p.id}:dispatched:{user.id}",
                         link=notifications.link_to("notifications.timeline"),
                         context={"carrier": "Royal Mail", "tracking": "AB123456789GB"})

One call per event per person, inside the caller's transaction. It writes the in-portal notice
(title and body from the event's templates over `context`) and, as the person chose (email on,
SMS off by default; safety-critical events are emailed whatever they chose), queues the email and
the SMS through the outbox under keys derived from `key`: the key itself for the email, `<key>:sms`
for the SMS. The same key twice is the same notice and sends nothing more, so a retried caller
never sends twice; the worker retries what SMTP refused, and an email the outbox gives up on
becomes a staff alert (`scan_dead_letters`). What leaves Verity never carries the context: see
events.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app

from app import mail
from app.audit import services as audit
from app.auth import services as accounts
from app.auth.models import Role, User
from app.database import transaction, utcnow
from app.extensions import db
from app.notifications import events, sms
from app.notifications.models import DeliveryAlert, Notification, NotificationPreference
from app.outbox import services as outbox
from app.outbox.models import OutboxMessage
from app.patients import services as patients
from app.patients.models import Patient
from app.worker import periodic

CHANNELS = ("email", "sms")
#: Room for the ":sms" suffix and resend keys inside the outbox's 100-character key.
MAX_KEY = 90
#: Who is alerted when an email or SMS cannot be delivered.
ALERTED_ROLES = (Role.RECEPTION, Role.ADMIN)


class NotificationError(ValueError):
    """A refusal fit to show the person (e.g. a dismissal without a reason)."""


# Links ----------------------------------------------------------------------------------------

def link_to(endpoint: str, **values: Any) -> str:
    """A path inside Verity for `endpoint`, built with or without a request (the worker has none)."""
    base = urlsplit(current_app.config["BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc or "localhost", script_name=base.path.rstrip("/") or "/",
                                       url_scheme=base.scheme or "http")
    return adapter.build(endpoint, values)


def _path_of(link: str) -> str:
    """Only links inside Verity: a path, or an absolute URL under BASE_URL (made a path)."""
    base = urlsplit(current_app.config["BASE_URL"])
    parts = urlsplit(link)
    if parts.scheme or parts.netloc:
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            raise ValueError(f"notification links stay inside Verity, not {parts.netloc!r}")
        link = parts.path + (f"?{parts.query}" if parts.query else "")
    if not link.startswith("/") or link.startswith("//") or "\\" in link or len(link) > 300:
        raise ValueError("a notification link is a path inside Verity, like /timeline")
    return link


def absolute(path: str) -> str:
    base = urlsplit(current_app.config["BASE_URL"])
    return f"{base.scheme}://{base.netloc}{path}"


# Notifying ------------------------------------------------------------------------------------

def _recipient(to: User | Patient | int) -> User:
    if isinstance(to, User):
        return to
    if isinstance(to, Patient):
        return patients.user_of(to)
    user = db.session.get(User, int(to))
    if user is None:
        raise ValueError(f"no user {to!r} to notify")
    return user


def notify(to: User | Patient | int, event: str, *, key: str, link: str, context: Mapping[str, Any] | None = None,
           safety_critical: bool = False, attachments: tuple[mail.Attachment, ...] = ()) -> Notification:
    """Tell one person about one event (see the module's docstring). Returns the notice (the existing
    one when `key` was used before for this person; a key used for someone else is a programming error)."""
    spec = events.get(event)
    if not key or len(key) > MAX_KEY:
        raise ValueError(f"a notification key has 1 to {MAX_KEY} characters")
    user = _recipient(to)
    values = dict(context or {})
    path = _path_of(link)
    critical = safety_critical or spec.safety_critical
    with transaction() as session:
        existing = session.scalar(sa.select(Notification).where(Notification.key == key))
        if existing is not None:
            if existing.user_id != user.id:
                raise ValueError(f"notification key {key!r} already belongs to another person")
            return existing
        notice = Notification(user_id=user.id, event=event, key=key, title=spec.render_title(values),
                              body=spec.render_body(values), link=path, safety_critical=critical)
        session.add(notice)
        session.flush()
        if not (spec.outgoing and user.active):
            return notice
        chosen = channels_for(user, spec.category, safety_critical=critical)
        if "email" in chosen:
            message = mail.queue(user.email, spec.render_subject(values), spec.email_template, key,
                                 attachments=attachments, summary=spec.email_summary, action=spec.email_action,
                                 link=absolute(path), **spec.email_context(values))
            notice.email_message_id = message.id
        number = sms_number(user) if "sms" in chosen else None
        if number:
            text = events.SMS_TEXT.format(clinic=current_app.config["CLINIC_NAME"], link=absolute(path))
            notice.sms_message_id = outbox.enqueue(sms.KIND, f"{key}:sms", {"to": number, "text": text}).id
    return notice


# Preferences ----------------------------------------------------------------------------------

DEFAULTS = {"email": True, "sms": False}


def _stored(user: User) -> dict[tuple[str, str], bool]:
    rows = db.session.scalars(sa.select(NotificationPreference).where(NotificationPreference.user_id == user.id))
    return {(row.category, row.channel): row.enabled for row in rows}


def channels_for(user: User, category: str, *, safety_critical: bool = False) -> set[str]:
    """The outgoing channels this person chose for this category; email always for safety-critical notices."""
    stored = _stored(user)
    chosen = {channel for channel in CHANNELS if stored.get((category, channel), DEFAULTS[channel])}
    if safety_critical:
        chosen.add("email")
    return chosen


def sms_number(user: User) -> str | None:
    """Patients' mobile number from their record; staff accounts have none."""
    if user.role is not Role.PATIENT:
        return None
    patient = patients.for_user(user)
    return patient.phone if patient is not None and patient.phone else None


@dataclass(frozen=True)
class Preferences:
    categories: list[tuple[str, str]]
    #: (category, channel) -> on
    chosen: dict[tuple[str, str], bool]
    sms_number: str | None

    def on(self, category: str, channel: str) -> bool:
        return self.chosen[(category, channel)]


def preferences_of(user: User) -> Preferences:
    categories = events.categories_for(user.is_staff)
    stored = _stored(user)
    chosen = {(category, channel): stored.get((category, channel), DEFAULTS[channel])
              for category, _ in categories for channel in CHANNELS}
    return Preferences(categories, chosen, sms_number(user))


def save_preferences(user: User, chosen: Iterable[tuple[str, str]]) -> Preferences:
    """Keep exactly the (category, channel) pairs in `chosen` on; unknown pairs are ignored."""
    wanted = set(chosen)
    categories = [category for category, _ in events.categories_for(user.is_staff)]
    with transaction() as session:
        rows = {(row.category, row.channel): row for row in session.scalars(
            sa.select(NotificationPreference).where(NotificationPreference.user_id == user.id))}
        for category in categories:
            for channel in CHANNELS:
                enabled = (category, channel) in wanted
                row = rows.get((category, channel))
                if row is None:
                    session.add(NotificationPreference(user_id=user.id, category=category, channel=channel,
                                                       enabled=enabled))
                elif row.enabled != enabled:
                    row.enabled, row.updated_at = enabled, utcnow()
        audit.record("notification.preferences_changed", subject=("user", user.id),
                     detail={"on": sorted(f"{c}:{ch}" for c, ch in wanted if c in categories and ch in CHANNELS)})
    return preferences_of(user)


# The in-portal list ---------------------------------------------------------------------------

def get(notification_id: int) -> Notification | None:
    return db.session.get(Notification, notification_id)


def unread_count(user: User) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Notification).where(
        Notification.user_id == user.id, Notification.read_at.is_(None))) or 0


def recent(user: User, *, before_id: int | None = None, limit: int = 30) -> list[Notification]:
    """Newest first, keyset-paged by id."""
    query = sa.select(Notification).where(Notification.user_id == user.id).order_by(Notification.id.desc()) \
        .limit(limit)
    if before_id:
        query = query.where(Notification.id < before_id)
    return list(db.session.scalars(query))


def can_open(user: User, notice: Notification) -> bool:
    return notice.user_id == user.id


def mark_read(notice: Notification) -> None:
    if notice.read_at is None:
        with transaction():
            notice.read_at = utcnow()


def mark_all_read(user: User) -> int:
    with transaction() as session:
        return session.execute(sa.update(Notification).where(Notification.user_id == user.id,
                                                             Notification.read_at.is_(None))
                               .values(read_at=utcnow())).rowcount


# Failed deliveries: staff alerts --------------------------------------------------------------
# The outbox marks a message dead after its last attempt; the worker's scan turns each dead email or
# SMS into an alert for the front desk, who send it again (the same message, a fresh run of attempts)
# or tell the person another way and say how.

@dataclass(frozen=True)
class AlertRow:
    alert: DeliveryAlert
    message: OutboxMessage
    person: User | None
    notice: Notification | None

    @property
    def subject(self) -> str:
        return json.loads(self.message.payload).get("subject", "Text message")


@periodic("notifications.dead_letters", 60)
def scan_dead_letters() -> int:
    """Open an alert for every email or SMS the outbox gave up on (again, for one sent again that died again),
    and tell the front desk in the portal. Returns how many alerts were opened."""
    staff = [u for u in accounts.staff_users() if u.role in ALERTED_ROLES and u.active]
    opened = 0
    for message in outbox.dead_letters(["email", sms.KIND], limit=200):
        with transaction() as session:
            alert = session.scalar(sa.select(DeliveryAlert).where(DeliveryAlert.outbox_message_id == message.id))
            if alert is not None and alert.resolution != "resent":
                continue  # open already, or dismissed (a resent one that is dead again opens again)
            if alert is None:
                alert = DeliveryAlert(outbox_message_id=message.id, channel=message.kind,
                                      user_id=_addressee(message))
                session.add(alert)
            else:
                alert.failures += 1
                alert.resolution = alert.resolved_at = alert.resolved_by = None
            session.flush()
            audit.record("notification.delivery_failed", subject=("delivery_alert", alert.id),
                         detail={"outbox_id": message.id, "channel": alert.channel, "attempts": message.attempts,
                                 "failures": alert.failures})
            for person in staff:
                notify(person, "staff.delivery_failed", key=f"delivery-alert:{alert.id}:{alert.failures}:{person.id}",
                       link=link_to("notifications.delivery_problems"),
                       context={"channel": "email" if alert.channel == "email" else "SMS",
                                "attempts": message.attempts})
            opened += 1
    return opened


def _addressee(message: OutboxMessage) -> int | None:
    """Whom a dead message was for: the notice's person, else (an email sent without a notice, e.g. a welcome)
    the account with that address."""
    notice = _notice_of(message.id)
    if notice is not None:
        return notice.user_id
    if message.kind == "email":
        user = accounts.find_by_email(json.loads(message.payload).get("to", ""))
        return user.id if user else None
    return None


def _notice_of(message_id: int) -> Notification | None:
    return db.session.scalar(sa.select(Notification).where(sa.or_(Notification.email_message_id == message_id,
                                                                  Notification.sms_message_id == message_id)))


def open_alert_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(DeliveryAlert)
                             .where(DeliveryAlert.resolution.is_(None))) or 0


def open_alerts(limit: int = 200) -> list[AlertRow]:
    alerts = db.session.scalars(sa.select(DeliveryAlert).where(DeliveryAlert.resolution.is_(None))
                                .order_by(DeliveryAlert.id).limit(limit))
    return [AlertRow(alert, outbox.get(alert.outbox_message_id),
                     db.session.get(User, alert.user_id) if alert.user_id else None,
                     _notice_of(alert.outbox_message_id)) for alert in alerts]


def get_alert(alert_id: int) -> DeliveryAlert | None:
    return db.session.get(DeliveryAlert, alert_id)


def resend(alert: DeliveryAlert, by: User) -> DeliveryAlert:
    """Give the dead message a fresh run of attempts: the same message (same key, same Message-ID), so a
    receiver that did get it after all can drop the copy."""
    if alert.resolution is not None:
        raise NotificationError("Someone has already dealt with this one.")
    message = outbox.get(alert.outbox_message_id)
    with transaction():
        outbox.retry(message)
        alert.resolution, alert.resolved_at, alert.resolved_by = "resent", utcnow(), by.id
        audit.record("notification.resent", subject=("delivery_alert", alert.id),
                     detail={"outbox_id": message.id})
    return alert


def dismiss(alert: DeliveryAlert, by: User, note: str) -> DeliveryAlert:
    note = " ".join((note or "").split())[:500]
    if not note:
        raise NotificationError("Say how the person was told (or why they need not be): it is kept in the record.")
    if alert.resolution is not None:
        raise NotificationError("Someone has already dealt with this one.")
    with transaction():
        alert.resolution, alert.resolved_at, alert.resolved_by, alert.note = "dismissed", utcnow(), by.id, note
        audit.record("notification.alert_dismissed", subject=("delivery_alert", alert.id),
                     detail={"outbox_id": alert.outbox_message_id})
    return alert
