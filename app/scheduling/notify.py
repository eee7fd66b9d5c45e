"""What the patient is told: a notice per booking, change, cancellation, reminder and waiting-list offer,
through app.notifications (in the portal, and by email with an .ics file as the patient chose).

Emails say when and with whom, and link to the appointment page; nothing clinical (not even the kind
of consultation). They are queued in the caller's transaction through the outbox, under keys that make
each one exactly once. The calendar event keeps one UID per appointment and a rising SEQUENCE, so a
calendar replaces the event on a change and removes it on a cancellation (RFC 5546: REQUEST / CANCEL).
"""

from __future__ import annotations

from email.utils import parseaddr

from flask import current_app
from icalendar import Calendar, Event, vCalAddress, vText

from app import mail
from app.auth.models import User
from app.database import utcnow
from app.extensions import db
from app.notifications import services as notifications
from app.patients import services as patients
from app.scheduling import display, settings
from app.scheduling.models import Appointment, WaitlistEntry, WaitlistOffer

REQUEST, CANCEL = "REQUEST", "CANCEL"


def uid(appointment: Appointment) -> str:
    return f"appointment-{appointment.id}@verity"


def external_url(endpoint: str, **values) -> str:
    """An absolute link under BASE_URL, built with or without a request (the worker has none)."""
    return notifications.absolute(notifications.link_to(endpoint, **values))


def appointment_url(appointment: Appointment) -> str:
    return external_url("scheduling.appointment", appointment_id=appointment.id)


def clinician_name(clinician_id: int) -> str:
    user = db.session.get(User, clinician_id)
    return user.full_name if user else "your clinician"


def calendar(appointment: Appointment, *, method: str, attendee: str) -> bytes:
    """The .ics for this appointment as it is now."""
    clinic = current_app.config["CLINIC_NAME"]
    link = appointment_url(appointment)
    cal = Calendar()
    cal.add("prodid", "-//Verity//Scheduling//EN")
    cal.add("version", "2.0")
    cal.add("method", method)
    event = Event()
    event.add("uid", uid(appointment))
    event.add("sequence", appointment.sequence)
    event.add("dtstamp", utcnow())
    event.add("dtstart", appointment.starts_at)
    event.add("dtend", appointment.ends_at)
    event.add("summary", f"Video consultation with {clinician_name(appointment.clinician_id)} ({clinic})")
    event.add("description", f"Join from your Verity account: {link}")
    event.add("url", link)
    event.add("location", "Video call (the link is in the description)")
    event.add("status", "CANCELLED" if method == CANCEL else "CONFIRMED")
    _, sender = parseaddr(current_app.config["MAIL_FROM"])
    organizer = vCalAddress(f"mailto:{sender or 'no-reply@verity.invalid'}")
    organizer.params["cn"] = vText(clinic)
    event.add("organizer", organizer)
    guest = vCalAddress(f"mailto:{attendee}")
    guest.params["role"] = vText("REQ-PARTICIPANT")
    guest.params["partstat"] = vText("ACCEPTED")
    event.add("attendee", guest)
    cal.add_component(event)
    return cal.to_ical()


def _send(appointment: Appointment, *, event: str, key: str, method: str | None, **context) -> None:
    patient = patients.get(appointment.patient_id)
    to = patients.user_of(patient).email
    zone = settings.clinic_zone()
    attachments = ()
    if method:
        attachments = (mail.Attachment("consultation.ics", f"text/calendar; method={method}",
                                       calendar(appointment, method=method, attendee=to)),)
    notifications.notify(patient, event, key=key, link=appointment_url(appointment), attachments=attachments,
                         context={"when": display.when(appointment.starts_at, zone), "zone": display.zone_label(zone),
                                  "clinician": clinician_name(appointment.clinician_id), **context})


def booked(appointment: Appointment) -> None:
    _send(appointment, event="booking.made", key=f"appointment:{appointment.id}:booked", method=REQUEST)


def rescheduled(appointment: Appointment) -> None:
    _send(appointment, event="booking.changed", key=f"appointment:{appointment.id}:update:{appointment.sequence}",
          method=REQUEST)


def cancelled(appointment: Appointment) -> None:
    _send(appointment, event="booking.cancelled", key=f"appointment:{appointment.id}:cancelled", method=CANCEL,
          book_link=external_url("scheduling.book"))


def reminder(appointment: Appointment, minutes_before: int) -> None:
    _send(appointment, event="booking.reminder",
          key=f"appointment:{appointment.id}:reminder:{_tag(minutes_before)}:{appointment.starts_at.isoformat()}",
          method=None, ahead=display.duration(minutes_before))


def offer(offer: WaitlistOffer, patient_email: str | None = None) -> None:
    """`patient_email` is not needed any more (the offer's waiting-list entry names the patient)."""
    zone = settings.clinic_zone()
    patient = patients.get(db.session.get(WaitlistEntry, offer.entry_id).patient_id)
    notifications.notify(patient, "booking.offer", key=f"waitlist-offer:{offer.id}",
                         link=external_url("scheduling.waitlist"),
                         context={"when": display.when(offer.starts_at, zone), "zone": display.zone_label(zone),
                                  "clinician": clinician_name(offer.clinician_id),
                                  "until": display.when(offer.expires_at, zone)})


def _tag(minutes: int) -> str:
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
