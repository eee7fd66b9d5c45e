"""The events that reach a person, each with its in-portal words and its outgoing (email, SMS) words.

The portal copy may say what a notice is about ("Your medicine is on its way"): the portal is the
secure channel. What leaves Verity may not: an email gets its subject, a one-line summary and a
link, all fixed per event, plus only the context fields the event names in `email_fields`
(appointment times and the clinician's name, which the calendar invitation carries anyway).
Nothing else of the caller's context can reach an email or an SMS, whatever the caller passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, StrictUndefined

#: Preference categories: (label, who sees them on the preferences page).
CATEGORIES: dict[str, tuple[str, str]] = {
    "appointments": ("Appointments: bookings, changes and reminders", "patient"),
    "prescriptions": ("Prescriptions and deliveries", "patient"),
    "account": ("Your account: identity, documents and forms", "patient"),
    "messages": ("Messages", "everyone"),
    "work": ("Work: prescriptions, queries and requests that need you", "staff"),
}

GENERIC_SUBJECT = "There is an update in your Verity account"
GENERIC_SUMMARY = "There is an update in your Verity account."
SMS_TEXT = "{clinic}: you have a new update in your Verity account. Sign in to see it: {link}"

#: Plain text, stored and then escaped by the portal's (autoescaping) templates when shown; emails never see it.
#: Escaping here would show "&amp;" in the portal (tests/test_notifications.py checks the portal escapes it).
_text = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=False)  # noqa: S701  # nosec B701


@dataclass(frozen=True)
class Event:
    category: str
    #: In-portal title and body: Jinja templates over the caller's context.
    title: str
    body: str = ""
    #: Email subject: a Jinja template over the `email_fields` only.
    email_subject: str = GENERIC_SUBJECT
    #: The email's one sentence (templates "notification"), fixed per event.
    email_summary: str = GENERIC_SUMMARY
    #: The words of the email's link.
    email_action: str = "Sign in to see it"
    #: app/templates/email/<email_template>.txt and .html.
    email_template: str = "notification"
    #: The context fields the email may show; nothing else of the context reaches it.
    email_fields: tuple[str, ...] = ()
    #: Sent by email whatever the person's preferences.
    safety_critical: bool = False
    #: False: portal only (e.g. staff alerts about failed email).
    outgoing: bool = True
    #: How the preferences page names the event, when its title depends on the context.
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.title

    def render_title(self, context: dict[str, Any]) -> str:
        return _render(self.title, context)[:200]

    def render_body(self, context: dict[str, Any]) -> str:
        return _render(self.body, context)

    def email_context(self, context: dict[str, Any]) -> dict[str, Any]:
        return {name: context[name] for name in self.email_fields if name in context}

    def render_subject(self, context: dict[str, Any]) -> str:
        return _render(self.email_subject, self.email_context(context))[:200]


def _render(template: str, context: dict[str, Any]) -> str:
    return " ".join(_text.from_string(template).render(**context).split())


_WHEN = "{{ when }} ({{ zone }}) with {{ clinician }}"
_APPOINTMENT_FIELDS = ("when", "zone", "clinician")

EVENTS: dict[str, Event] = {
    # Appointments: the emails keep their calendar invitation, so they may say when and with whom.
    "booking.made": Event(
        "appointments", "Your consultation is booked", f"{_WHEN}.",
        email_subject="Your consultation is booked", email_template="appointment_booked",
        email_fields=_APPOINTMENT_FIELDS),
    "booking.changed": Event(
        "appointments", "Your consultation has moved", f"It is now {_WHEN}.",
        email_subject="Your consultation has moved", email_template="appointment_updated",
        email_fields=_APPOINTMENT_FIELDS),
    "booking.cancelled": Event(
        "appointments", "Your consultation is cancelled", f"{_WHEN} is cancelled. You can book another time.",
        email_subject="Your consultation is cancelled", email_template="appointment_cancelled",
        email_fields=(*_APPOINTMENT_FIELDS, "book_link")),
    "booking.reminder": Event(
        "appointments", "Your consultation is in {{ ahead }}",
        f"{_WHEN}. Sign in a few minutes early to test your camera and microphone.",
        email_subject="Reminder: your consultation is in {{ ahead }}", email_template="appointment_reminder",
        email_fields=(*_APPOINTMENT_FIELDS, "ahead")),
    "booking.offer": Event(
        "appointments", "An earlier consultation time is available",
        f"{_WHEN}. We are holding it for you until {{{{ until }}}}.",
        email_subject="An earlier consultation time is available", email_template="appointment_offer",
        email_fields=(*_APPOINTMENT_FIELDS, "until")),
    # The account and onboarding.
    "intake.requested": Event(
        "account", "The clinic has asked you to answer some questions", "{{ note | default('') }}",
        email_subject="The clinic has asked you to fill in a form",
        email_summary="The clinic has asked you to fill in a form in your Verity account.",
        email_action="Sign in to fill it in"),
    "document.requested": Event(
        "account", "The clinic has asked you for a document",
        "{{ kind }}{% if note %}: {{ note }}{% endif %}",
        email_subject="The clinic has asked you for a document",
        email_summary="The clinic has asked you to send a document.",
        email_action="Sign in to see what they need and to upload it"),
    "identity.approved": Event(
        "account", "Your identity is confirmed", "Thank you: your identity check is complete.",
        email_subject="Your identity check is complete",
        email_summary="Your identity check is complete."),
    "identity.rejected": Event(
        "account", "We could not confirm your identity", "{{ reason }} Send new photos to try again.",
        email_subject="Your identity check needs your attention",
        email_summary="We need you to send your identity photos again.",
        email_action="Sign in to see why and to try again"),
    "outcome.due": Event(
        "account", "It is time for your progress questions",
        "Your answers help your clinician see how things are going. They take about 5 minutes.",
        email_summary="There is something for you to do in your Verity account.",
        email_action="Sign in to see it"),
    # Prescriptions, for the patient.
    "prescription.issued": Event(
        "prescriptions", "Your prescription has been issued",
        "It goes to your pharmacy next. Follow it on your timeline."),
    "prescription.with_pharmacy": Event(
        "prescriptions", "Your prescription is with the pharmacy",
        "The pharmacy checks it and prepares your medicine. Follow it on your timeline."),
    "prescription.preparing": Event(
        "prescriptions", "The pharmacy is preparing your medicine", "Follow it on your timeline."),
    "prescription.out_of_stock": Event(
        "prescriptions", "The pharmacy is out of stock",
        "Your clinician will suggest an alternative. We will tell you as soon as they have.",
        safety_critical=True),
    "prescription.alternative": Event(
        "prescriptions", "Your clinician has proposed an alternative",
        "Your prescription was replaced by a new one. Follow it on your timeline."),
    "prescription.dispatched": Event(
        "prescriptions", "Your medicine is on its way",
        "Sent with {{ carrier }}, tracking number {{ tracking }}. Follow it on your timeline."),
    "prescription.delivered": Event(
        "prescriptions", "Your medicine has been delivered",
        "If anything is wrong with the delivery, send us a message."),
    "prescription.cancelled": Event(
        "prescriptions", "Your prescription was cancelled", "{{ reason | default('') }}", safety_critical=True),
    "prescription.expired": Event(
        "prescriptions", "Your prescription has expired",
        "Prescriptions can be supplied for 28 days after they are signed. Send us a message if you still need it.",
        safety_critical=True),
    "prescription.rejected": Event(
        "prescriptions", "The pharmacy could not accept your prescription",
        "{{ reason | default('') }} Your clinician has been told.", safety_critical=True),
    "prescription.repeat_declined": Event(
        "prescriptions", "Your clinician has answered your repeat request", "{{ note | default('') }}"),
    # Prescriptions, for the prescriber.
    "prescriber.out_of_stock": Event(
        "work", "Out of stock: a prescription needs an alternative", "Prescription {{ reference }}."),
    "prescriber.queried": Event(
        "work", "The pharmacy has a query about a prescription",
        "Prescription {{ reference }}{% if reason is defined and reason %}: {{ reason }}{% endif %}."),
    "prescriber.rejected": Event(
        "work", "The pharmacy rejected a prescription",
        "Prescription {{ reference }}{% if reason is defined and reason %}: {{ reason }}{% endif %}."),
    "prescriber.expired": Event(
        "work", "A prescription expired before it was supplied", "Prescription {{ reference }}."),
    "prescriber.repeat_requested": Event(
        "work", "A patient asked for a repeat prescription", "{{ note | default('') }}"),
    "prescriber.outcome_alert": Event(
        "work", "{{ what }}", "A patient's report needs you today: open it in Verity.",
        email_subject="Something in Verity needs your attention",
        email_summary="A patient report in Verity needs your attention.", safety_critical=True,
        label="A patient report that needs you urgently (a serious adverse event, answers that call for help)"),
    # Messages.
    "message.new": Event(
        "messages", "New message: {{ subject }}", "From {{ author }}.",
        email_subject="You have a new message in your Verity account",
        email_summary="You have a new message in your Verity account.",
        email_action="Sign in to read it and reply"),
    "message.assigned": Event(
        "messages", "A conversation was assigned to you: {{ subject }}", "Assigned by {{ by }}.",
        email_subject="You have a new message in your Verity account",
        email_summary="A conversation in Verity was assigned to you.",
        email_action="Sign in to read it"),
    # Staff alerts (portal only: an email about failing email would go the same way).
    "staff.delivery_failed": Event(
        "work", "An {{ channel }} could not be delivered",
        "The outbox gave up after {{ attempts }} attempts. Send it again or tell the person another way.",
        outgoing=False),
}


def get(name: str) -> Event:
    try:
        return EVENTS[name]
    except KeyError:
        raise ValueError(f"unknown notification event {name!r}: add it to app/notifications/events.py") from None


def categories_for(is_staff: bool) -> list[tuple[str, str]]:
    audience = "staff" if is_staff else "patient"
    return [(key, label) for key, (label, who) in CATEGORIES.items() if who in (audience, "everyone")]
