"""The patient's timeline: the whole journey on one page, and every live prescription as a tracker.

A status for every wait: each step shows when it happened, and the current one says in plain words
what happens next and how long it usually takes. The page refreshes its live part by polling
(htmx, every 20 s); `marker(patient)` is a cheap fingerprint of everything the page shows, so a
poll that finds nothing new is answered with 204 and no rendering.

Everything is read through the other domains' services: the journey from the audit trail
(`journey.*` entries), appointments from scheduling, prescriptions and their transitions from
prescribing, shipments from the pharmacy when it offers them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from urllib.parse import quote

from app.audit import services as audit
from app.patients.journey import JourneyState
from app.patients.models import Patient

#: The pharmacy domain's page for one order, linked from each tracker when the app has it.
ORDER_PAGE = "pharmacy.my_order"
#: Ended prescriptions (delivered, cancelled, ...) stay on the timeline this long.
RECENT = dt.timedelta(days=30)

#: The tracker's steps, each made of the prescription states that belong to it.
STEPS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("issued", "Prescription issued", frozenset({"signed"})),
    ("pharmacy", "With the pharmacy", frozenset({"transmitted", "received_by_pharmacy"})),
    ("preparing", "Being prepared", frozenset({"stock_allocated", "out_of_stock", "awaiting_original",
                                               "clinically_verified", "queried"})),
    ("dispensed", "Ready to send", frozenset({"dispensed"})),
    ("dispatched", "On its way", frozenset({"dispatched"})),
    ("delivered", "Delivered", frozenset({"delivered"})),
)

#: What the patient reads under the current step: what happens next, and how long it usually takes.
NEXT: dict[str, tuple[str, str]] = {
    "signed": ("We are sending your prescription to {pharmacy}.", "This usually takes a few minutes."),
    "transmitted": ("{pharmacy} checks your prescription and whether your medicine is in stock.",
                    "This usually takes up to 1 working day."),
    "received_by_pharmacy": ("{pharmacy} checks your prescription and whether your medicine is in stock.",
                             "This usually takes up to 1 working day."),
    "stock_allocated": ("Your medicine is in stock. A pharmacist checks the prescription, then prepares it.",
                        "This usually takes 1 to 2 working days."),
    "awaiting_original": ("By law the pharmacy needs the doctor's signed paper prescription before it can supply "
                          "your medicine. The clinic sends it by tracked post.",
                          "It usually arrives in 1 to 2 working days. You do not need to do anything."),
    "out_of_stock": ("The pharmacy is out of stock. Your clinician will choose an alternative, and we will tell "
                     "you when they have.", "This usually takes up to 1 working day."),
    "queried": ("The pharmacy has asked your clinician a question. You do not need to do anything.",
                "It is usually answered within 1 working day."),
    "clinically_verified": ("A pharmacist has checked your prescription. Your medicine is being dispensed and packed.",
                            "This usually takes up to 1 working day."),
    "dispensed": ("Your medicine is packed and waiting for the courier.",
                  "It is usually collected the same or the next working day."),
    "dispatched": ("Your medicine is on its way by tracked delivery. Someone needs to be in to sign for it.",
                   "It is usually delivered the next working day."),
    "delivered": ("Your medicine has been delivered. If anything is wrong with it, send us a message.", ""),
    "cancelled": ("This prescription was cancelled.", ""),
    "expired": ("This prescription expired before it was supplied (prescriptions last 28 days). Send us a "
                "message if you still need your medicine.", ""),
    "rejected": ("The pharmacy could not accept this prescription. Your clinician has been told and will be in "
                 "touch.", ""),
    "superseded": ("This prescription was replaced by a new one, shown above.", ""),
}

#: Tracking pages of the usual UK carriers, used until the pharmacy domain offers `tracking_link`.
CARRIER_TRACKING = {
    "royal mail": "https://www.royalmail.com/track-your-item#/tracking-results/{number}",
    "parcelforce": "https://www.parcelforce.com/track-trace?trackNumber={number}",
    "dpd": "https://track.dpd.co.uk/parcels/{number}",
    "dhl": "https://www.dhl.com/gb-en/home/tracking/tracking-parcel.html?submit=1&tracking-id={number}",
    "evri": "https://www.evri.com/track/parcel/{number}",
    "ups": "https://www.ups.com/track?tracknum={number}",
}


@dataclass(frozen=True)
class JourneyStep:
    label: str
    at: dt.datetime
    current: bool = False


@dataclass(frozen=True)
class TrackerStep:
    key: str
    label: str
    #: "done", "current" or "todo".
    status: str
    at: dt.datetime | None = None


@dataclass
class Tracker:
    prescription_id: int
    reference: str
    state: str
    headline: str
    signed_at: dt.datetime | None
    steps: list[TrackerStep]
    next_text: str
    usually: str
    ended: bool
    carrier: str | None = None
    tracking: str | None = None
    tracking_url: str | None = None
    #: The pharmacy domain's page for this order (courier events, stock-outs), when it has one.
    details_url: str | None = None


@dataclass
class Timeline:
    journey: list[JourneyStep]
    appointments: list[tuple[int, str]]
    trackers: list[Tracker]
    unread_messages: int
    marker: str
    stage: str = ""
    older_prescriptions: int = 0


# The cheap fingerprint ----------------------------------------------------------------------------

def _shown_prescriptions(patient: Patient, now: dt.datetime):
    from app.prescribing import services as prescribing
    from app.prescribing import states

    shown, older = [], 0
    for prescription in prescribing.prescriptions_for_patient(patient):
        state = states.state_of(prescription)
        if not state.is_end or now - prescription.status_changed_at <= RECENT:
            shown.append(prescription)
        else:
            older += 1
    return shown, older


def _shipment(prescription):
    """The pharmacy's latest shipment for a prescription (None before dispatch)."""
    from app.pharmacy import shipping

    return shipping.shipment_for(prescription)


def marker(patient: Patient, *, now: dt.datetime | None = None) -> str:
    """A short fingerprint of what the timeline shows; it changes when anything on it changes."""
    from app.database import utcnow
    from app.messaging import services as messaging
    from app.scheduling import services as scheduling

    now = now or utcnow()
    shown, older = _shown_prescriptions(patient, now)
    parts: list[object] = [patient.journey_state, patient.journey_changed_at.isoformat(), older,
                           messaging.unread_for_patient(patient)]
    for prescription in shown:
        parts.append((prescription.id, prescription.status, prescription.status_changed_at.isoformat()))
        if prescription.status == "dispatched":
            shipment = _shipment(prescription)
            parts.append((shipment.status, shipment.updated_at.isoformat()) if shipment is not None else None)
    for appointment in scheduling.upcoming_for_patient(patient):
        parts.append((appointment.id, appointment.status, appointment.starts_at.isoformat(), appointment.sequence))
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


# Building the page --------------------------------------------------------------------------------

def build(patient: Patient, *, now: dt.datetime | None = None) -> Timeline:
    from app.database import utcnow
    from app.messaging import services as messaging
    from app.scheduling import services as scheduling

    now = now or utcnow()
    shown, older = _shown_prescriptions(patient, now)
    appointments = [(a.id, scheduling.describe(a)) for a in scheduling.upcoming_for_patient(patient)]
    return Timeline(journey=journey(patient), appointments=appointments,
                    trackers=[tracker(p) for p in shown], unread_messages=messaging.unread_for_patient(patient),
                    marker=marker(patient, now=now), stage=JourneyState(patient.journey_state).label,
                    older_prescriptions=older)


def journey(patient: Patient) -> list[JourneyStep]:
    """Each journey step the patient reached, oldest first, from the audit trail (`journey.<state>`)."""
    entries = audit.search(audit.AuditFilter(patient_id=patient.id, action="journey."), limit=200)
    steps = [JourneyStep(JourneyState.REGISTERED.label, patient.created_at)]
    for entry in reversed(entries):
        name = entry.action.removeprefix("journey.")
        if name in {state.value for state in JourneyState}:
            steps.append(JourneyStep(JourneyState(name).label, entry.at))
    if steps:
        steps[-1] = JourneyStep(steps[-1].label, steps[-1].at, current=True)
    return steps


@dataclass(frozen=True)
class Parcel:
    carrier: str
    number: str
    url: str | None
    #: The courier's latest word ("Out for delivery"), when the pharmacy domain has it.
    status: str | None = None


def tracking_link(carrier: str | None, number: str | None) -> str | None:
    """Our own map of carriers' tracking pages (by name), for dispatches the pharmacy domain has no shipment for."""
    if not carrier or not number:
        return None
    name = " ".join(carrier.lower().split())
    template = next((url for key, url in CARRIER_TRACKING.items() if name.startswith(key)), None)
    return template.format(number=quote(number, safe="")) if template else None


def parcel(prescription, history) -> Parcel | None:
    """Carrier, tracking number and link: from the pharmacy's shipment, else from the dispatch's detail."""
    shipment = _shipment(prescription)
    if shipment is not None:
        from app.pharmacy import shipping

        return Parcel(shipping.carrier_name(shipment.carrier), shipment.tracking_number,
                      shipping.tracking_link(shipment.carrier, shipment.tracking_number),
                      shipping.LABELS.get(shipment.status))
    dispatched = [t for t in history if t.to_state == "dispatched"]
    if not dispatched:
        return None
    detail = dispatched[-1].detail or {}
    carrier, number = detail.get("carrier"), detail.get("tracking")
    if not carrier or not number:
        return None
    return Parcel(str(carrier), str(number), tracking_link(str(carrier), str(number)))


def tracker(prescription) -> Tracker:
    from app.pharmacy import services as pharmacy
    from app.prescribing import states

    state = states.state_of(prescription)
    history = states.history(prescription)
    reached: dict[str, dt.datetime] = {}
    for transition in history:
        for key, _label, members in STEPS:
            if transition.to_state in members and key not in reached:
                reached[key] = transition.at
    if "issued" not in reached and prescription.signed_at:
        reached["issued"] = prescription.signed_at
    current = next((index for index, (_key, _label, members) in enumerate(STEPS) if state.value in members), None)
    steps: list[TrackerStep] = []
    if current is not None:
        for index, (key, label, _members) in enumerate(STEPS):
            if index < current:
                steps.append(TrackerStep(key, label, "done", reached.get(key)))
            elif index == current:
                # The middle step names what is going on: preparing, out of stock, waiting for the paper original...
                shown = state.patient_label if key == "preparing" else label
                steps.append(TrackerStep(key, shown, "done" if state.value == "delivered" else "current",
                                         reached.get(key)))
            else:
                steps.append(TrackerStep(key, label, "todo"))
    else:  # ended before delivery: the steps it reached, then how it ended
        steps = [TrackerStep(key, label, "done", reached[key]) for key, label, _members in STEPS if key in reached]
        steps.append(TrackerStep(state.value, state.patient_label, "ended",
                                 history[-1].at if history else prescription.status_changed_at))
    pharmacy_row = pharmacy.get(prescription.pharmacy_id) if prescription.pharmacy_id else None
    what, usually = NEXT.get(state.value, ("", ""))
    what = what.format(pharmacy=pharmacy_row.name if pharmacy_row else "the pharmacy")
    sent = parcel(prescription, history) if "dispatched" in reached else None
    if sent is not None and sent.status and sent.status.lower() != "dispatched" and state.value == "dispatched":
        steps = [TrackerStep(step.key, f"{step.label}: {sent.status.lower()}", step.status, step.at)
                 if step.key == "dispatched" else step for step in steps]
    if state.is_end and state.value != "delivered" and prescription.ended_reason and state.value != "expired":
        what = f"{what} {prescription.ended_reason}".strip()
    return Tracker(prescription_id=prescription.id, reference=prescription.public_id[:8].upper(), state=state.value,
                   headline=state.patient_label, signed_at=prescription.signed_at, steps=steps, next_text=what,
                   usually=usually, ended=state.is_end and state.value != "delivered",
                   carrier=sent.carrier if sent else None, tracking=sent.number if sent else None,
                   tracking_url=sent.url if sent else None, details_url=_order_page(prescription))


def _order_page(prescription) -> str:
    from flask import url_for

    return url_for(ORDER_PAGE, prescription_id=prescription.id)
