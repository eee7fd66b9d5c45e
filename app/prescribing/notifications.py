"""Who is told when a prescription moves: the default notifiers of the state machine.

People are told through app.notifications: an in-portal notice in plain words ("Your medicine is on
its way") and, as they chose, a content-free email; the pharmacy gets an outbox message naming the
prescription and the event, never its content.
"""

from __future__ import annotations

from app.auth.models import User
from app.extensions import db
from app.notifications import services as notifications
from app.outbox import services as outbox
from app.patients import services as patients
from app.prescribing import states
from app.prescribing.models import Prescription

PHARMACY_KIND = "pharmacy.prescription"


#: The notification event for each (state, audience) a transition tells.
EVENTS = {
    (states.State.SIGNED, states.TO_PATIENT): "prescription.issued",
    (states.State.TRANSMITTED, states.TO_PATIENT): "prescription.with_pharmacy",
    (states.State.STOCK_ALLOCATED, states.TO_PATIENT): "prescription.preparing",
    (states.State.OUT_OF_STOCK, states.TO_PATIENT): "prescription.out_of_stock",
    (states.State.DISPATCHED, states.TO_PATIENT): "prescription.dispatched",
    (states.State.DELIVERED, states.TO_PATIENT): "prescription.delivered",
    (states.State.CANCELLED, states.TO_PATIENT): "prescription.cancelled",
    (states.State.EXPIRED, states.TO_PATIENT): "prescription.expired",
    (states.State.REJECTED, states.TO_PATIENT): "prescription.rejected",
    (states.State.SUPERSEDED, states.TO_PATIENT): "prescription.alternative",
    (states.State.OUT_OF_STOCK, states.TO_PRESCRIBER): "prescriber.out_of_stock",
    (states.State.QUERIED, states.TO_PRESCRIBER): "prescriber.queried",
    (states.State.REJECTED, states.TO_PRESCRIBER): "prescriber.rejected",
    (states.State.EXPIRED, states.TO_PRESCRIBER): "prescriber.expired",
}


def notify_person(prescription: Prescription, state: states.State, audience: str) -> None:
    """The patient or the prescriber, in the portal and (as they chose) by a content-free email."""
    event = EVENTS.get((state, audience))
    if event is None:
        return
    if audience == states.TO_PATIENT:
        patient = patients.get(prescription.patient_id)
        user = patients.user_of(patient) if patient else None
        link = notifications.link_to("notifications.timeline")
    else:
        user = db.session.get(User, prescription.prescriber_id)
        link = notifications.link_to("prescribing.prescription", prescription_id=prescription.id)
    if user is None:
        return
    # The transition row is in the session (flushed by this query): its detail says carrier, tracking, reason.
    reached = [t for t in states.history(prescription) if t.to_state == state.value]
    detail = reached[-1].detail if reached else {}
    # A state reached again (a second query, stock found twice) is a new notice: the first keeps the plain key.
    again = f":{len(reached)}" if len(reached) > 1 else ""
    context = {"reference": prescription.public_id[:8].upper(), "carrier": detail.get("carrier", ""),
               "tracking": detail.get("tracking", ""), "reason": detail.get("reason", "")}
    notifications.notify(user, event, key=f"prescription:{prescription.id}:{state.value}:{audience}:{user.id}{again}",
                         link=link, context=context)


def tell_pharmacy(prescription: Prescription, state: states.State, audience: str) -> None:
    if audience != states.TO_PHARMACY or prescription.pharmacy_id is None:
        return
    enqueue_for_pharmacy(prescription, state.value)


def enqueue_for_pharmacy(prescription: Prescription, event: str) -> None:
    """An outbox message for the pharmacy: ids and the event only, in the caller's transaction."""
    outbox.enqueue(PHARMACY_KIND, key=f"prescription:{prescription.id}:{event}",
                   payload={"prescription_id": prescription.id, "public_id": prescription.public_id,
                            "pharmacy_id": prescription.pharmacy_id, "event": event})


states.notifiers[:] = [notify_person, tell_pharmacy]
