"""Who is told when a prescription moves: the default notifiers of the state machine.

People get a content-free email ("there is an update in your Verity account"); the pharmacy gets
an outbox message naming the prescription and the event, never its content. The messaging issue
replaces `email_person` (append to or replace `states.notifiers`).
"""

from __future__ import annotations

from app import mail
from app.auth.models import User
from app.extensions import db
from app.outbox import services as outbox
from app.patients import services as patients
from app.prescribing import states
from app.prescribing.models import Prescription

PHARMACY_KIND = "pharmacy.prescription"


def email_person(prescription: Prescription, state: states.State, audience: str) -> None:
    if audience == states.TO_PATIENT:
        patient = patients.get(prescription.patient_id)
        user = patients.user_of(patient) if patient else None
    elif audience == states.TO_PRESCRIBER:
        user = db.session.get(User, prescription.prescriber_id)
    else:
        return
    if user is None:
        return
    mail.queue(user.email, "There is an update in your Verity account", "prescription_update",
               key=f"prescription:{prescription.id}:{state.value}:{audience}:{user.id}")


def tell_pharmacy(prescription: Prescription, state: states.State, audience: str) -> None:
    if audience != states.TO_PHARMACY or prescription.pharmacy_id is None:
        return
    enqueue_for_pharmacy(prescription, state.value)


def enqueue_for_pharmacy(prescription: Prescription, event: str) -> None:
    """An outbox message for the pharmacy: ids and the event only, in the caller's transaction."""
    outbox.enqueue(PHARMACY_KIND, key=f"prescription:{prescription.id}:{event}",
                   payload={"prescription_id": prescription.id, "public_id": prescription.public_id,
                            "pharmacy_id": prescription.pharmacy_id, "event": event})


states.notifiers[:] = [email_person, tell_pharmacy]
